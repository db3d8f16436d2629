"""What every clinical page starts from: the model in use, its latest scored hour and how
fresh it is, the trend of a risk, and a variable's words.

Conventions of the clinical read models (scores, ward, patient, open_alerts, data_health):

- "Admitted" means scored in the latest scoring run of the model in use (latest_scored_hour):
  the scorer scores every encounter admitted at the hour by riskcast.admission's one
  definition, so an encounter missing from the latest hour has left.
- Every time is UTC-aware (polars Datetime("us", "UTC")); `now` is always passed in.
- A score with status ScoreStatus.INSUFFICIENT_DATA has no risk (null) and is never ranked or
  labelled as low risk: boards put it right after the alerts that need action.

Nothing here writes: staff actions go through riskcast.alerts.state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import Engine, func, select

from riskcast.catalog import Catalog
from riskcast.model import ModelRegistry
from riskcast.store import records
from riskcast.store.tables import scores

UTC = pl.Datetime("us", "UTC")

TREND_STEP = 0.02
"""Risk change (absolute, 0.02 = two percentage points) between a patient's last two scores
below which the trend is "steady": isotonic calibration moves in small steps, and an arrow
for every wobble would cry wolf."""

PREVIOUS_WITHIN_HOURS = 48.0
"""The previous score counts for the trend only when it describes an hour at most this long
before the latest one (after a gap, an arrow would compare different situations)."""


@dataclass(frozen=True)
class ModelInUse:
    """The champion model whose scores the dashboard shows, and its alert threshold."""

    version: str | None
    threshold: float | None


def rows_frame(rows: list, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Database rows (tuples in `schema`'s column order) as a frame of exactly `schema`, so an
    empty result has the same columns and types as a full one."""
    return pl.DataFrame([tuple(row) for row in rows], schema=schema, orient="row")


_OTHER_LABELS = {"news2": "NEWS2", "qsofa": "qSOFA", "sirs": "SIRS", "sex": "Sex", "age": "Age"}


def variable_label(name: str, catalog: Catalog) -> str:
    """Words for a driver's variable: the catalogue label, else a readable feature name."""
    if name in catalog.variables:
        return catalog.variables[name].label
    return _OTHER_LABELS.get(name, name.replace("_", " ").capitalize())


def missing_labels(missing: str | None, catalog: Catalog) -> tuple[str, ...]:
    """The labels of a score's `missing` column (variable names, comma separated): the stale
    or absent essential vitals that made it insufficient data; empty when none."""
    names = [name for name in (missing or "").split(",") if name]
    return tuple(variable_label(name, catalog) for name in names)


def risk_trend(risk: pl.Expr, previous: pl.Expr) -> pl.Expr:
    """"rising", "falling" or "steady": how `risk` moved from `previous` (the score before it),
    by at least TREND_STEP either way; null when either has no risk. The one definition of a
    risk's trend, for the ward board and the patient header alike."""
    change = risk - previous
    return (
        pl.when(change.is_null())
        .then(None)
        .when(change >= TREND_STEP)
        .then(pl.lit("rising"))
        .when(change <= -TREND_STEP)
        .then(pl.lit("falling"))
        .otherwise(pl.lit("steady"))
    )


def model_in_use(registry: ModelRegistry) -> ModelInUse:
    """The registry's champion and its operating-point threshold (both None before training)."""
    version = registry.champion()
    if version is None:
        return ModelInUse(None, None)
    threshold = next((info.threshold for info in registry.versions() if info.version == version), None)
    return ModelInUse(version, threshold)


def latest_scored_hour(engine: Engine, *, model_version: str | None) -> datetime | None:
    """The hour (UTC) of the latest scoring run of `model_version`; None before any. The
    encounters scored at this hour are the ones the read models count as admitted."""
    if model_version is None:
        return None
    return records.latest_scored_hour(engine, model_version=model_version)


def scored_wards(engine: Engine, *, model_version: str | None) -> list[str]:
    """The wards with patients in the latest scoring run, sorted."""
    latest = latest_scored_hour(engine, model_version=model_version)
    if latest is None:
        return []
    with engine.connect() as connection:
        rows = connection.execute(
            select(scores.c.ward)
            .where(scores.c.model_version == model_version, scores.c.scored_at == latest, scores.c.ward.is_not(None))
            .distinct()
            .order_by(scores.c.ward)
        ).all()
    return [row.ward for row in rows]

STALE_SCORES_HOURS = 2.0
"""Scores whose hour is older than this at `now` mean the hourly scoring has stopped."""


@dataclass(frozen=True)
class ScoringFreshness:
    """How current the board is: the latest scored hour, when it was written, its age."""

    scored_hour: datetime | None
    written_at: datetime | None
    age_hours: float | None
    stale: bool


def scoring_freshness(engine: Engine, *, model_version: str | None, now: datetime) -> ScoringFreshness:
    """The latest scored hour of `model_version` and its age at `now`; `stale` when older
    than STALE_SCORES_HOURS, or when nothing was ever scored."""
    latest = latest_scored_hour(engine, model_version=model_version)
    if latest is None:
        return ScoringFreshness(None, None, None, True)
    with engine.connect() as connection:
        written = connection.execute(
            select(func.max(scores.c.created_at)).where(scores.c.model_version == model_version, scores.c.scored_at == latest)
        ).scalar_one_or_none()
    age = (now - latest).total_seconds() / 3600.0
    return ScoringFreshness(latest, written, age, age > STALE_SCORES_HOURS)


__all__ = [
    "ModelInUse",
    "PREVIOUS_WITHIN_HOURS",
    "STALE_SCORES_HOURS",
    "ScoringFreshness",
    "TREND_STEP",
    "UTC",
    "latest_scored_hour",
    "missing_labels",
    "model_in_use",
    "risk_trend",
    "rows_frame",
    "scored_wards",
    "scoring_freshness",
    "variable_label",
]
