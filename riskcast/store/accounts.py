"""The dashboard's user accounts: the store's `users` table, one named query a job.

The store keeps what it is given: the password hash is made and checked by the caller
(riskcast.dashboards.auth, Argon2id), and so are the rules on names, roles and wards; the
table's CHECK allows only USER_ROLES. Each function takes an Engine or a Connection (inside
the caller's transaction, so that a reset and the end of that user's sessions commit
together).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from riskcast.store.binding import reading, writing
from riskcast.store.tables import USER_ROLES, users

__all__ = [
    "USER_ROLES",
    "UserRecord",
    "count_users",
    "find_user",
    "insert_user",
    "list_users",
    "replace_password_hash",
    "reset_user",
    "set_user_active",
]


@dataclass(frozen=True)
class UserRecord:
    """One row of `users`. The hash is there for the caller's password check and is left out
    of the repr, so that a record logged by mistake shows no hash."""

    username: str
    role: str
    wards: tuple[str, ...]
    active: bool
    created_at: datetime
    password_hash: str = field(repr=False)


def _record(row: Any) -> UserRecord:
    return UserRecord(username=row.username, role=row.role, wards=tuple(row.wards or ()), active=bool(row.active),
                      created_at=row.created_at, password_hash=row.password_hash)  # fmt: skip


def find_user(bind: Engine | Connection, username: str) -> UserRecord | None:
    """The user named exactly `username` (already normalised by the caller), active or not;
    None when there is none."""
    with reading(bind) as connection:
        row = connection.execute(select(users).where(users.c.username == username)).one_or_none()
    return None if row is None else _record(row)


def list_users(bind: Engine | Connection) -> list[UserRecord]:
    """Every user, active or not, by name."""
    with reading(bind) as connection:
        rows = connection.execute(select(users).order_by(users.c.username)).all()
    return [_record(row) for row in rows]


def count_users(bind: Engine | Connection) -> int:
    """How many users the store holds, active or not."""
    with reading(bind) as connection:
        return int(connection.execute(select(func.count()).select_from(users)).scalar_one())


def insert_user(
    bind: Engine | Connection,
    username: str,
    *,
    password_hash: str,
    role: str,
    wards: Sequence[str],
    created_at: datetime,
) -> None:
    """Add an active user. The name is the key: inserting a name that exists raises
    sqlalchemy's IntegrityError (callers check `find_user` first, in the same transaction)."""
    with writing(bind) as connection:
        connection.execute(insert(users).values(username=username, password_hash=password_hash, role=role,
                                                wards=list(wards), active=True, created_at=created_at))  # fmt: skip


def reset_user(bind: Engine | Connection, username: str, *, password_hash: str, role: str, wards: Sequence[str]) -> bool:
    """Give an existing user a new password hash, role and wards, and make them active again
    (their sessions are the caller's to end); whether a user of that name exists."""
    with writing(bind) as connection:
        result = connection.execute(update(users).where(users.c.username == username)
                                    .values(password_hash=password_hash, role=role, wards=list(wards), active=True))  # fmt: skip
    return bool(result.rowcount)


def set_user_active(bind: Engine | Connection, username: str, *, active: bool) -> bool:
    """Enable or disable a user (their sessions are the caller's to end); whether a user of
    that name exists."""
    with writing(bind) as connection:
        result = connection.execute(update(users).where(users.c.username == username).values(active=active))
    return bool(result.rowcount)


def replace_password_hash(bind: Engine | Connection, username: str, password_hash: str) -> None:
    """Store a new hash of the same password (a rehash with stronger parameters after a
    successful check); nothing else about the user changes and their sessions stay open."""
    with writing(bind) as connection:
        connection.execute(update(users).where(users.c.username == username).values(password_hash=password_hash))
