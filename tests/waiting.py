"""Waiting in tests: on a condition, with a deadline, never for a fixed length of time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

POLL_SECONDS = 0.05


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str,
               detail: Callable[[], str] = lambda: "", poll: float = POLL_SECONDS) -> Any:
    """Poll `condition` every `poll` seconds until it returns something truthy and return that;
    after `timeout` seconds fail naming `what` (and `detail()`, e.g. a log's tail)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail()}")
        time.sleep(poll)
    return value
