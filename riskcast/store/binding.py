"""A connection for a store function that was given an Engine or the caller's Connection.

The named queries take either: with an Engine they open a connection of their own (and, to
write, a write transaction committed on return); with a Connection they work inside the
caller's transaction, so that several of them commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from riskcast.store.session import write_transaction


@contextmanager
def writing(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection inside a transaction: a new write transaction, or the caller's."""
    if isinstance(bind, Engine):
        with write_transaction(bind) as connection:
            yield connection
    elif bind.in_transaction():
        yield bind
    else:
        with bind.begin():
            yield bind


@contextmanager
def reading(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection to read on: a new one, or the caller's (inside its transaction, if any)."""
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            yield connection
    else:
        yield bind
