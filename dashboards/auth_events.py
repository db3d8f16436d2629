"""The sign-in audit trail: one row in the store's `auth_events` per sign-in, failed
sign-in, throttled attempt, sign-out and revocation of a user's sessions.

Who is recorded by the name that was typed, lower-cased, and only when it is a valid user
name (`auth.typed_name`: a password typed into the name field by mistake usually is not,
and is not kept); where from by the client's address as the WSGI server reports it (behind
a reverse proxy, the address it forwards: see `riskcast serve --trusted-proxy`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine

from riskcast.store import sign_in_events

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
    """Append one event (one of the store's AUTH_EVENTS; ValueError for another). `bind` may
    be a connection inside the caller's transaction (so a revocation and its event commit
    together)."""
    sign_in_events.append_event(bind, event, username=username, address=(address or "")[:MAX_ADDRESS_LENGTH] or None,
                                now=now, detail=detail)  # fmt: skip
