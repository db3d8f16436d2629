"""The data-health page: how fresh each feed is, what the contracts quarantined, and the
latest pipeline runs and job firings (conventions: riskcast.read_models.scores).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
from sqlalchemy import Engine, select

from riskcast import monitoring
from riskcast.catalog import Catalog, load_catalog
from riskcast.lake import Lake
from riskcast.monitoring import DEFAULT_LOOKBACK_HOURS, FRESHNESS_SCHEMA
from riskcast.read_models.scores import UTC
from riskcast.store import records
from riskcast.store.records import QUARANTINE_SUMMARY_SCHEMA
from riskcast.store.tables import job_runs, runs

RUNS_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "kind": pl.String(),
    "status": pl.String(),
    "started_at": UTC,
    "finished_at": UTC,
    "seconds": pl.Float64(),
    "error": pl.String(),
}


def feed_freshness(
    lake: Lake, *, now: datetime, catalog: Catalog | None = None, lookback_hours: float = DEFAULT_LOOKBACK_HOURS
) -> pl.DataFrame:
    """The feeds of the wards with admitted patients at `now` and how fresh each is (columns
    FRESHNESS_SCHEMA, stalest first): riskcast.monitoring's one definition of a stale feed,
    the one whose problems the monitor job raises as system alerts. Empty for an empty lake."""
    if lake.is_empty():
        return pl.DataFrame(schema=FRESHNESS_SCHEMA)
    return monitoring.feed_freshness(
        lake.scan("observations"), lake.scan("encounters"), at=now, catalog=catalog or load_catalog(),
        lookback_hours=lookback_hours,
    )


def quarantine_summary(engine: Engine) -> pl.DataFrame:
    """Quarantined input rows per table and rule (columns QUARANTINE_SUMMARY_SCHEMA), most
    first: riskcast.store.records.quarantine_summary, the store's named query."""
    return records.quarantine_summary(engine)


def recent_runs(engine: Engine, *, limit: int = 20) -> pl.DataFrame:
    """The latest pipeline runs (store `runs`) and scheduled job firings (`job_runs`),
    newest first (columns RUNS_SCHEMA; `error` is the first line only)."""
    with engine.connect() as connection:
        run_rows = connection.execute(
            select(runs.c.kind, runs.c.status, runs.c.started_at, runs.c.finished_at, runs.c.error)
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            .limit(limit)
        ).all()
        job_rows = connection.execute(
            select(job_runs.c.job, job_runs.c.status, job_runs.c.started_at, job_runs.c.finished_at, job_runs.c.error)
            .order_by(job_runs.c.started_at.desc(), job_runs.c.id.desc())
            .limit(limit)
        ).all()
    rows = [("run", *row) for row in run_rows] + [("job", *row) for row in job_rows]
    frame = pl.DataFrame(
        rows,
        schema={"source": pl.String(), "kind": pl.String(), "status": pl.String(), "started_at": UTC,
                "finished_at": UTC, "error": pl.String()},
        orient="row",
    )  # fmt: skip
    return (
        frame.with_columns(
            ((pl.col("finished_at") - pl.col("started_at")).dt.total_milliseconds() / 1000.0).alias("seconds"),
            pl.col("error").str.split("\n").list.first(),
        )
        .sort("started_at", descending=True)
        .head(limit)
        .select(list(RUNS_SCHEMA))
    )


__all__ = [
    "FRESHNESS_SCHEMA",
    "QUARANTINE_SUMMARY_SCHEMA",
    "RUNS_SCHEMA",
    "feed_freshness",
    "quarantine_summary",
    "recent_runs",
]
