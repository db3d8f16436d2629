"""Signed-in dashboard browsers: the store's `dashboard_sessions` table, one named query a job.

A session is keyed by `session_id`, which the caller makes from the browser's token
(riskcast.dashboards.sessions keeps only the token's SHA-256 here, so reading this table
signs nobody in). Whether a session is still open (expiry, idle time) is the caller's
judgement, from the times a `SessionRecord` carries. Each function takes an Engine or a
Connection (inside the caller's transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, insert, select, update

from riskcast.store.binding import reading, writing
from riskcast.store.tables import dashboard_sessions

__all__ = [
    "SessionRecord",
    "delete_sessions_expired_before",
    "find_session",
    "insert_session",
    "revoke_session",
    "revoke_user_sessions",
    "touch_session",
]


@dataclass(frozen=True)
class SessionRecord:
    """One row of `dashboard_sessions`: whose it is and the times that decide whether it is
    open (UTC-aware; `revoked_at` None while not revoked)."""

    username: str
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


def insert_session(
    bind: Engine | Connection,
    session_id: str,
    username: str,
    *,
    now: datetime,
    expires_at: datetime,
    address: str | None,
) -> None:
    """Record a session of `username` opened at `now` (and last used then), ending at
    `expires_at`; `address` is where the browser signed in from (None when unknown)."""
    with writing(bind) as connection:
        connection.execute(insert(dashboard_sessions).values(id=session_id, username=username, created_at=now,
                                                             last_active_at=now, expires_at=expires_at,
                                                             revoked_at=None, address=address))  # fmt: skip


def delete_sessions_expired_before(bind: Engine | Connection, cutoff: datetime) -> int:
    """Forget the sessions whose lifetime ended before `cutoff` (the sign-in audit trail is
    `auth_events`, not this table); how many."""
    with writing(bind) as connection:
        result = connection.execute(delete(dashboard_sessions).where(dashboard_sessions.c.expires_at < cutoff))
    return int(result.rowcount or 0)


def find_session(bind: Engine | Connection, session_id: str) -> SessionRecord | None:
    """The session with this id, open or not; None when there is none."""
    with reading(bind) as connection:
        row = connection.execute(select(dashboard_sessions).where(dashboard_sessions.c.id == session_id)).one_or_none()
    if row is None:
        return None
    return SessionRecord(username=str(row.username), created_at=row.created_at, last_active_at=row.last_active_at,
                         expires_at=row.expires_at, revoked_at=row.revoked_at)  # fmt: skip


def touch_session(bind: Engine | Connection, session_id: str, *, now: datetime) -> None:
    """Record that a person used the session at `now` (its idle time starts again)."""
    with writing(bind) as connection:
        connection.execute(update(dashboard_sessions).where(dashboard_sessions.c.id == session_id).values(last_active_at=now))


def revoke_session(bind: Engine | Connection, session_id: str, *, now: datetime) -> str | None:
    """Revoke the session with this id at `now`; its user, or None when there is no such
    session not revoked yet (found and revoked in one transaction)."""
    with writing(bind) as connection:
        row = connection.execute(
            select(dashboard_sessions.c.username).where(dashboard_sessions.c.id == session_id,
                                                        dashboard_sessions.c.revoked_at.is_(None))
        ).one_or_none()  # fmt: skip
        if row is None:
            return None
        connection.execute(update(dashboard_sessions).where(dashboard_sessions.c.id == session_id).values(revoked_at=now))
    return str(row.username)


def revoke_user_sessions(bind: Engine | Connection, username: str, *, now: datetime) -> int:
    """Revoke every session of `username` not revoked yet, expired ones included (`now` may
    come from another clock than the one they were opened by); how many."""
    with writing(bind) as connection:
        result = connection.execute(
            update(dashboard_sessions)
            .where(dashboard_sessions.c.username == username, dashboard_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return int(result.rowcount or 0)
