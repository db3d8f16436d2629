"""The patient page: one encounter's latest score and trend, its risk history, what drove
it and what changed, its open alerts and who acted on them, and its charted vitals and labs
(conventions: riskcast.read_models.scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from sqlalchemy import Engine, select

from riskcast.alerts.state import alert_history
from riskcast.catalog import Catalog, load_catalog
from riskcast.explain import UNIT_DISPLAY
from riskcast.lake import Lake
from riskcast.read_models.open_alerts import open_alerts
from riskcast.read_models.scores import (
    PREVIOUS_WITHIN_HOURS,
    UTC,
    latest_scored_hour,
    missing_labels,
    risk_trend,
    rows_frame,
    variable_label,
)
from riskcast.store.records import encounter_scores
from riskcast.store.tables import drivers

HISTORY_POINTS_SCHEMA: dict[str, pl.DataType] = {
    "score_id": pl.Int64(),
    "scored_at": UTC,
    "risk": pl.Float64(),
    "status": pl.String(),
}

DRIVER_ROWS_SCHEMA: dict[str, pl.DataType] = {
    "rank": pl.Int64(),
    "variable": pl.String(),
    "text": pl.String(),
    "contribution": pl.Float64(),
}

CHANGES_SCHEMA: dict[str, pl.DataType] = {
    "variable": pl.String(),
    "label": pl.String(),
    "change": pl.String(),
    "now_text": pl.String(),
    "then_text": pl.String(),
}

OBSERVATIONS_SCHEMA: dict[str, pl.DataType] = {
    "charttime": UTC,
    "variable": pl.String(),
    "label": pl.String(),
    "kind": pl.String(),
    "value": pl.Float64(),
    "unit": pl.String(),
    "unit_display": pl.String(),
    "decimals": pl.Int64(),
}


@dataclass(frozen=True)
class PatientHeader:
    """One encounter's latest score, for the top of the patient page.

    `missing` holds the labels of the essential vitals that were stale or absent (empty
    unless status is ScoreStatus.INSUFFICIENT_DATA). `admitted` is whether the encounter was scored
    in the latest run (else it has left, and the page shows its last state).
    """

    encounter_id: str
    patient_id: str
    ward: str | None
    site: str | None
    scored_at: datetime
    risk: float | None
    status: str
    missing: tuple[str, ...]
    previous_risk: float | None
    trend: str | None
    admitted: bool


@dataclass(frozen=True)
class DriverComparison:
    """What moved the risk now, against what moved it `hours` earlier ("what changed").

    `then_at` is the latest score at or before `now_at - hours` (None when there is none);
    `changes` lists each variable among either set of drivers with change "new" (a driver
    now, not then), "gone", "stronger" or "weaker" (contribution up or down by at least
    0.01 log-odds) or "unchanged".
    """

    now_at: datetime | None
    then_at: datetime | None
    risk_now: float | None
    risk_then: float | None
    status_now: str | None
    status_then: str | None
    now: pl.DataFrame
    then: pl.DataFrame
    changes: pl.DataFrame


def patient_header(
    engine: Engine, encounter_id: str, *, model_version: str | None, catalog: Catalog | None = None
) -> PatientHeader | None:
    """The encounter's latest score of `model_version` and the one before; None when the
    encounter was never scored by it."""
    if model_version is None:
        return None
    catalog = catalog or load_catalog()
    rows = encounter_scores(engine, encounter_id, model_version=model_version, newest=2).reverse().to_dicts()
    if not rows:
        return None
    now_row = rows[0]
    previous_risk = None
    if len(rows) > 1 and now_row["scored_at"] - rows[1]["scored_at"] <= timedelta(hours=PREVIOUS_WITHIN_HOURS):
        previous_risk = rows[1]["risk"]
    return PatientHeader(
        encounter_id=now_row["encounter_id"],
        patient_id=now_row["patient_id"],
        ward=now_row["ward"],
        site=now_row["site"],
        scored_at=now_row["scored_at"],
        risk=now_row["risk"],
        status=now_row["status"],
        missing=missing_labels(now_row["missing"], catalog),
        previous_risk=previous_risk,
        trend=pl.select(risk_trend(pl.lit(now_row["risk"], dtype=pl.Float64), pl.lit(previous_risk, dtype=pl.Float64))).item(),
        admitted=now_row["scored_at"] == latest_scored_hour(engine, model_version=model_version),
    )


def risk_history(
    engine: Engine, encounter_id: str, *, model_version: str | None, since: datetime | None = None
) -> pl.DataFrame:
    """The encounter's scores of `model_version` (columns HISTORY_POINTS_SCHEMA), oldest
    first; hours scored at or after `since` when given. Risk is null for insufficient data."""
    if model_version is None:
        return pl.DataFrame(schema=HISTORY_POINTS_SCHEMA)
    history = encounter_scores(engine, encounter_id, model_version=model_version, since=since)
    return history.select(list(HISTORY_POINTS_SCHEMA))


def encounter_alerts(engine: Engine, encounter_id: str) -> pl.DataFrame:
    """The encounter's open alerts (ALERTS_SCHEMA), most urgent first."""
    return open_alerts(engine, encounter_ids=[encounter_id], wards=None)

