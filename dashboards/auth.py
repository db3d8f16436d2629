"""Who may use the dashboard, and what each role may see and do.

Users live in the store's `users` table (created with `riskcast users add`); passwords are
stored only as Argon2id hashes (argon2-cffi's PasswordHasher, which salts each hash and
records its parameters in it). A signed-in browser holds a Flask session cookie, signed
with a secret key generated once into the riskcast home (`dashboard-secret.key`, mode
0600), so sessions survive a restart and are refused after the key file is replaced.

Roles (the store's USER_ROLES) and what they may do; `wards` on a user narrows what they
see to those wards (a nurse must have at least one; for other roles no wards means all):

    role            pages                          acts on alerts
    nurse           ward, patient (own wards)      yes
    physician       ward, patient, data health,   yes
                    model, fairness
    data_scientist  data health, model, fairness   no
    admin           every page                     no

Every page layout and every callback asks `page_user(page)` (or `current_user()`) and
draws nothing for None; the gate in `signin` also refuses every request of a signed-out
browser before Dash sees it. The session and the user are read from the store on each
request (see `sessions`), so signing out, disabling a user or changing their password ends
their sessions at once, and an unused session ends after the idle timeout.

A password must have MIN_PASSWORD_LENGTH characters and be hard to guess: zxcvbn (Dropbox's
estimator, which knows common passwords, names, words, keyboard walks, repeats, dates and
l33t spellings, and here also the user's name and wards) must rate it at least
MIN_PASSWORD_SCORE of 4 ("safely unguessable" by an online attacker, and costly offline).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import flask
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine
from zxcvbn import zxcvbn

from riskcast.clock import wall_clock
from riskcast.dashboards import auth_events, sessions
from riskcast.dashboards.context import context
from riskcast.errors import ConfigError
from riskcast.store import accounts, write_transaction
from riskcast.store.accounts import USER_ROLES

SECRET_KEY_FILE = "dashboard-secret.key"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MIN_PASSWORD_SCORE = 3
"""zxcvbn's score: 0 too guessable, 1 very guessable, 2 somewhat, 3 safely unguessable, 4 very."""
ESTIMATED_CHARACTERS = 100
"""zxcvbn rates the first this many characters (its run time grows fast with length)."""
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
PAGES = ("ward", "patient", "data-health", "model", "fairness")
ROLE_PAGES: dict[str, frozenset[str]] = {
    "nurse": frozenset({"ward", "patient"}),
    "physician": frozenset({"ward", "patient", "data-health", "model", "fairness"}),
    "data_scientist": frozenset({"data-health", "model", "fairness"}),
    "admin": frozenset({"ward", "patient", "data-health", "model", "fairness"}),
}
ACTING_ROLES = frozenset({"nurse", "physician"})
"""Roles that may acknowledge, snooze and resolve alerts (clinical staff)."""
DEMO_USERS = (("demo-nurse", "nurse"), ("demo-physician", "physician"), ("demo-admin", "admin"))

_HASHER = PasswordHasher()
# Verified against when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
_SESSION_TOKEN = "sid"
_INTERVAL_PROPERTY = ".n_intervals"


@dataclass(frozen=True)
class DashboardUser:
    """A signed-in user: their role and the wards they may see (empty: all, except nurses)."""

    username: str
    role: str
    wards: tuple[str, ...]

    @property
    def visible_wards(self) -> tuple[str, ...] | None:
        """The wards this user sees; None means every ward."""
        return self.wards if self.wards or self.role == "nurse" else None

    def may_see_ward(self, ward: str | None) -> bool:
        """Whether a patient on `ward` is visible to this user."""
        visible = self.visible_wards
        return visible is None or (ward is not None and ward in visible)

    def may_open(self, page: str) -> bool:
        """Whether this user's role may open `page` (one of PAGES)."""
        return page in ROLE_PAGES.get(self.role, frozenset())

    @property
    def may_act(self) -> bool:
        """Whether this user may acknowledge, snooze and resolve alerts."""
        return self.role in ACTING_ROLES

    @property
    def home(self) -> str:
        """The page this user lands on after signing in."""
        return "/" if self.may_open("ward") else "/data-health"


@dataclass(frozen=True)
class UserInfo:
    """A row of the users table as `riskcast users list` shows it (never the hash)."""

    username: str
    role: str
    wards: tuple[str, ...]
    active: bool
    created_at: datetime


# ----------------------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    """An Argon2id hash of `password` (salted; parameters recorded in the hash)."""
    return _HASHER.hash(password)


