"""Read models for the dashboard: what each page shows, joined from the store and the lake.

The dashboard draws; it computes nothing. Each function here answers one page's question
(who is on the ward and how are they doing; how has one patient's risk moved and why; how
fresh are the feeds) from the store's scores, drivers, alerts, runs and quarantine and the
lake's observations. Nothing here writes: staff actions go through riskcast.alerts.state.

Conventions:

- "Admitted" means scored in the latest scoring run of the model in use (latest_scored_hour):
  the scorer scores every encounter admitted at the hour by riskcast.admission's one
  definition, so an encounter missing from the latest hour has left.
- Every time is UTC-aware (polars Datetime("us", "UTC")); `now` is always passed in.
- A score with status ScoreStatus.INSUFFICIENT_DATA has no risk (null) and is never ranked or
  labelled as low risk: boards put it right after the alerts that need action.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from sqlalchemy import Engine, and_, case, func, select

from riskcast import monitoring
from riskcast.alerts.policy import OPEN_STATES
from riskcast.alerts.state import ALERTS_SCHEMA, alert_history
from riskcast.catalog import Catalog, load_catalog
from riskcast.explain import UNIT_DISPLAY
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.monitoring import DEFAULT_LOOKBACK_HOURS, FRESHNESS_SCHEMA
from riskcast.score_status import ScoreStatus
from riskcast.store.tables import alerts, drivers, job_runs, quarantine, runs, scores

UTC = pl.Datetime("us", "UTC")
TREND_STEP = 0.02
"""Risk change (absolute, 0.02 = two percentage points) between a patient's last two scores
below which the trend is "steady": isotonic calibration moves in small steps, and an arrow
for every wobble would cry wolf."""
PREVIOUS_WITHIN_HOURS = 48.0
"""The previous score counts for the trend only when it describes an hour at most this long
before the latest one (after a gap, an arrow would compare different situations)."""
NEEDS_ACTION_STATES = ("new", "escalated")
"""Alert states that nobody has acted on yet: highlighted, and first on the board."""
_STATE_ORDER = {"escalated": 0, "new": 1, "snoozed": 2, "acknowledged": 3, "resolved": 4}
_KIND_ORDER = {"risk": 0, "stale_data": 1, "system": 2}

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
QUARANTINE_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "table_name": pl.String(),
    "rule": pl.String(),
    "rows": pl.Int64(),
    "batches": pl.Int64(),
    "last_at": UTC,
}
RUNS_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "kind": pl.String(),
    "status": pl.String(),
    "started_at": UTC,
    "finished_at": UTC,
    "seconds": pl.Float64(),
    "error": pl.String(),
}


@dataclass(frozen=True)
class ModelInUse:
    """The champion model whose scores the dashboard shows, and its alert threshold."""

    version: str | None
    threshold: float | None


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


@dataclass(frozen=True)
class AlertScope:
    """Where an alert belongs, so that a page can check who may act on it."""

    alert_id: int
    encounter_id: str
    ward: str | None
    kind: str
    state: str


# ------------------------------------------------------------------------------ helpers


def _frame(rows: list, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([tuple(row) for row in rows], schema=schema, orient="row")


_OTHER_LABELS = {"news2": "NEWS2", "qsofa": "qSOFA", "sirs": "SIRS", "sex": "Sex", "age": "Age"}


def variable_label(name: str, catalog: Catalog) -> str:
    """Words for a driver's variable: the catalogue label, else a readable feature name."""
    if name in catalog.variables:
        return catalog.variables[name].label
    return _OTHER_LABELS.get(name, name.replace("_", " ").capitalize())


def _missing_labels(missing: str | None, catalog: Catalog) -> tuple[str, ...]:
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


# ------------------------------------------------------------------------------- model


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
    with engine.connect() as connection:
        return connection.execute(
            select(func.max(scores.c.scored_at)).where(scores.c.model_version == model_version)
        ).scalar_one_or_none()


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


