"""Connecting to the store and bringing its schema to the current revision.

`open_store(url)` is what programs call: it connects, checks the database is reachable
and at a revision this riskcast knows, and applies any pending migrations. The schema is
only ever created by the Alembic migrations shipped inside the package (no alembic.ini
on the user's side).

SQLite (the default, a file in the riskcast home) runs in WAL mode with foreign keys on
and a busy timeout, so the scheduler and the dashboard can both write. Transactions that
write through `write_transaction` start with BEGIN IMMEDIATE, so two writers queue on the
busy timeout instead of failing halfway. PostgreSQL is used by URL (psycopg2 driver).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from riskcast.config import PRIVATE_FILE_MODE, make_private_dir
from riskcast.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
# Arbitrary constant key for pg_advisory_xact_lock: "riskcast" in ASCII, fits a bigint.
_MIGRATION_LOCK_KEY = 0x7269736B63617374
_BEGIN_OPTION = "riskcast_sqlite_begin"


def _safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _first_line(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's trailing background links."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory databases."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent), retrying while another connection holds a lock.

    SQLite answers "database is locked" to `PRAGMA journal_mode = WAL` at once, without
    waiting on the busy timeout, when two connections open a new file together.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _install_sqlite_pragmas(engine: Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; we emit BEGIN ourselves.

    pysqlite's own transaction handling does not emit BEGIN before reads and commits
    before DDL; turning it off (isolation_level None) and emitting BEGIN in the "begin"
    event gives real transactions, including transactional migrations.
    """

    on_disk = _sqlite_file(engine.url.render_as_string(hide_password=False)) is not None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if on_disk:
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def connect(url: str) -> Engine:
    """An Engine for `url`, checked reachable and at a revision this riskcast knows.

    SQLite: the parent folder of the file is created. The database may be empty (call
    `upgrade` or use `open_store`). Raises StoreError, naming the URL (password masked)
    and what to do, when the driver is missing, the server does not answer, or the
    database was migrated by a newer riskcast.
    """
    shown = _safe_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database URL {url!r} is not a valid SQLAlchemy URL (e.g. sqlite:///riskcast.db)") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; riskcast ships psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    is_sqlite = parsed.get_backend_name() == "sqlite"
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if is_sqlite:
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_SECONDS
        connect_args["check_same_thread"] = False
        database_file = _sqlite_file(url)
        if database_file is not None:
            try:
                make_private_dir(database_file.parent)
                # Owner-only from the first byte (SQLite gives its journal and WAL files the same mode).
                os.close(os.open(database_file, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
            except OSError as exc:
                raise StoreError(f"cannot create the database file {database_file} for {shown}: {exc}") from exc
    else:
        options["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_SECONDS
    try:
        engine = create_engine(parsed, connect_args=connect_args, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"no driver for database {shown}: {exc}; for PostgreSQL install riskcast[postgres] (psycopg2)"
        ) from exc
    if is_sqlite:
        _install_sqlite_pragmas(engine)
    try:
        with engine.connect() as connection:
            _check_known_revision(connection, shown)
    except DBAPIError as exc:
        engine.dispose()
        raise StoreError(
            f"cannot reach the database {shown}: {_first_line(exc)}. "
            "Check RISKCAST_DB_URL (or db_url in riskcast.toml), that the server is running, "
            "and that the user may connect."
        ) from exc
    except StoreError:
        engine.dispose()
        raise
    return engine


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config pointing at the migrations inside the installed package.

    With `url`, the `alembic` commands (e.g. `command.revision(cfg, autogenerate=True,
    message=...)` when writing a new migration) connect to it themselves.
    """
    config = Config()
    # ConfigParser interpolates '%'; escape it in paths and URLs.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration shipped with this riskcast."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}; the riskcast installation is incomplete")
    return head


def current_revision(engine_or_connection: Engine | Connection) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    if isinstance(engine_or_connection, Engine):
        with engine_or_connection.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    return MigrationContext.configure(engine_or_connection).get_current_revision()


def _check_known_revision(connection: Connection, shown: str) -> str | None:
    """Raise StoreError when the database is at a revision this riskcast does not ship."""
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None:
        return None
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        raise StoreError(
            f"database {shown} is at schema revision {revision!r}, which this riskcast does not know "
            f"(its newest is {script.get_current_head()!r}); it was probably migrated by a newer "
            "riskcast: upgrade riskcast, or point RISKCAST_DB_URL at another database"
        )
    return revision


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write; commits on success, rolls back on error.

    On SQLite the transaction starts with BEGIN IMMEDIATE, taking the write lock up front,
    so a concurrent writer waits on the busy timeout rather than failing when it upgrades
    a read lock. On PostgreSQL it is an ordinary transaction.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            yield connection


def upgrade(engine_or_url: Engine | str) -> None:
    """Apply pending migrations so the database is at head; a no-op when it already is.

    Runs in one transaction holding a lock (PostgreSQL: an advisory lock; SQLite: the
    write lock of BEGIN IMMEDIATE), so two processes upgrading at once apply each
    migration exactly once. Raises StoreError when the database is at an unknown
    (newer) revision or a migration fails.
    """
    engine = connect(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    shown = _safe_url(engine.url.render_as_string(hide_password=False))
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            _check_known_revision(connection, shown)
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DBAPIError as exc:
        raise StoreError(f"migrating database {shown} to revision {head_revision()!r} failed: {_first_line(exc)}") from exc
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def open_store(url: str) -> Engine:
    """Connect to `url` and bring its schema to head: what the CLI, jobs and dashboard call.

    Idempotent and safe when two processes call it at once (see `upgrade`).
    """
    engine = connect(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """ORM sessions on `engine` that keep loaded objects usable after commit.

    For a unit of work that reads and then writes, prefer `write_session`: on SQLite an
    ordinary session's read transaction cannot always be upgraded to a write while
    another process writes ("database is locked" at once, not after the busy timeout).
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """An ORM session inside `write_transaction`: flushed and committed on success.

    Optimistic locking still applies: updating an alert whose version_counter changed
    since it was read raises sqlalchemy.orm.exc.StaleDataError, and nothing is written.
    """
    with write_transaction(engine) as connection:
        with Session(bind=connection, expire_on_commit=False) as session:
            yield session
            session.flush()
