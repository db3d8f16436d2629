"""Alembic environment for the riskcast store.

riskcast runs migrations from code (`riskcast.store.upgrade`), which passes an open
Connection, already inside a transaction, in `config.attributes["connection"]`: the
caller holds the lock and commits.

To write a new migration after editing riskcast/store/tables.py, bring a scratch
database to head and let Alembic compare it with the tables:

    from alembic import command
    from riskcast.store import alembic_config, open_store
    open_store("sqlite:///scratch.db")
    command.revision(alembic_config("sqlite:///scratch.db"), autogenerate=True,
                     message="what changed", rev_id="0002")

then read and tidy the generated file (times as sa.DateTime(timezone=True)).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from riskcast.store.session import connect
from riskcast.store.tables import metadata

config = context.config


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: build the config with riskcast.store.alembic_config(url)")
    engine = connect(url)
    try:
        with engine.begin() as connection:
            _configure_and_run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