# -------------------------------------------------------------------------------- ward


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
    current_query = select(
        scores.c.id, scores.c.encounter_id, scores.c.patient_id, scores.c.ward, scores.c.scored_at,
        scores.c.risk, scores.c.status, scores.c.missing,
    ).where(scores.c.model_version == model_version, scores.c.scored_at == latest, *ward_filter)  # fmt: skip
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
        current = _frame(
            connection.execute(current_query).all(),
            {"score_id": pl.Int64(), "encounter_id": pl.String(), "patient_id": pl.String(), "ward": pl.String(),
             "scored_at": UTC, "risk": pl.Float64(), "status": pl.String(), "missing": pl.String()},
        )  # fmt: skip
        previous = _frame(
            connection.execute(previous_query).all(), {"encounter_id": pl.String(), "previous_risk": pl.Float64()}
        )
        driver_rows = _frame(
            connection.execute(drivers_query).all(), {"score_id": pl.Int64(), "rank": pl.Int64(), "text": pl.String()}
        )
    if current.height == 0:
        return pl.DataFrame(schema=BOARD_SCHEMA)
    driver_text = driver_rows.group_by("score_id", maintain_order=True).agg(pl.col("text").str.join("; ").alias("drivers"))
    open_alerts = _open_alerts(engine, encounter_ids=None, wards=wards).unique("encounter_id", keep="first", maintain_order=True)
    board = (
        current.join(previous, on="encounter_id", how="left")
        .join(driver_text, on="score_id", how="left")
        .join(
            open_alerts.select(
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
                lambda names: ", ".join(_missing_labels(names, catalog)), return_dtype=pl.String
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


def _open_alerts(engine: Engine, *, encounter_ids: list[str] | None, wards: Collection[str] | None) -> pl.DataFrame:
    """Open alerts (ALERTS_SCHEMA), most urgent first: state, then risk before stale-data,
    then highest risk, then most recently updated."""
    query = select(
        alerts.c.id, alerts.c.encounter_id, alerts.c.patient_id, alerts.c.ward, alerts.c.kind, alerts.c.state,
        alerts.c.raised_at, alerts.c.raised_for, alerts.c.risk, alerts.c.model_version, alerts.c.episode,
        alerts.c.updated_at, alerts.c.snoozed_until, alerts.c.version_counter,
    ).where(alerts.c.state.in_([state.value for state in OPEN_STATES]))  # fmt: skip
    if encounter_ids is not None:
        query = query.where(alerts.c.encounter_id.in_(encounter_ids))
    if wards is not None:
        query = query.where(alerts.c.ward.in_(sorted(wards)))
    query = query.order_by(
        case(_STATE_ORDER, value=alerts.c.state, else_=len(_STATE_ORDER)),
        case(_KIND_ORDER, value=alerts.c.kind, else_=len(_KIND_ORDER)),
        alerts.c.risk.is_(None),
        alerts.c.risk.desc(),
        alerts.c.updated_at.desc(),
        alerts.c.id.desc(),
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return _frame(rows, ALERTS_SCHEMA)


# ----------------------------------------------------------------------------- patient


def patient_header(
    engine: Engine, encounter_id: str, *, model_version: str | None, catalog: Catalog | None = None
) -> PatientHeader | None:
    """The encounter's latest score of `model_version` and the one before; None when the
    encounter was never scored by it."""
    if model_version is None:
        return None
    catalog = catalog or load_catalog()
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                scores.c.encounter_id, scores.c.patient_id, scores.c.ward, scores.c.site, scores.c.scored_at,
                scores.c.risk, scores.c.status, scores.c.missing,
            )
            .where(scores.c.model_version == model_version, scores.c.encounter_id == encounter_id)
            .order_by(scores.c.scored_at.desc(), scores.c.id.desc())
            .limit(2)
        ).all()  # fmt: skip
    if not rows:
        return None
    now_row = rows[0]
    previous_risk = None
    if len(rows) > 1 and now_row.scored_at - rows[1].scored_at <= timedelta(hours=PREVIOUS_WITHIN_HOURS):
        previous_risk = rows[1].risk
    return PatientHeader(
        encounter_id=now_row.encounter_id,
        patient_id=now_row.patient_id,
        ward=now_row.ward,
        site=now_row.site,
        scored_at=now_row.scored_at,
        risk=now_row.risk,
        status=now_row.status,
        missing=_missing_labels(now_row.missing, catalog),
        previous_risk=previous_risk,
        trend=pl.select(risk_trend(pl.lit(now_row.risk, dtype=pl.Float64), pl.lit(previous_risk, dtype=pl.Float64))).item(),
        admitted=now_row.scored_at == latest_scored_hour(engine, model_version=model_version),
    )


def risk_history(
    engine: Engine, encounter_id: str, *, model_version: str | None, since: datetime | None = None
) -> pl.DataFrame:
    """The encounter's scores of `model_version` (columns HISTORY_POINTS_SCHEMA), oldest
    first; hours scored at or after `since` when given. Risk is null for insufficient data."""
    if model_version is None:
        return pl.DataFrame(schema=HISTORY_POINTS_SCHEMA)
    query = select(scores.c.id, scores.c.scored_at, scores.c.risk, scores.c.status).where(
        scores.c.model_version == model_version, scores.c.encounter_id == encounter_id
    )
    if since is not None:
        query = query.where(scores.c.scored_at >= since)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(scores.c.scored_at, scores.c.id)).all()
    return _frame(rows, HISTORY_POINTS_SCHEMA)


def encounter_alerts(engine: Engine, encounter_id: str) -> pl.DataFrame:
    """The encounter's open alerts (ALERTS_SCHEMA), most urgent first."""
    return _open_alerts(engine, encounter_ids=[encounter_id], wards=None)


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
    return _frame(rows, DRIVER_ROWS_SCHEMA)


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


# ------------------------------------------------------------------------- data health


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
    """Quarantined input rows per table and rule (columns QUARANTINE_SUMMARY_SCHEMA), most first."""
    query = (
        select(
            quarantine.c.table_name,
            quarantine.c.rule,
            func.count().label("rows"),
            func.count(func.distinct(quarantine.c.batch_id)).label("batches"),
            func.max(quarantine.c.created_at).label("last_at"),
        )
        .group_by(quarantine.c.table_name, quarantine.c.rule)
        .order_by(func.count().desc(), quarantine.c.table_name, quarantine.c.rule)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return _frame(rows, QUARANTINE_SUMMARY_SCHEMA)


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


def alert_scope(engine: Engine, alert_id: int) -> AlertScope | None:
    """The encounter, ward, kind and state of alert `alert_id`; None when there is none."""
    with engine.connect() as connection:
        row = connection.execute(
            select(alerts.c.id, alerts.c.encounter_id, alerts.c.ward, alerts.c.kind, alerts.c.state).where(
                and_(alerts.c.id == alert_id)
            )
        ).one_or_none()
    if row is None:
        return None
    return AlertScope(alert_id=row.id, encounter_id=row.encounter_id, ward=row.ward, kind=row.kind, state=row.state)


__all__ = [
    "BOARD_SCHEMA",
    "CHANGES_SCHEMA",
    "FRESHNESS_SCHEMA",
    "NEEDS_ACTION_STATES",
    "OBSERVATIONS_SCHEMA",
    "PREVIOUS_WITHIN_HOURS",
    "TREND_STEP",
    "variable_label",
    "AlertScope",
    "DriverComparison",
    "ModelInUse",
    "PatientHeader",
    "STALE_SCORES_HOURS",
    "ScoringFreshness",
    "alert_markers",
    "alert_scope",
    "scoring_freshness",
    "driver_comparison",
    "encounter_alerts",
    "encounter_observations",
    "feed_freshness",
    "latest_scored_hour",
    "latest_values",
    "model_in_use",
    "patient_header",
    "quarantine_summary",
    "recent_runs",
    "risk_history",
    "risk_trend",
    "scored_wards",
    "ward_board",
]