MARKERS_SCHEMA: dict[str, pl.DataType] = {
    "at": UTC,
    "action": pl.String(),
    "actor": pl.String(),
    "role": pl.String(),
    "reason": pl.String(),
    "risk_at": pl.Float64(),
}


def alert_markers(engine: Engine, encounter_id: str, *, model_version: str | None) -> pl.DataFrame:
    """The events of the encounter's risk alerts (who did what, when, why), each with the
    risk of the latest score at or before it (`risk_at`, for placing it on the risk chart);
    columns MARKERS_SCHEMA, oldest first."""
    events = alert_history(engine, encounter_id=encounter_id).filter(pl.col("kind") == "risk")
    history = risk_history(engine, encounter_id, model_version=model_version).filter(pl.col("risk").is_not_null())
    if events.height == 0:
        return pl.DataFrame(schema=MARKERS_SCHEMA)
    return (
        events.sort("at")
        .join_asof(
            history.select(pl.col("scored_at").alias("at"), pl.col("risk").alias("risk_at")).sort("at"),
            on="at",
            strategy="backward",
        )
        .select([pl.col(name).cast(dtype) for name, dtype in MARKERS_SCHEMA.items()])
    )


def _drivers_of(engine: Engine, score_id: int | None) -> pl.DataFrame:
    if score_id is None:
        return pl.DataFrame(schema=DRIVER_ROWS_SCHEMA)
    with engine.connect() as connection:
        rows = connection.execute(
            select(drivers.c.rank, drivers.c.variable, drivers.c.text, drivers.c.contribution)
            .where(drivers.c.score_id == score_id)
            .order_by(drivers.c.rank)
        ).all()
    return rows_frame(rows, DRIVER_ROWS_SCHEMA)

CHANGE_STEP = 0.01
"""A driver's contribution (log-odds) must move by this much to count as stronger or weaker."""


