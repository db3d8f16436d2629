"""The weekly performance of the scores a model really gave: AUROC and AUPRC per calendar
week, from the store's `scores` against the outcomes in the lake (labels exactly as training
makes them, riskcast.labels), with patient-bootstrap intervals; a week whose labels hold no
event says so instead of a number.

The bootstrap takes seconds a version, so it is a flow, not a page's query: the nightly job
calls record_weekly_performance, which stores each registered version's weeks in the store's
`weekly_performance` table (riskcast.store.weekly_performance), and the Model page reads them
(riskcast.read_models.model_report.stored_performance).

Every time is UTC-aware (polars Datetime("us", "UTC")); `now` is always passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from riskcast.evaluate import discrimination
from riskcast.labels import make_labels
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.external import model_outcome
from riskcast.store.tables import scores
from riskcast.store.weekly_performance import WEEKLY_PERFORMANCE_SCHEMA, replace_weekly_performance

UTC = pl.Datetime("us", "UTC")


def _finite(value: Any) -> float | None:
    """A finite float, else None (a metric the bootstrap could not measure reads as null)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# what performance_over_time returns: the stored weeks' columns, less when they were computed
PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    name: dtype for name, dtype in WEEKLY_PERFORMANCE_SCHEMA.items() if name != "computed_at"
}

WEEK = "1w"

STATUS_MEASURED = "measured"

STATUS_NO_EVENTS = "no_events_yet"
"""Labelled hours, but none followed by an event within the horizon: AUROC is undefined."""

STATUS_PENDING = "outcomes_pending"
"""Every scored hour is still inside its horizon for a patient still in hospital."""

STATUS_NO_NON_EVENTS = "no_non_events"


def weekly_performance(
    scored: pl.DataFrame,
    outcomes: pl.DataFrame | pl.LazyFrame,
    encounters: pl.DataFrame | pl.LazyFrame,
    *,
    outcome: str,
    horizon_hours: float,
    now: datetime,
    n_boot: int = 100,
    seed: int = 0,
) -> pl.DataFrame:
    """AUROC and AUPRC of the scores a model gave, per calendar week (Monday 00:00 UTC).

    `scored`: encounter_id, patient_id, scored_at (UTC), risk (null for insufficient data).
    Each scored hour is labelled as training labels it (riskcast.labels.make_labels): 1 when
    the encounter's first `outcome` event falls in (scored_at, scored_at + horizon]; hours
    at or after the event are dropped; 0 when no event falls in the horizon and the stay is
    observed through it; otherwise pending (a patient still in hospital whose horizon has
    not passed at `now`). Only what is known at `now` counts: later events and discharges
    are ignored. Intervals: `n_boot` patient-bootstrap resamples (riskcast.evaluate).

    Returns PERFORMANCE_SCHEMA, oldest week first. `status` is "measured", or, with null
    metrics, "no_events_yet" (no labelled hour was followed by an event), "outcomes_pending"
    (no labelled hour yet) or "no_non_events".
    """
    if scored.height == 0:
        return pl.DataFrame(schema=PERFORMANCE_SCHEMA)
    now_literal = pl.lit(now, dtype=UTC)
    known_outcomes = outcomes.lazy().filter(pl.col("event_time") <= now_literal)
    known_stays = encounters.lazy().select(
        "encounter_id",
        pl.when(pl.col("discharge_time") <= now_literal).then(pl.col("discharge_time")).alias("discharge_time"),
    )
    rated = scored.filter(pl.col("risk").is_not_null())
    labels = make_labels(
        rated.select("encounter_id", pl.col("scored_at").alias("time")),
        known_outcomes,
        known_stays,
        outcome=outcome,
        horizon_hours=horizon_hours,
        as_of=now,
    )
    labelled = rated.join(
        labels.select("encounter_id", pl.col("time").alias("scored_at"), "label"), on=["encounter_id", "scored_at"], how="inner"
    ).with_columns(pl.col("scored_at").dt.truncate(WEEK).alias("week_start"))
    counts = (
        scored.with_columns(pl.col("scored_at").dt.truncate(WEEK).alias("week_start"))
        .group_by("week_start")
        .agg(
            pl.col("risk").is_not_null().sum().cast(pl.Int64).alias("n_scored"),
            pl.col("risk").is_null().sum().cast(pl.Int64).alias("n_insufficient"),
        )
    )
    label_counts = labelled.group_by("week_start").agg(
        pl.col("label").is_not_null().sum().cast(pl.Int64).alias("n_labelled"),
        pl.col("label").is_null().sum().cast(pl.Int64).alias("n_pending"),
        (pl.col("label") == 1).sum().cast(pl.Int64).alias("n_positive"),
        pl.col("patient_id").filter(pl.col("label").is_not_null()).n_unique().cast(pl.Int64).alias("n_patients"),
    )
    rows = []
    weekly = counts.join(label_counts, on="week_start", how="left").sort("week_start")
    for week in weekly.iter_rows(named=True):
        row = {name: week.get(name) for name in PERFORMANCE_SCHEMA}
        for name in ("n_labelled", "n_pending", "n_positive", "n_patients"):
            row[name] = row[name] or 0
        # Hours that did not survive labelling (at or after the event) are neither labelled nor pending.
        if row["n_labelled"] == 0:
            row["status"] = STATUS_PENDING
        elif row["n_positive"] == 0:
            row["status"] = STATUS_NO_EVENTS
        elif row["n_positive"] == row["n_labelled"]:
            row["status"] = STATUS_NO_NON_EVENTS
        else:
            frame = labelled.filter(pl.col("week_start") == week["week_start"], pl.col("label").is_not_null())
            result = discrimination(frame, score="risk", label="label", cluster="patient_id", n_boot=n_boot, seed=seed)
            row |= {
                "auroc": _finite(result.auroc), "auroc_low": _finite(result.auroc_ci[0]),
                "auroc_high": _finite(result.auroc_ci[1]), "auprc": _finite(result.auprc),
                "auprc_low": _finite(result.auprc_ci[0]), "auprc_high": _finite(result.auprc_ci[1]),
                "status": STATUS_MEASURED,
            }  # fmt: skip
        rows.append(row)
    return pl.DataFrame([{name: row.get(name) for name in PERFORMANCE_SCHEMA} for row in rows], schema=PERFORMANCE_SCHEMA, orient="row")

