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
from sqlalchemy import Connection, Engine

from riskcast.store import dashboard_sessions, write_transaction

TOKEN_BYTES = 32
ACTIVITY_GRANULARITY = timedelta(seconds=60)
"""`last_active_at` is rewritten at most this often (a write per click is not needed)."""
COOKIE_SECURE_CHOICES = ("auto", "always", "never")
_MAX_TOKEN_LENGTH = 128


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(token: object) -> str | None:
    """The store's key for a token a browser sent; None for what cannot be one."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH:
        return None
    return _digest(token)


def start(engine: Engine, username: str, *, now: datetime, lifetime: timedelta, address: str | None) -> str:
    """Open a session for `username`; returns its token (for the cookie; the store keeps only
    its digest). Sessions that ended long ago are deleted on the way (the audit trail of
    sign-ins is `auth_events`, not this table)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with write_transaction(engine) as connection:
        dashboard_sessions.delete_sessions_expired_before(connection, now - lifetime)
        dashboard_sessions.insert_session(connection, _digest(token), username, now=now, expires_at=now + lifetime,
                                          address=(address or "")[:64] or None)  # fmt: skip
    return token


def active_username(engine: Engine, token: object, *, now: datetime, idle: timedelta, activity: bool) -> str | None:
    """The user of the open session with this token, or None (unknown, revoked, expired, or
    idle for `idle`). With `activity` (a person made this request) its idle time restarts."""
    key = _key(token)
    if key is None:
        return None
    found = dashboard_sessions.find_session(engine, key)
    if found is None or found.revoked_at is not None or now >= found.expires_at or now - found.last_active_at >= idle:
        return None
    if activity and now - found.last_active_at >= ACTIVITY_GRANULARITY:
        dashboard_sessions.touch_session(engine, key, now=now)
    return found.username


def end(engine: Engine, token: object, *, now: datetime) -> str | None:
    """Revoke the session with this token; its user, or None when it was not open."""
    key = _key(token)
    if key is None:
        return None
    return dashboard_sessions.revoke_session(engine, key, now=now)


def revoke_all(connection: Connection, username: str, *, now: datetime) -> int:
    """Revoke every session of `username` not revoked yet, inside the caller's transaction;
    how many (expired ones included: `now` may come from another clock than theirs)."""
    return dashboard_sessions.revoke_user_sessions(connection, username, now=now)


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
