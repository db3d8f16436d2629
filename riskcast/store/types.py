"""Column types shared by the store's tables.

`UTCDateTime` exists because SQLite has no time-zone-aware timestamp: it stores text and
hands back naive datetimes. Every time in the store is UTC, so this type converts aware
values to UTC on the way in and makes values UTC-aware on the way out, on every backend.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# 64-bit ids on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is an autoincrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC-aware in Python and `timestamptz` on PostgreSQL.

    Binding a naive datetime is refused (it is ambiguous); an aware one in another zone is
    converted to UTC. SQLite stores the UTC wall time as text without an offset, so reading
    it back attaches UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store; pass a UTC-aware datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
