"""The sign-in audit trail: one row in the store's `auth_events` per sign-in, failed
sign-in, throttled attempt, sign-out and revocation of a user's sessions.

Who is recorded by the name that was typed, lower-cased, and only when it is a valid user
name (`auth.typed_name`: a password typed into the name field by mistake usually is not,
and is not kept); where from by the client's address as the WSGI server reports it (behind
a reverse proxy, the address it forwards: see `riskcast serve --trusted-proxy`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, insert

from riskcast.store.session import write_transaction
from riskcast.store.tables import AUTH_EVENTS, auth_events

MAX_ADDRESS_LENGTH = 64


def record(
    bind: Engine | Connection,
    event: str,
    *,
    username: str | None,
    address: str | None,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Append one event (one of AUTH_EVENTS). `bind` may be a connection inside the caller's
    transaction (so a revocation and its event commit together)."""
    if event not in AUTH_EVENTS:
        raise ValueError(f"unknown sign-in event {event!r}; expected one of {', '.join(AUTH_EVENTS)}")
    values = {
        "at": now,
        "event": event,
        "username": username,
        "address": (address or "")[:MAX_ADDRESS_LENGTH] or None,
        "detail": detail,
    }
    if isinstance(bind, Connection):
        bind.execute(insert(auth_events).values(**values))
        return
    with write_transaction(bind) as connection:
        connection.execute(insert(auth_events).values(**values))
