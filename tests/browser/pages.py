"""Selenium helpers the browser test modules share: find, read, wait, sign in, screenshot."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

PASSWORD = "night shift 0300"
WAIT_SECONDS = 40


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, *, seconds: float = WAIT_SECONDS) -> Any:
    """Poll `condition` until it holds. An element gone stale while it was read (the grid
    re-rendered between finding a row and reading it) is a page still changing: poll again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=f"waiting for {what}")


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver: Any, selector: str) -> str:
    found = css(driver, selector)
    return found[0].text if found else ""


def submit_sign_in(driver: Any, base: str, username: str, password: str = PASSWORD) -> None:
    """A fresh browser session: sign out, then send `username`'s sign-in form."""
    driver.get(f"{base}/logout")
    wait_for(driver, lambda d: css(d, "#username"), "the sign-in form")
    css(driver, "#username")[0].send_keys(username)
    css(driver, "#password")[0].send_keys(password)
    css(driver, "#signin-submit")[0].click()


def save_screenshot(driver: Any, name: str, tmp_path: Path) -> Path:
    """Full-page screenshot to tmp_path (and to $RISKCAST_SCREENSHOTS when set)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, max(900, int(height) + 40))
    path = tmp_path / name
    driver.save_screenshot(str(path))
    target = os.environ.get("RISKCAST_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)
    driver.set_window_size(1440, 1000)
    return path
