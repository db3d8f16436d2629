"""The sign-in audit trail: the store's `auth_events` table, appended to and counted.

One row per sign-in, failed sign-in, throttled try, sign-out and revocation of a user's
sessions (AUTH_EVENTS). Who and where from are written as the caller gives them
(riskcast.dashboards.auth_events decides what may be kept). The counts are what the sign-in
throttle (riskcast.dashboards.throttle) judges, read from the store so that every process
serving the dashboard sees the same ones. Each function takes an Engine or a Connection
(inside the caller's transaction, so that a revocation and its event commit together).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Engine, func, insert, select

from riskcast.store.binding import reading, writing
from riskcast.store.tables import AUTH_EVENTS, auth_events

__all__ = [
    "AUTH_EVENTS",
    "Failures",
    "append_event",
    "failures_from_address",
    "failures_of_user",
    "last_sign_in",
    "throttled_address_since",
    "throttled_user_since",
]


@dataclass(frozen=True)
class Failures:
    """How many failed sign-ins were counted, and when the last of them was (None: none)."""

    count: int
    last_at: datetime | None


def append_event(
    bind: Engine | Connection,
    event: str,
    *,
    username: str | None,
    address: str | None,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Append one event (one of AUTH_EVENTS) at `now`. Raises ValueError for another event."""
    if event not in AUTH_EVENTS:
        raise ValueError(f"unknown sign-in event {event!r}; expected one of {', '.join(AUTH_EVENTS)}")
    with writing(bind) as connection:
        connection.execute(insert(auth_events).values(at=now, event=event, username=username, address=address, detail=detail))


def _failures(bind: Engine | Connection, condition: ColumnElement[bool], after: datetime) -> Failures:
    query = select(func.count(), func.max(auth_events.c.at)).where(
        condition, auth_events.c.event == "sign_in_failed", auth_events.c.at > after
    )
    with reading(bind) as connection:
        count, last = connection.execute(query).one()
    return Failures(int(count), last)


def failures_of_user(bind: Engine | Connection, username: str, *, after: datetime) -> Failures:
    """The failed sign-ins as `username` strictly after `after`."""
    return _failures(bind, auth_events.c.username == username, after)


def failures_from_address(bind: Engine | Connection, address: str, *, after: datetime) -> Failures:
    """The failed sign-ins from `address` strictly after `after`, whatever names were typed."""
    return _failures(bind, auth_events.c.address == address, after)


def last_sign_in(bind: Engine | Connection, username: str) -> datetime | None:
    """When `username` last signed in (None: never, as far as the trail goes)."""
    query = select(func.max(auth_events.c.at)).where(auth_events.c.username == username, auth_events.c.event == "signed_in")
    with reading(bind) as connection:
        return connection.execute(query).scalar_one()


def _throttled_since(bind: Engine | Connection, condition: ColumnElement[bool], since: datetime) -> bool:
    query = select(func.count()).where(condition, auth_events.c.event == "sign_in_throttled",
                                       auth_events.c.at >= since)  # fmt: skip
    with reading(bind) as connection:
        return bool(connection.execute(query).scalar_one())


def throttled_user_since(bind: Engine | Connection, username: str, *, since: datetime) -> bool:
    """Whether a throttled try as `username` was recorded at or after `since`."""
    return _throttled_since(bind, auth_events.c.username == username, since)


def throttled_address_since(bind: Engine | Connection, address: str, *, since: datetime) -> bool:
    """Whether a throttled try from `address` was recorded at or after `since`."""
    return _throttled_since(bind, auth_events.c.address == address, since)