def _check_username(username: str) -> str:
    name = (username or "").strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise ConfigError(
            f"username {username!r} is not allowed: use 2-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def typed_name(username: object) -> str | None:
    """A typed user name, stripped and lower-cased, when it is a valid user name; else None."""
    if not isinstance(username, str):
        return None
    name = username.strip().lower()
    return name if USERNAME_PATTERN.match(name) else None


def check_password(password: object, *, user_inputs: Iterable[str] = ()) -> None:
    """Raise ConfigError, with zxcvbn's advice, unless `password` is long enough and hard to
    guess. `user_inputs` (the user's name, their wards) count as easy to guess."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    inputs = ["riskcast", "dashboard", "ward", "nurse", "physician", *[str(i) for i in user_inputs if i]]
    estimate = zxcvbn(password[:ESTIMATED_CHARACTERS], user_inputs=inputs)
    score = int(estimate["score"])
    if score < MIN_PASSWORD_SCORE:
        feedback = estimate.get("feedback") or {}
        advice = " ".join(t for t in [feedback.get("warning") or "", *(feedback.get("suggestions") or [])] if t)
        raise ConfigError(
            f"the password is too easy to guess (strength {score} of 4; at least {MIN_PASSWORD_SCORE} needed)"
            + (f": {advice}" if advice else "")
        )


def _check_role_and_wards(role: str, wards: Iterable[str]) -> tuple[str, ...]:
    if role not in USER_ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(USER_ROLES)}")
    cleaned = tuple(sorted({w.strip() for w in wards if w and w.strip()}))
    if role == "nurse" and not cleaned:
        raise ConfigError("a nurse sees only their own wards: give at least one --ward")
    return cleaned


# ----------------------------------------------------------------------------------- users


def add_user(
    engine: Engine,
    username: str,
    *,
    role: str,
    password: str,
    wards: Iterable[str] = (),
    now: datetime,
    replace: bool = False,
) -> UserInfo:
    """Create a dashboard user (or, with `replace`, reset an existing one's role, wards and
    password, and activate it). Raises ConfigError for a bad name, role, ward list or
    password, or when the user exists and `replace` is False."""
    name = _check_username(username)
    ward_list = _check_role_and_wards(role, wards)
    check_password(password, user_inputs=[name, *name.replace(".", "-").replace("_", "-").split("-"), *ward_list])
    password_hash = hash_password(password)
    with write_transaction(engine) as connection:
        exists = accounts.find_user(connection, name) is not None
        if exists and not replace:
            raise ConfigError(f"users: {name!r} already exists; pass --replace to reset their role, wards and password")
        if exists:
            accounts.reset_user(connection, name, password_hash=password_hash, role=role, wards=ward_list)
            _revoke_sessions(connection, name, now=now, why="password, role or wards reset")
        else:
            accounts.insert_user(connection, name, password_hash=password_hash, role=role, wards=ward_list, created_at=now)
        saved = accounts.find_user(connection, name)
    assert saved is not None  # written just above, in the same transaction
    return _as_info(saved)


def _as_info(record: accounts.UserRecord) -> UserInfo:
    return UserInfo(record.username, record.role, record.wards, record.active, record.created_at)


def _revoke_sessions(connection: Connection, username: str, *, now: datetime, why: str) -> None:
    revoked = sessions.revoke_all(connection, username, now=now)
    auth_events.record(connection, "sessions_revoked", username=username, address=None, now=now,
                       detail=f"{why}: {revoked} open session{'s' if revoked != 1 else ''} ended")  # fmt: skip


def set_active(engine: Engine, username: str, *, active: bool, now: datetime | None = None) -> None:
    """Enable or disable a user; disabling ends their open sessions at once (`now`: when,
    default the wall clock)."""
    name = _check_username(username)
    with write_transaction(engine) as connection:
        changed = accounts.set_user_active(connection, name, active=active)
        if changed and not active:
            _revoke_sessions(connection, name, now=now or wall_clock(), why="user disabled")
    if not changed:
        raise ConfigError(f"users: no user named {name!r}")


def list_users(engine: Engine) -> list[UserInfo]:
    """Every user, by name."""
    return [_as_info(record) for record in accounts.list_users(engine)]


def count_users(engine: Engine) -> int:
    """How many users the store holds (active or not)."""
    return accounts.count_users(engine)


def _as_user(record: accounts.UserRecord) -> DashboardUser:
    return DashboardUser(username=record.username, role=record.role, wards=record.wards)


def authenticate(engine: Engine, username: str, password: str) -> DashboardUser | None:
    """The active user with this name and password, or None (wrong name, wrong password or
    disabled: the caller cannot tell which, and each costs one Argon2 verification)."""
    name = (username or "").strip().lower()
    record = accounts.find_user(engine, name)
    stored = record.password_hash if record is not None else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if record is None or not record.active:
        return None
    if _HASHER.check_needs_rehash(stored):
        accounts.replace_password_hash(engine, name, hash_password(password))
    return _as_user(record)


def load_user(engine: Engine, username: str) -> DashboardUser | None:
    """The active user `username` (None when missing or disabled)."""
    record = accounts.find_user(engine, username)
    if record is None or not record.active:
        return None
    return _as_user(record)


def create_demo_users(engine: Engine, *, nurse_ward: str | None, now: datetime) -> tuple[str, list[str]] | None:
    """When the store has no users at all: create DEMO_USERS with one new random password
    (the nurse on `nurse_ward`; no nurse without a ward). Returns (password, usernames) so
    the caller can print them once; None when users already exist."""
    if count_users(engine):
        return None
    password = secrets.token_urlsafe(12)
    while True:  # 16 random characters all but always rate 4 of 4; never hand out a weak one
        try:
            check_password(password)
            break
        except ConfigError:
            password = secrets.token_urlsafe(12)
    created = []
    for username, role in DEMO_USERS:
        if role == "nurse" and nurse_ward is None:
            continue
        add_user(engine, username, role=role, password=password, wards=[nurse_ward] if role == "nurse" else [], now=now)
        created.append(username)
    return password, created


# ------------------------------------------------------------------------------ secret key


def secret_key(home: Path) -> bytes:
    """The session-signing key kept in `<home>/dashboard-secret.key`, created on first use
    (64 random hex characters, file mode 0600). Raises ConfigError when the file is readable
    by others or too short."""
    path = Path(home) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")
    key = path.read_text().strip()
    if len(key) < 32:
        raise ConfigError(f"{path} holds no usable key ({len(key)} characters); delete it to make a new one")
    return key.encode()


# --------------------------------------------------------------------------------- session


def _is_automatic_refresh(request: flask.Request) -> bool:
    """Whether this request is a Dash callback fired only by a dcc.Interval (the page
    refreshing itself), not by a person."""
    if request.method != "POST" or not request.path.endswith("/_dash-update-component"):
        return False
    payload = request.get_json(silent=True)
    changed = payload.get("changedPropIds") if isinstance(payload, dict) else None
    return (
        isinstance(changed, list)
        and bool(changed)
        and all(isinstance(p, str) and p.endswith(_INTERVAL_PROPERTY) for p in changed)
    )


def sign_in(user: DashboardUser) -> None:
    """Start a new session for `user` (in the store, and its token in this request's cookie,
    which is cleared first: no session fixation)."""
    ctx = context()
    address = flask.request.remote_addr
    now = ctx.session_clock()
    token = sessions.start(ctx.engine, user.username, now=now, lifetime=ctx.security.lifetime, address=address)
    auth_events.record(ctx.engine, "signed_in", username=user.username, address=address, now=now)
    flask.session.clear()
    flask.session.permanent = True
    flask.session[_SESSION_TOKEN] = token
    flask.g.riskcast_user = user


def sign_out() -> None:
    """End this browser's session (in the store too: a copy of its cookie stops working)."""
    ctx = context()
    now = ctx.session_clock()
    username = sessions.end(ctx.engine, flask.session.get(_SESSION_TOKEN), now=now)
    if username is not None:
        auth_events.record(ctx.engine, "signed_out", username=username, address=flask.request.remote_addr, now=now)
    flask.session.clear()
    flask.g.riskcast_user = None


def current_user() -> DashboardUser | None:
    """The signed-in user of this request (read from the store once per request), or None."""
    if "riskcast_user" in flask.g:
        return flask.g.riskcast_user
    user = None
    token = flask.session.get(_SESSION_TOKEN)
    if token is not None:
        ctx = context()
        username = sessions.active_username(ctx.engine, token, now=ctx.session_clock(), idle=ctx.security.idle,
                                            activity=not _is_automatic_refresh(flask.request))  # fmt: skip
        user = load_user(ctx.engine, username) if username is not None else None
    flask.g.riskcast_user = user
    return user


def page_user(page: str) -> DashboardUser | None:
    """The signed-in user when their role may open `page`; None otherwise (draw nothing)."""
    user = current_user()
    if user is None or not user.may_open(page):
        return None
    return user
