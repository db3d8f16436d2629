"""Sign-in throttling: after a few wrong passwords in a row, a user name (or an address that
has tried many) must wait before the next try, and the wait doubles with each further
failure. A refused try is answered 429 with Retry-After and never reaches the password
check, so not even the right password gets through while the wait lasts.

The failures are the store's `auth_events` (sign_in_failed), so every process serving the
dashboard sees the same count and a restart forgets nothing. Per user, the failures counted
are those since their last sign-in (within `user_memory_hours`); per address, those of the
last `address_window_minutes`, whatever names they tried (a success does not clear them:
one valid account must not make guessing at others free).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from riskcast.dashboards import auth_events as trail
from riskcast.errors import ConfigError
from riskcast.store import sign_in_events

LOGGER = logging.getLogger(__name__)
_MAX_DOUBLINGS = 30


@dataclass(frozen=True)
class SignInThrottle:
    """How many failures in a row are free and how long to wait after them.

    With the defaults, a user's 5th wrong password in a row costs a 30 s wait, the 6th 60 s,
    and so on up to 15 min; an address with 20 failures within the hour waits the same way.
    """

    user_free_failures: int = 5
    address_free_failures: int = 20
    first_wait_seconds: float = 30.0
    longest_wait_seconds: float = 900.0
    user_memory_hours: float = 24.0
    address_window_minutes: float = 60.0

    def __post_init__(self) -> None:
        for name in ("user_free_failures", "address_free_failures"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sign-in throttle: {name} must be at least 1")
        for name in ("first_wait_seconds", "longest_wait_seconds", "user_memory_hours", "address_window_minutes"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"sign-in throttle: {name} must be positive")

    def wait_seconds(self, failures: int, *, free: int) -> float:
        """The wait after the last of `failures` failures in a row (0 while they are free)."""
        if failures < free:
            return 0.0
        return min(self.first_wait_seconds * 2 ** min(failures - free, _MAX_DOUBLINGS), self.longest_wait_seconds)


@dataclass(frozen=True)
class Refusal:
    """A sign-in that must wait `retry_after_seconds` (whole seconds, at least 1) because of the
    failures of the user name or of the address (`scope`); the last of them at `last_failure_at`."""

    retry_after_seconds: int
    scope: str
    failures: int
    last_failure_at: datetime


def _waiting(scope: str, failures: int, last: datetime | None, wait_seconds: float, now: datetime) -> Refusal | None:
    if last is None or not wait_seconds:
        return None
    left = (last + timedelta(seconds=wait_seconds) - now).total_seconds()
    return Refusal(max(1, math.ceil(left)), scope, failures, last) if left > 0 else None


def refusal(engine: Engine, username: str | None, address: str | None, *, now: datetime,
            policy: SignInThrottle) -> Refusal | None:  # fmt: skip
    """Whether a sign-in as `username` (None: not a valid user name) from `address` must wait
    now, and for how long (the longer of the user's and the address's waits)."""
    found: list[Refusal] = []
    if username:
        since = now - timedelta(hours=policy.user_memory_hours)
        last_sign_in = sign_in_events.last_sign_in(engine, username)
        if last_sign_in is not None and last_sign_in > since:
            since = last_sign_in
        failed = sign_in_events.failures_of_user(engine, username, after=since)
        wait = policy.wait_seconds(failed.count, free=policy.user_free_failures)
        waiting = _waiting("user", failed.count, failed.last_at, wait, now)
        found += [waiting] if waiting else []
    if address:
        failed = sign_in_events.failures_from_address(engine, address, after=now - timedelta(minutes=policy.address_window_minutes))
        wait = policy.wait_seconds(failed.count, free=policy.address_free_failures)
        waiting = _waiting("address", failed.count, failed.last_at, wait, now)
        found += [waiting] if waiting else []
    return max(found, key=lambda r: r.retry_after_seconds) if found else None


def record_refusal(engine: Engine, refused: Refusal, username: str | None, address: str | None, *, now: datetime) -> None:
    """Record the refusal in the audit trail and the log, once per wait: repeated tries during
    the same wait add nothing (a flood of tries must not flood the store)."""
    if refused.scope == "user":
        already = sign_in_events.throttled_user_since(engine, username or "", since=refused.last_failure_at)
    else:
        already = sign_in_events.throttled_address_since(engine, address or "", since=refused.last_failure_at)
    if already:
        return
    detail = f"{refused.failures} failures in a row from this {refused.scope}; wait {refused.retry_after_seconds} s"
    trail.record(engine, "sign_in_throttled", username=username, address=address, now=now, detail=detail)
    who = f"user {username}" if refused.scope == "user" else f"address {address}"
    LOGGER.warning("sign-in throttled for %s: %d failures in a row; next try in %d s", who, refused.failures,
                   refused.retry_after_seconds)  # fmt: skip