PERFORMANCE_WEEKS = 12


def performance_over_time(
    engine: Engine,
    lake: Lake,
    registry: ModelRegistry,
    *,
    model_version: str,
    now: datetime,
    weeks: int = PERFORMANCE_WEEKS,
    n_boot: int = 100,
    seed: int = 0,
) -> pl.DataFrame:
    """weekly_performance of the scores `model_version` gave in the last `weeks` calendar
    weeks up to `now` (store `scores`), against the outcomes in `lake`, for the outcome and
    horizon the model was trained for. Empty (PERFORMANCE_SCHEMA) before any score, or when
    the lake is empty."""
    if all(v.version != model_version for v in registry.versions()) or lake.is_empty():
        return pl.DataFrame(schema=PERFORMANCE_SCHEMA)
    outcome, horizon_hours = model_outcome(registry, model_version)
    this_week = pl.Series([now], dtype=UTC).dt.truncate(WEEK)[0]
    since = this_week - timedelta(weeks=max(1, weeks) - 1)
    with engine.connect() as connection:
        rows = connection.execute(
            select(scores.c.encounter_id, scores.c.patient_id, scores.c.scored_at, scores.c.risk).where(
                scores.c.model_version == model_version, scores.c.scored_at >= since, scores.c.scored_at <= now
            )
        ).all()
    scored = pl.DataFrame(
        [tuple(row) for row in rows],
        schema={"encounter_id": pl.String(), "patient_id": pl.String(), "scored_at": UTC, "risk": pl.Float64()},
        orient="row",
    )
    return weekly_performance(
        scored, lake.scan("outcomes"), lake.scan("encounters"), outcome=outcome, horizon_hours=horizon_hours,
        now=now, n_boot=n_boot, seed=seed,
    )  # fmt: skip


def record_weekly_performance(
    engine: Engine,
    lake: Lake,
    registry: ModelRegistry,
    *,
    now: datetime,
    model_versions: Iterable[str] | None = None,
    weeks: int = PERFORMANCE_WEEKS,
    n_boot: int = 100,
    seed: int = 0,
) -> dict[str, int]:
    """Compute performance_over_time of each of `model_versions` (every registered version
    when None: the Model page's picker offers them all) at `now` and store it in place of the
    version's stored weeks. Returns the number of weeks stored per version (0 for a version
    with no scores in the window)."""
    versions = [v.version for v in registry.versions()] if model_versions is None else list(model_versions)
    stored = {}
    for version in versions:
        frame = performance_over_time(engine, lake, registry, model_version=version, now=now, weeks=weeks,
                                      n_boot=n_boot, seed=seed)  # fmt: skip
        stored[version] = replace_weekly_performance(engine, version, frame, computed_at=now)
    return stored


__all__ = [
    "PERFORMANCE_SCHEMA",
    "PERFORMANCE_WEEKS",
    "STATUS_MEASURED",
    "STATUS_NO_EVENTS",
    "STATUS_NO_NON_EVENTS",
    "STATUS_PENDING",
    "WEEK",
    "performance_over_time",
    "record_weekly_performance",
    "weekly_performance",
]
