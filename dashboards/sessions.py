"""Dashboard sessions kept in the store, so that they can be ended.

A browser that signs in gets a random token in its (signed, HttpOnly) cookie; the store's
`dashboard_sessions` keeps only the token's SHA-256, with the user, when the session ends
(`expires_at`, one shift after signing in), when it was last used by a person
(`last_active_at`) and whether it was revoked. A session stops working, whatever cookie the
browser holds, when:

- its user signs out (that session), or their password is changed or they are disabled
  (all their sessions: `revoke_all`);
- nobody used it for the idle time: requests made by the page on its own (the ward board's
  refresh every 30 s) do not count as use, so a screen left signed in on a ward signs out;
- its lifetime has passed, however busy it was.

`SessionCookies` is Flask's signed-cookie session with one change: the cookie is `Secure`
when the request came over HTTPS (the default, "auto"; behind a TLS-terminating proxy the
WSGI server must trust its X-Forwarded-Proto), always, or never.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import Connection, Engine, delete, insert, select, update

from riskcast.store.session import write_transaction
from riskcast.store.tables import dashboard_sessions

TOKEN_BYTES = 32
ACTIVITY_GRANULARITY = timedelta(seconds=60)
"""`last_active_at` is rewritten at most this often (a write per click is not needed)."""
COOKIE_SECURE_CHOICES = ("auto", "always", "never")
_MAX_TOKEN_LENGTH = 128


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(engine: Engine, username: str, *, now: datetime, lifetime: timedelta, address: str | None) -> str:
    """Open a session for `username`; returns its token (for the cookie; the store keeps only
    its digest). Sessions that ended long ago are deleted on the way (the audit trail of
    sign-ins is `auth_events`, not this table)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with write_transaction(engine) as connection:
        connection.execute(delete(dashboard_sessions).where(dashboard_sessions.c.expires_at < now - lifetime))
        connection.execute(
            insert(dashboard_sessions).values(id=_digest(token), username=username, created_at=now, last_active_at=now,
                                              expires_at=now + lifetime, revoked_at=None, address=(address or "")[:64] or None)
        )  # fmt: skip
    return token


def active_username(engine: Engine, token: object, *, now: datetime, idle: timedelta, activity: bool) -> str | None:
    """The user of the open session with this token, or None (unknown, revoked, expired, or
    idle for `idle`). With `activity` (a person made this request) its idle time restarts."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    key = _digest(token)
    with engine.connect() as connection:
        row = connection.execute(select(dashboard_sessions).where(dashboard_sessions.c.id == key)).one_or_none()
    if row is None or row.revoked_at is not None or now >= row.expires_at or now - row.last_active_at >= idle:
        return None
    if activity and now - row.last_active_at >= ACTIVITY_GRANULARITY:
        with write_transaction(engine) as connection:
            connection.execute(update(dashboard_sessions).where(dashboard_sessions.c.id == key).values(last_active_at=now))
    return str(row.username)


def end(engine: Engine, token: object, *, now: datetime) -> str | None:
    """Revoke the session with this token; its user, or None when it was not open."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    key = _digest(token)
    with write_transaction(engine) as connection:
        row = connection.execute(
            select(dashboard_sessions.c.username).where(dashboard_sessions.c.id == key, dashboard_sessions.c.revoked_at.is_(None))
        ).one_or_none()
        if row is None:
            return None
        connection.execute(update(dashboard_sessions).where(dashboard_sessions.c.id == key).values(revoked_at=now))
    return str(row.username)


def revoke_all(connection: Connection, username: str, *, now: datetime) -> int:
    """Revoke every session of `username` not revoked yet, inside the caller's transaction;
    how many (expired ones included: `now` may come from another clock than theirs)."""
    result = connection.execute(
        update(dashboard_sessions)
        .where(dashboard_sessions.c.username == username, dashboard_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed session cookie, `Secure` as `secure` says: "auto" (when this request came
    over HTTPS), "always" or "never"."""

    def __init__(self, secure: str = "auto") -> None:
        if secure not in COOKIE_SECURE_CHOICES:
            raise ValueError(f"cookie_secure {secure!r} is not one of {', '.join(COOKIE_SECURE_CHOICES)}")
        self.secure = secure

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        if self.secure == "auto":
            return flask.has_request_context() and flask.request.is_secure
        return self.secure == "always"
