"""The store: SQLAlchemy tables, connection and migrations, and a thin helper API.

    engine = open_store(settings.database_url)   # connect + migrate to head
    run_id = start_run(engine, "score", now=now)
    write_scores(engine, run_id, "v3", scores, drivers, now=now)
    finish_run(engine, run_id, status="succeeded", now=now)

SQLite file by default, PostgreSQL by URL. The schema comes only from the Alembic
migrations in riskcast/store/migrations; tables are described in riskcast.store.tables.
"""

from riskcast.store.records import (
    encounter_scores,
    fail_unfinished_runs,
    finish_run,
    latest_scored_hour,
    latest_scores,
    scores_at_hour,
    start_run,
    write_quarantine,
    write_scores,
)
from riskcast.store.session import (
    alembic_config,
    connect,
    current_revision,
    head_revision,
    open_store,
    session_factory,
    upgrade,
    write_session,
    write_transaction,
)
from riskcast.store.tables import metadata
from riskcast.store.weekly_performance import read_weekly_performance, replace_weekly_performance

__all__ = [
    "alembic_config",
    "connect",
    "current_revision",
    "encounter_scores",
    "fail_unfinished_runs",
    "finish_run",
    "head_revision",
    "latest_scored_hour",
    "latest_scores",
    "metadata",
    "open_store",
    "read_weekly_performance",
    "replace_weekly_performance",
    "scores_at_hour",
    "session_factory",
    "start_run",
    "upgrade",
    "write_quarantine",
    "write_scores",
    "write_session",
    "write_transaction",
]
