"""Headless Chromium for the browser tests, or a clean skip when it is not installed.

Debian's `chromium` and `chromium-driver` packages (`make browser-deps`); other locations
can be given with RISKCAST_CHROMIUM and RISKCAST_CHROMEDRIVER.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROME_ARGUMENTS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000")


def _find(variable: str, *names: str) -> str | None:
    if os.environ.get(variable):
        return os.environ[variable] if os.access(os.environ[variable], os.X_OK) else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Selenium; skips when Chromium or its driver is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = _find("RISKCAST_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver_path = _find("RISKCAST_CHROMEDRIVER", "chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in CHROME_ARGUMENTS:
        options.add_argument(argument)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