def driver_comparison(
    engine: Engine,
    encounter_id: str,
    *,
    model_version: str | None,
    hours: float = 24.0,
    catalog: Catalog | None = None,
) -> DriverComparison:
    """The drivers of the encounter's latest score against those of the latest score at or
    before `hours` earlier: what changed (see DriverComparison)."""
    catalog = catalog or load_catalog()
    history = risk_history(engine, encounter_id, model_version=model_version)
    if history.height == 0:
        empty = pl.DataFrame(schema=DRIVER_ROWS_SCHEMA)
        return DriverComparison(None, None, None, None, None, None, empty, empty, pl.DataFrame(schema=CHANGES_SCHEMA))
    now_row = history.row(-1, named=True)
    cutoff = now_row["scored_at"] - timedelta(hours=hours)
    earlier = history.filter(pl.col("scored_at") <= cutoff)
    then_row = earlier.row(-1, named=True) if earlier.height else None
    now_drivers = _drivers_of(engine, now_row["score_id"])
    then_drivers = _drivers_of(engine, then_row["score_id"] if then_row else None)
    joined = now_drivers.select(
        "variable", pl.col("text").alias("now_text"), pl.col("contribution").alias("now_contribution"), "rank"
    ).join(
        then_drivers.select("variable", pl.col("text").alias("then_text"), pl.col("contribution").alias("then_contribution")),
        on="variable",
        how="full",
        coalesce=True,
    )
    delta = pl.col("now_contribution") - pl.col("then_contribution")
    changes = (
        joined.with_columns(
            pl.when(pl.col("then_text").is_null())
            .then(pl.lit("new"))
            .when(pl.col("now_text").is_null())
            .then(pl.lit("gone"))
            .when(delta >= CHANGE_STEP)
            .then(pl.lit("stronger"))
            .when(delta <= -CHANGE_STEP)
            .then(pl.lit("weaker"))
            .otherwise(pl.lit("unchanged"))
            .alias("change"),
            pl.col("variable").map_elements(lambda name: variable_label(name, catalog), return_dtype=pl.String).alias("label"),
        )
        .sort(pl.col("rank"), pl.col("then_contribution").abs(), descending=[False, True], nulls_last=True)
        .select(list(CHANGES_SCHEMA))
    )
    if then_row is None:
        changes = changes.head(0)
    return DriverComparison(
        now_at=now_row["scored_at"],
        then_at=then_row["scored_at"] if then_row else None,
        risk_now=now_row["risk"],
        risk_then=then_row["risk"] if then_row else None,
        status_now=now_row["status"],
        status_then=then_row["status"] if then_row else None,
        now=now_drivers,
        then=then_drivers,
        changes=changes,
    )


def encounter_observations(
    lake: Lake, encounter_id: str, *, until: datetime, hours: float = 48.0, catalog: Catalog | None = None
) -> pl.DataFrame:
    """The encounter's vitals and labs charted in the `hours` up to `until` (inclusive), with
    the catalogue's label, kind (vital | lab), unit and display decimals; columns
    OBSERVATIONS_SCHEMA, sorted by variable then time."""
    catalog = catalog or load_catalog()
    if lake.is_empty():
        return pl.DataFrame(schema=OBSERVATIONS_SCHEMA)
    meta = pl.DataFrame(
        {
            "variable": list(catalog.variables),
            "label": [v.label for v in catalog.variables.values()],
            "kind": [v.kind for v in catalog.variables.values()],
            "decimals": [v.decimals for v in catalog.variables.values()],
            "unit_display": [UNIT_DISPLAY.get(v.unit, v.unit) for v in catalog.variables.values()],
        },
        schema={"variable": pl.String(), "label": pl.String(), "kind": pl.String(), "decimals": pl.Int64(),
                "unit_display": pl.String()},
    )  # fmt: skip
    frame = (
        lake.scan("observations")
        .filter(
            pl.col("encounter_id") == encounter_id,
            pl.col("charttime") <= until,
            pl.col("charttime") >= until - timedelta(hours=hours),
        )
        .select("charttime", "variable", "value", "unit")
        .collect()
    )
    return (
        frame.join(meta, on="variable", how="inner")
        .sort("variable", "charttime")
        .select([pl.col(name).cast(dtype) for name, dtype in OBSERVATIONS_SCHEMA.items()])
    )


def latest_values(observations: pl.DataFrame) -> pl.DataFrame:
    """Per variable of an encounter_observations frame: the last value and time, the value
    before it, and how many were charted (for a labs table)."""
    return (
        observations.sort("variable", "charttime")
        .group_by("variable", maintain_order=True)
        .agg(
            pl.col("label").last(),
            pl.col("kind").last(),
            pl.col("unit").last(),
            pl.col("unit_display").last(),
            pl.col("decimals").last(),
            pl.col("value").last().alias("last_value"),
            pl.col("charttime").last().alias("last_charttime"),
            pl.col("value").reverse().get(1, null_on_oob=True).alias("previous_value"),
            pl.len().alias("count"),
        )
    )


__all__ = [
    "CHANGES_SCHEMA",
    "CHANGE_STEP",
    "DRIVER_ROWS_SCHEMA",
    "DriverComparison",
    "HISTORY_POINTS_SCHEMA",
    "MARKERS_SCHEMA",
    "OBSERVATIONS_SCHEMA",
    "PatientHeader",
    "alert_markers",
    "driver_comparison",
    "encounter_alerts",
    "encounter_observations",
    "latest_values",
    "patient_header",
    "risk_history",
]
