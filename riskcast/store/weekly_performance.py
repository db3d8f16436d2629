"""The Model page's weekly performance: the store's `weekly_performance` table, two named
queries. The nightly job (riskcast.pipeline.performance) replaces a version's rows; the read
model (riskcast.read_models.model_report) reads them. Times are UTC-aware.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
from sqlalchemy import Connection, Engine, delete, insert, select

from riskcast.store.binding import reading, writing
from riskcast.store.tables import PERFORMANCE_STATUSES, weekly_performance

UTC_DATETIME = pl.Datetime("us", "UTC")
WEEKLY_PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    "week_start": UTC_DATETIME,
    "n_scored": pl.Int64(),
    "n_insufficient": pl.Int64(),
    "n_labelled": pl.Int64(),
    "n_pending": pl.Int64(),
    "n_positive": pl.Int64(),
    "n_patients": pl.Int64(),
    "auroc": pl.Float64(),
    "auroc_low": pl.Float64(),
    "auroc_high": pl.Float64(),
    "auprc": pl.Float64(),
    "auprc_low": pl.Float64(),
    "auprc_high": pl.Float64(),
    "status": pl.String(),
    "computed_at": UTC_DATETIME,
}
"""A version's stored weeks: the weekly performance frame, and when it was computed."""


def replace_weekly_performance(
    bind: Engine | Connection, model_version: str, frame: pl.DataFrame, *, computed_at: datetime
) -> int:
    """Store `frame` (one row per week: the columns of WEEKLY_PERFORMANCE_SCHEMA but
    computed_at) as `model_version`'s weekly performance, computed at `computed_at`, in place
    of whatever was stored for it: in one transaction, so a reader sees the old weeks or the new
    ones, never a mix. Returns the number of weeks stored (0 clears the version's rows)."""
    if computed_at.tzinfo is None:
        raise ValueError("replace_weekly_performance: computed_at must be time-zone-aware (UTC)")
    columns = [name for name in WEEKLY_PERFORMANCE_SCHEMA if name != "computed_at"]
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"weekly performance frame lacks column(s) {missing}; expected {columns}")
    unknown = sorted(set(frame["status"].to_list()) - set(PERFORMANCE_STATUSES))
    if unknown:
        raise ValueError(f"weekly performance: unknown status(es) {unknown}; known: {list(PERFORMANCE_STATUSES)}")
    rows = [
        {**row, "model_version": model_version, "computed_at": computed_at}
        for row in frame.select(columns).to_dicts()
    ]
    with writing(bind) as connection:
        connection.execute(delete(weekly_performance).where(weekly_performance.c.model_version == model_version))
        if rows:
            connection.execute(insert(weekly_performance), rows)
    return len(rows)


def read_weekly_performance(bind: Engine | Connection, model_version: str) -> pl.DataFrame:
    """`model_version`'s stored weeks (columns WEEKLY_PERFORMANCE_SCHEMA), oldest first; empty
    before the nightly job first computed them."""
    query = (
        select(*[weekly_performance.c[name] for name in WEEKLY_PERFORMANCE_SCHEMA])
        .where(weekly_performance.c.model_version == model_version)
        .order_by(weekly_performance.c.week_start)
    )
    with reading(bind) as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=WEEKLY_PERFORMANCE_SCHEMA, orient="row")


__all__ = ["WEEKLY_PERFORMANCE_SCHEMA", "read_weekly_performance", "replace_weekly_performance"]
