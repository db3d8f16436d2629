"""The ward board: every admitted patient with the latest score, trend, top drivers and
open alert, most urgent first (conventions: riskcast.read_models.scores).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import polars as pl
from sqlalchemy import Engine, func, select

from riskcast.catalog import Catalog, load_catalog
from riskcast.lake import Lake
from riskcast.read_models.open_alerts import NEEDS_ACTION_STATES, open_alerts
from riskcast.read_models.scores import (
    PREVIOUS_WITHIN_HOURS,
    UTC,
    latest_scored_hour,
    missing_labels,
    risk_trend,
    rows_frame,
)
from riskcast.score_status import ScoreStatus
from riskcast.store.records import scores_at_hour
from riskcast.store.tables import drivers, scores

BOARD_SCHEMA: dict[str, pl.DataType] = {
    "encounter_id": pl.String(),
    "patient_id": pl.String(),
    "ward": pl.String(),
    "scored_at": UTC,
    "risk": pl.Float64(),
    "status": pl.String(),
    "missing": pl.String(),
    "previous_risk": pl.Float64(),
    "risk_change": pl.Float64(),
    "trend": pl.String(),
    "drivers": pl.String(),
    "alert_id": pl.Int64(),
    "alert_kind": pl.String(),
    "alert_state": pl.String(),
    "alert_raised_at": UTC,
    "needs_action": pl.Boolean(),
    "last_observed_at": UTC,
    "hours_since_observed": pl.Float64(),
}


def ward_board(
    engine: Engine,
    *,
    model_version: str | None,
    now: datetime,
    wards: Collection[str] | None = None,
    lake: Lake | None = None,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Every admitted patient on `wards` (all wards when None) with the latest score, trend,
    top drivers and open alert; columns BOARD_SCHEMA, one row per encounter.

    - `risk` is null and `missing` names the stale or absent essential vitals (labels, comma
      separated) when status is ScoreStatus.INSUFFICIENT_DATA.
    - `previous_risk` is the encounter's score at the hour before its latest (within
      PREVIOUS_WITHIN_HOURS); `trend` is rising / falling / steady by TREND_STEP, null
      when either score has no risk.
    - `drivers` joins the top drivers' words with "; ", strongest first.
    - `alert_*` describe the encounter's most urgent open alert (escalated, new, snoozed,
      acknowledged; risk before stale-data); `needs_action` when it is new or escalated.
    - `last_observed_at` is the latest charted essential vital at or before the scored
      hour (from `lake`, when given); `hours_since_observed` is its age at `now`.

    Sorted by urgency: risk alerts needing action (highest risk first), then other alerts
    needing action (vitals overdue), then insufficient data, then everyone else by risk,
    highest first; ties by encounter_id.
    """
    catalog = catalog or load_catalog()
    latest = latest_scored_hour(engine, model_version=model_version)
    if latest is None:
        return pl.DataFrame(schema=BOARD_SCHEMA)
    ward_filter = [] if wards is None else [scores.c.ward.in_(sorted(wards))]
    position = (
        func.row_number()
        .over(partition_by=scores.c.encounter_id, order_by=(scores.c.scored_at.desc(), scores.c.id.desc()))
        .label("position")
    )
    earlier = (
        select(scores.c.encounter_id, scores.c.risk, position)
        .where(
            scores.c.model_version == model_version,
            scores.c.scored_at < latest,
            scores.c.scored_at >= latest - timedelta(hours=PREVIOUS_WITHIN_HOURS),
            *ward_filter,
        )
        .subquery()
    )
    previous_query = select(earlier.c.encounter_id, earlier.c.risk).where(earlier.c.position == 1)
    drivers_query = (
        select(drivers.c.score_id, drivers.c.rank, drivers.c.text)
        .join(scores, scores.c.id == drivers.c.score_id)
        .where(scores.c.model_version == model_version, scores.c.scored_at == latest, *ward_filter)
        .order_by(drivers.c.score_id, drivers.c.rank)
    )
    with engine.connect() as connection:
        current = scores_at_hour(connection, model_version=model_version, scored_at=latest, wards=wards).select(
            "score_id", "encounter_id", "patient_id", "ward", "scored_at", "risk", "status", "missing"
        )
        previous = rows_frame(
            connection.execute(previous_query).all(), {"encounter_id": pl.String(), "previous_risk": pl.Float64()}
        )
        driver_rows = rows_frame(
            connection.execute(drivers_query).all(), {"score_id": pl.Int64(), "rank": pl.Int64(), "text": pl.String()}
        )
    if current.height == 0:
        return pl.DataFrame(schema=BOARD_SCHEMA)
    driver_text = driver_rows.group_by("score_id", maintain_order=True).agg(pl.col("text").str.join("; ").alias("drivers"))
    most_urgent = open_alerts(engine, encounter_ids=None, wards=wards).unique("encounter_id", keep="first", maintain_order=True)
    board = (
        current.join(previous, on="encounter_id", how="left")
        .join(driver_text, on="score_id", how="left")
        .join(
            most_urgent.select(
                "encounter_id",
                pl.col("alert_id"),
                pl.col("kind").alias("alert_kind"),
                pl.col("state").alias("alert_state"),
                pl.col("raised_at").alias("alert_raised_at"),
            ),
            on="encounter_id",
            how="left",
        )
        .with_columns(
            pl.col("missing").map_elements(
                lambda names: ", ".join(missing_labels(names, catalog)), return_dtype=pl.String
            ),
            (pl.col("risk") - pl.col("previous_risk")).alias("risk_change"),
            risk_trend(pl.col("risk"), pl.col("previous_risk")).alias("trend"),
            pl.col("alert_state").is_in(list(NEEDS_ACTION_STATES)).fill_null(False).alias("needs_action"),
        )
    )
    board = board.join(_last_observed(lake, board["encounter_id"], latest, catalog), on="encounter_id", how="left")
    board = board.with_columns(
        ((pl.lit(now, dtype=UTC) - pl.col("last_observed_at")).dt.total_seconds() / 3600.0).alias("hours_since_observed")
    )
    priority = (
        pl.when(pl.col("needs_action") & (pl.col("alert_kind") == "risk"))
        .then(0)
        .when(pl.col("needs_action"))
        .then(1)
        .when(pl.col("status") == ScoreStatus.INSUFFICIENT_DATA)
        .then(2)
        .otherwise(3)
    )
    return board.sort(
        [priority, pl.col("risk"), pl.col("encounter_id")], descending=[False, True, False], nulls_last=True
    ).select([pl.col(name).cast(dtype) for name, dtype in BOARD_SCHEMA.items()])


def _last_observed(lake: Lake | None, encounter_ids: pl.Series, until: datetime, catalog: Catalog) -> pl.DataFrame:
    """The latest essential vital charted at or before `until` per encounter (lake read)."""
    empty = pl.DataFrame(schema={"encounter_id": pl.String(), "last_observed_at": UTC})
    if lake is None or lake.is_empty():
        return empty
    ids = encounter_ids.unique().to_list()
    return (
        lake.scan("observations")
        .filter(
            pl.col("encounter_id").is_in(ids),
            pl.col("variable").is_in(catalog.essential),
            pl.col("charttime") <= until,
        )
        .group_by("encounter_id")
        .agg(pl.col("charttime").max().alias("last_observed_at"))
        .collect()
        .cast({"last_observed_at": UTC})
    )


__all__ = [
    "BOARD_SCHEMA",
    "ward_board",
]
