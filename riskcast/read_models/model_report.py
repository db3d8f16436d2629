"""Read models for the data scientists' pages: the model card, the held-out evaluation, the
threshold trade-off, discrimination over time from the scores the model really gave, and
the fairness audits.

The dashboard draws; it computes nothing. Each function here reads what the pipeline has
already written and shapes it for one question:

- the model card: models/<version>/model_card.json (and .md), written by the registry;
- the held-out evaluation: the one sealed into the model's directory (its card), and the
  trade-off between sensitivity, PPV and alert burden: reports/tradeoff-<version>.json (both
  written by `riskcast train`, on the model's held-out patients);
- AUROC and AUPRC per week of the scores in the store's `scores` table, against the
  outcomes in the lake (labels exactly as training makes them, riskcast.labels), with
  patient-bootstrap intervals; a week whose labels hold no event says so instead of a number;
- the fairness audits: the store's `audits` table (one row per `riskcast audit`, with a
  summary) and each audit's JSON report (reports/audit-<version>-<run id>.json).

Every file is read through riskcast.pipeline.reports (the one owner of report files), which
hands over typed objects; what is left here is shaping them for the page. Report files may be
missing (a model trained without reports, no audit yet): the readers return None and the page
says what to run. A file that exists but cannot be read raises EvaluationError (reports/) or
RegistryError (the model directory) naming the file and what to run. A number that is not
there (NaN, or null in the file) reads as null, never as zero.

A suppressed audit group (too few patients or events) carries no number here, even when
its JSON does: every metric and count of it is null, and `suppressed` is True.

Every time is UTC-aware (polars Datetime("us", "UTC")); `now` is always passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from riskcast.catalog import Catalog, load_catalog
from riskcast.evaluate import AlertMetrics, EvaluationReport, discrimination
from riskcast.fairness import METRIC_LABELS, AuditReport, GateResult
from riskcast.labels import make_labels
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.external import model_outcome
from riskcast.pipeline.reports import PromiseCheck, ReportStore, audit_report_name
from riskcast.pipeline.training import ABLATIONS, BASELINE_COLUMNS
from riskcast.read_models.ward import variable_label
from riskcast.store.tables import audits, scores

UTC = pl.Datetime("us", "UTC")
MODEL_SCORE = "risk"
"""The model's own score in an evaluation report (the baselines and ablations are named)."""

MODEL_VERSIONS_SCHEMA: dict[str, pl.DataType] = {
    "version": pl.String(),
    "engine": pl.String(),
    "created_at": UTC,
    "is_champion": pl.Boolean(),
    "threshold": pl.Float64(),
}
TOP_VARIABLES_SCHEMA: dict[str, pl.DataType] = {
    "variable": pl.String(),
    "label": pl.String(),
    "mean_abs_contribution": pl.Float64(),
}
DISCRIMINATION_SCHEMA: dict[str, pl.DataType] = {
    "score": pl.String(),
    "label": pl.String(),
    "kind": pl.String(),
    "auroc": pl.Float64(),
    "auroc_low": pl.Float64(),
    "auroc_high": pl.Float64(),
    "auprc": pl.Float64(),
    "auprc_low": pl.Float64(),
    "auprc_high": pl.Float64(),
    "n_rows": pl.Int64(),
    "n_positive": pl.Int64(),
    "n_boot_valid": pl.Int64(),
}
RELIABILITY_SCHEMA: dict[str, pl.DataType] = {
    "bin": pl.Int64(),
    "mean_predicted": pl.Float64(),
    "observed_rate": pl.Float64(),
    "count": pl.Int64(),
    "min_predicted": pl.Float64(),
    "max_predicted": pl.Float64(),
}
COMPARISONS_SCHEMA: dict[str, pl.DataType] = {
    "baseline": pl.String(),
    "baseline_threshold": pl.Float64(),
    "baseline_alerts_per_100_patient_days": pl.Float64(),
    "baseline_sensitivity": pl.Float64(),
    "baseline_ppv": pl.Float64(),
    "model_threshold": pl.Float64(),
    "model_alerts_per_100_patient_days": pl.Float64(),
    "model_sensitivity": pl.Float64(),
    "model_ppv": pl.Float64(),
}
TRADEOFF_SCHEMA: dict[str, pl.DataType] = {
    "threshold": pl.Float64(),
    "alerts_per_100_patient_days": pl.Float64(),
    "sensitivity": pl.Float64(),
    "ppv": pl.Float64(),
    "encounter_sensitivity": pl.Float64(),
}
PERFORMANCE_SCHEMA: dict[str, pl.DataType] = {
    "week_start": UTC,
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
}
AUDITS_SCHEMA: dict[str, pl.DataType] = {
    "audit_id": pl.Int64(),
    "model_version": pl.String(),
    "run_id": pl.Int64(),
    "created_at": UTC,
    "verdict": pl.String(),
    "n_fail": pl.Int64(),
    "n_warn": pl.Int64(),
    "n_pass": pl.Int64(),
    "patients": pl.Int64(),
    "events": pl.Int64(),
    "report_name": pl.String(),
}
AUDIT_TREND_SCHEMA: dict[str, pl.DataType] = {
    "audit_id": pl.Int64(),
    "model_version": pl.String(),
    "created_at": UTC,
    "feature": pl.String(),
    "verdict": pl.String(),
    "reference": pl.String(),
    "reported_groups": pl.Int64(),
    "suppressed_groups": pl.Int64(),
    "equalized_odds_difference": pl.Float64(),
    "equalized_odds_difference_low": pl.Float64(),
    "equalized_odds_difference_high": pl.Float64(),
    "demographic_parity_ratio": pl.Float64(),
    "demographic_parity_ratio_low": pl.Float64(),
    "demographic_parity_ratio_high": pl.Float64(),
    "lowest_sensitivity_ratio": pl.Float64(),
    "lowest_sensitivity_ratio_group": pl.String(),
}

GROUP_METRICS: tuple[str, ...] = (
    "sensitivity",
    "false_positive_rate",
    "ppv",
    "selection_rate",
    "alerts_per_100_patient_days",
    "auroc",
    "calibration_in_the_large",
    "measurements_per_day",
    "share_hours_unmeasured",
)
"""The per-group metrics the fairness page shows, in order; each has `{metric}_low` and
`{metric}_high` (95% patient-bootstrap interval) in AUDIT_GROUPS_SCHEMA."""
GROUP_POINT_METRICS: tuple[str, ...] = ("ece", "median_lead_time_hours", "encounter_sensitivity")
"""Per-group metrics without an interval."""
GROUP_METRIC_LABELS: Mapping[str, str] = {m: METRIC_LABELS.get(m, m) for m in (*GROUP_METRICS, *GROUP_POINT_METRICS)}

AUDIT_GROUPS_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "group": pl.String(),
    "suppressed": pl.Boolean(),
    "reference": pl.Boolean(),
    "n_patients": pl.Int64(),
    "n_events": pl.Int64(),
    "patient_days": pl.Float64(),
    **{f"{m}{suffix}": pl.Float64() for m in GROUP_METRICS for suffix in ("", "_low", "_high")},
    **{m: pl.Float64() for m in GROUP_POINT_METRICS},
}
AUDIT_GATES_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "gate": pl.String(),
    "group": pl.String(),
    "reference": pl.String(),
    "metric": pl.String(),
    "compare": pl.String(),
    "verdict": pl.String(),
    "value": pl.Float64(),
    "interval_low": pl.Float64(),
    "interval_high": pl.Float64(),
    "bound": pl.Float64(),
    "reason": pl.String(),
}
AUDIT_FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "verdict": pl.String(),
    "reference": pl.String(),
    "reported_groups": pl.Int64(),
    "suppressed_groups": pl.Int64(),
}
OVERALL_SCHEMA: dict[str, pl.DataType] = {
    "metric": pl.String(),
    "label": pl.String(),
    "value": pl.Float64(),
    "low": pl.Float64(),
    "high": pl.Float64(),
}

VERDICT_ORDER = {"fail": 0, "warn": 1, "pass": 2}


# ------------------------------------------------------------------------------ helpers


def _number(value: Any) -> float | None:
    """A finite float, else None (missing keys, JSON null, text, NaN all read as None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _frame(rows: list[dict[str, Any]], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([{name: row.get(name) for name in schema} for row in rows], schema=dict(schema), orient="row")


# ------------------------------------------------------------------------------- models


def model_versions(registry: ModelRegistry) -> pl.DataFrame:
    """Every registered model version, newest first (columns MODEL_VERSIONS_SCHEMA); empty
    before the first `riskcast train`."""
    rows = [
        {"version": v.version, "engine": v.engine, "created_at": v.created_at, "is_champion": v.is_champion,
         "threshold": v.threshold}
        for v in registry.versions()
    ]  # fmt: skip
    return _frame(rows, MODEL_VERSIONS_SCHEMA).sort("created_at", "version", descending=True)


def known_version(registry: ModelRegistry, version: Any) -> str | None:
    """`version` when it names a registered model version, else None (for versions that
    arrive from a URL or a browser)."""
    if not isinstance(version, str) or not version:
        return None
    return version if any(v.version == version for v in registry.versions()) else None


@dataclass(frozen=True)
class ModelCard:
    """A registered model's card: what it is for, what it was trained on, its limits.

    `data` is the training data description (outcome, horizon, rows, patients, split...),
    `fingerprint` counts and hashes the training rows (no identifiers), `training` holds
    fit-time metrics (rounds, validation loss, calibration Brier...). `top_variables` are
    the variables with the largest mean |SHAP| on held-out rows, largest first.
    `markdown` is model_card.md as written beside the JSON (None when absent).
    """

    version: str
    path: Path
    engine: str | None
    calibration: str | None
    threshold: float | None
    threshold_rule: str | None
    threshold_target: float | None
    n_features: int | None
    intended_use: str
    outcome: str | None
    horizon_hours: float | None
    data: Mapping[str, Any]
    fingerprint: Mapping[str, Any]
    training: Mapping[str, Any]
    limits: tuple[str, ...]
    top_variables: pl.DataFrame
    markdown: str | None


def model_card(registry: ModelRegistry, version: str, *, catalog: Catalog | None = None) -> ModelCard | None:
    """The card of `version` (None when the version is not registered or has no card).
    Raises RegistryError when model_card.json exists but cannot be read."""
    reports = ReportStore(registry)
    card = reports.model_card(version)
    if card is None:
        return None
    catalog = catalog or load_catalog()
    model = card.model
    top = [
        {"variable": name, "label": variable_label(name, catalog), "mean_abs_contribution": value}
        for name, value in card.top_variables
    ]
    description = card.data_description
    return ModelCard(
        version=version,
        path=reports.model_card_path(version),
        engine=_text(model.get("engine")),
        calibration=_text(model.get("calibration")),
        threshold=_number(model.get("threshold")),
        threshold_rule=_text(model.get("threshold_rule")),
        threshold_target=_number(model.get("threshold_target")),
        n_features=_integer(model.get("n_features")),
        intended_use=str(card.intended_use or "not stated"),
        outcome=card.outcome,
        horizon_hours=card.horizon_hours,
        data=card.described if card.described else ({"description": description} if description else {}),
        fingerprint=card.fingerprint,
        training=card.training_metrics,
        limits=card.limit_list,
        top_variables=_frame(top, TOP_VARIABLES_SCHEMA),
        markdown=reports.model_card_markdown(version),
    )


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class OperatingPointSummary:
    """The model at its alert threshold on the held-out patients: alert episodes per 100
    patient-days, hourly sensitivity and PPV, the share of events flagged within 48 h, the
    median lead time (hours), and the promise in words."""

    threshold: float | None
    alerts_per_100_patient_days: float | None
    sensitivity: float | None
    ppv: float | None
    encounter_sensitivity: float | None
    median_lead_time_hours: float | None
    promise: str | None


@dataclass(frozen=True)
class EvaluationSummary:
    """A model's held-out evaluation, from its model directory (riskcast.pipeline.reports; the
    export in reports/evaluation-<version>.json is the same evaluation, for people). `path` is
    the model card that holds it.

    `discrimination`: one row per score (DISCRIMINATION_SCHEMA), the model first, then the
    early-warning baselines (NEWS2, qSOFA, SIRS; a baseline that only repeats another's
    score at another threshold, such as "NEWS2 (high)", is left out), then the ablations
    ("clock only", "physiology only"); `kind` is model | baseline | ablation; intervals
    are patient-bootstrap 95% intervals (null when the report has none).
    `reliability`: the reliability curve, one row per risk bin (RELIABILITY_SCHEMA).
    `comparisons`: each baseline at its usual threshold against the model at the same
    alert burden (COMPARISONS_SCHEMA).
    """

    version: str
    path: Path
    outcome: str | None
    threshold: float | None
    n_patients: int | None
    n_encounters: int | None
    n_rows: int | None
    n_positive: int | None
    prevalence: float | None
    patient_days: float | None
    discrimination: pl.DataFrame
    reliability: pl.DataFrame
    brier: float | None
    ece: float | None
    calibration_in_the_large: float | None
    operating_point: OperatingPointSummary | None
    comparisons: pl.DataFrame
    promise_check: PromiseCheck | None


def _score_kind(name: str) -> str:
    if name == MODEL_SCORE:
        return "model"
    return "ablation" if name in ABLATIONS else "baseline"


def _score_label(name: str) -> str:
    if name == MODEL_SCORE:
        return "This model"
    return f"Ablation: {name}" if name in ABLATIONS else name


def _discrimination_rows(report: EvaluationReport) -> list[dict[str, Any]]:
    sources_seen: set[str] = set()
    rows = []
    for name, entry in report.discrimination.items():
        source = BASELINE_COLUMNS.get(name, (name, None))[0]
        if source in sources_seen:  # the same score at another threshold: the same AUROC
            continue
        sources_seen.add(source)
        rows.append(
            {
                "score": name, "label": _score_label(name), "kind": _score_kind(name),
                "auroc": _number(entry.auroc), "auroc_low": _number(entry.auroc_ci[0]),
                "auroc_high": _number(entry.auroc_ci[1]), "auprc": _number(entry.auprc),
                "auprc_low": _number(entry.auprc_ci[0]), "auprc_high": _number(entry.auprc_ci[1]),
                "n_rows": entry.n_rows, "n_positive": entry.n_positive, "n_boot_valid": entry.n_boot_valid,
            }
        )  # fmt: skip
    order = {"model": 0, "baseline": 1, "ablation": 2}
    return sorted(rows, key=lambda row: order[row["kind"]])


def _operating_point(point: AlertMetrics) -> OperatingPointSummary:
    return OperatingPointSummary(
        threshold=_number(point.threshold),
        alerts_per_100_patient_days=_number(point.alerts_per_100_patient_days),
        sensitivity=_number(point.sensitivity),
        ppv=_number(point.ppv),
        encounter_sensitivity=_number(point.encounter_sensitivity),
        median_lead_time_hours=_number(point.median_lead_time_hours),
        promise=point.promise,
    )


def _comparison_rows(report: EvaluationReport) -> list[dict[str, Any]]:
    rows = []
    for name, entry in report.comparisons.items():
        if _score_kind(name) != "baseline":
            continue
        baseline, model = entry.baseline_metrics, entry.model_metrics
        rows.append(
            {
                "baseline": name, "baseline_threshold": _number(entry.baseline_threshold),
                "baseline_alerts_per_100_patient_days": _number(baseline.alerts_per_100_patient_days),
                "baseline_sensitivity": _number(baseline.sensitivity), "baseline_ppv": _number(baseline.ppv),
                "model_threshold": _number(entry.model_threshold),
                "model_alerts_per_100_patient_days": _number(model.alerts_per_100_patient_days),
                "model_sensitivity": _number(model.sensitivity), "model_ppv": _number(model.ppv),
            }
        )  # fmt: skip
    return rows


def evaluation_report(reports: ReportStore, version: str) -> EvaluationSummary | None:
    """The held-out evaluation of `version` written by `riskcast train`; None when it has none
    (not registered, recalibrated, registered without one). Raises RegistryError, naming the
    file and what to run, when it cannot be read."""
    evaluation = reports.evaluation(version)
    if evaluation is None:
        return None
    report, calibration = evaluation.report, evaluation.report.calibration
    reliability = [{name: _number(value) if isinstance(value, float) else value for name, value in row.items()}
                   for row in calibration.reliability.to_dicts()]  # fmt: skip
    return EvaluationSummary(
        version=version,
        path=reports.model_card_path(version),
        outcome=report.outcome,
        threshold=_number(report.threshold),
        n_patients=report.n_patients,
        n_encounters=report.n_encounters,
        n_rows=report.n_rows,
        n_positive=report.n_positive,
        prevalence=_number(report.prevalence),
        patient_days=_number(report.patient_days),
        discrimination=_frame(_discrimination_rows(report), DISCRIMINATION_SCHEMA),
        reliability=_frame(reliability, RELIABILITY_SCHEMA).sort("mean_predicted", nulls_last=True),
        brier=_number(calibration.brier),
        ece=_number(calibration.ece),
        calibration_in_the_large=_number(calibration.calibration_in_the_large),
        operating_point=_operating_point(report.operating_point),
        comparisons=_frame(_comparison_rows(report), COMPARISONS_SCHEMA),
        promise_check=evaluation.promise_check,
    )


@dataclass(frozen=True)
class ThresholdTradeoff:
    """Sensitivity and PPV against alert burden, for choosing the alert budget by eye.

    `model`: the model at a range of thresholds on its held-out patients (TRADEOFF_SCHEMA),
    highest threshold first. That is nearly always fewest alerts first, but not quite: alert
    episodes are not monotone in the threshold (a low threshold merges alerts into long
    episodes), so the curve is kept in threshold order rather than sorted by burden. `news2`: NEWS2 at its usual alert levels (3, 5 and 7; threshold
    is the NEWS2 total), same columns. `current`: the model at its own threshold on the
    same patients (from the evaluation report; None without one).
    """

    version: str
    path: Path
    model: pl.DataFrame
    news2: pl.DataFrame
    current: OperatingPointSummary | None


def threshold_tradeoff(
    reports: ReportStore, version: str, *, evaluation: EvaluationSummary | None = None
) -> ThresholdTradeoff | None:
    """The trade-off `riskcast train` wrote for `version` (None when there is none), with
    the model's current operating point from `evaluation` (read when not given). Raises
    EvaluationError for a file that cannot be read."""
    curve = reports.tradeoff(version)
    if curve is None:
        return None
    if evaluation is None:
        evaluation = evaluation_report(reports, version)

    def frame(rows: pl.DataFrame) -> pl.DataFrame:
        return _frame([{name: _number(row.get(name)) for name in TRADEOFF_SCHEMA} for row in rows.to_dicts()], TRADEOFF_SCHEMA)

    return ThresholdTradeoff(
        version=version,
        path=reports.tradeoff_path(version),
        model=frame(curve.model).sort("threshold", descending=True, nulls_last=True),
        news2=frame(curve.news2).sort("threshold"),
        current=evaluation.operating_point if evaluation is not None else None,
    )


# ------------------------------------------------------------------ performance over time

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
                "auroc": _number(result.auroc), "auroc_low": _number(result.auroc_ci[0]),
                "auroc_high": _number(result.auroc_ci[1]), "auprc": _number(result.auprc),
                "auprc_low": _number(result.auprc_ci[0]), "auprc_high": _number(result.auprc_ci[1]),
                "status": STATUS_MEASURED,
            }  # fmt: skip
        rows.append(row)
    return _frame(rows, PERFORMANCE_SCHEMA)


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
    if known_version(registry, model_version) is None or lake.is_empty():
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


# ------------------------------------------------------------------------------- audits


def _summary_counts(summary: Mapping[str, Any]) -> dict[str, int | None]:
    counts = _mapping(summary.get("gate_counts"))
    return {f"n_{v}": _integer(counts.get(v)) for v in ("fail", "warn", "pass")}


def audit_history(engine: Engine, *, model_version: str | None = None, limit: int = 100) -> pl.DataFrame:
    """The latest `limit` fairness audits (store `audits`), newest first; of `model_version`
    only when given. Columns AUDITS_SCHEMA: the gate counts, patients and events come from
    each audit's summary; `report_name` is its HTML report's file name in the reports folder."""
    query = select(audits).order_by(audits.c.created_at.desc(), audits.c.id.desc()).limit(limit)
    if model_version is not None:
        query = query.where(audits.c.model_version == model_version)
    with engine.connect() as connection:
        records = connection.execute(query).all()
    rows = []
    for record in records:
        summary = _mapping(record.summary)
        rows.append(
            {"audit_id": record.id, "model_version": record.model_version, "run_id": record.run_id,
             "created_at": record.created_at, "verdict": record.verdict, **_summary_counts(summary),
             "patients": _integer(summary.get("patients")), "events": _integer(summary.get("events")),
             "report_name": audit_report_name(record.report_path)}
        )  # fmt: skip
    return _frame(rows, AUDITS_SCHEMA)


def audit_trend(engine: Engine, *, model_version: str | None = None) -> pl.DataFrame:
    """How each feature's verdict and disparity summaries moved across audits, oldest first
    (one row per audit and feature; columns AUDIT_TREND_SCHEMA), from the audits' summaries.
    Intersections (features joined by " & ") are included as their own features."""
    query = select(audits).order_by(audits.c.created_at, audits.c.id)
    if model_version is not None:
        query = query.where(audits.c.model_version == model_version)
    with engine.connect() as connection:
        records = connection.execute(query).all()
    rows = []
    for record in records:
        for feature, entry in _mapping(_mapping(record.summary).get("features")).items():
            entry = _mapping(entry)
            row: dict[str, Any] = {
                "audit_id": record.id, "model_version": record.model_version, "created_at": record.created_at,
                "feature": feature, "verdict": _text(entry.get("verdict")), "reference": _text(entry.get("reference")),
                "reported_groups": _integer(entry.get("reported_groups")),
                "suppressed_groups": _integer(entry.get("suppressed_groups")),
                "lowest_sensitivity_ratio_group": _text(entry.get("lowest_sensitivity_ratio_group")),
            }  # fmt: skip
            for name in AUDIT_TREND_SCHEMA:
                if name not in row:
                    row[name] = _number(entry.get(name))
            rows.append(row)
    return _frame(rows, AUDIT_TREND_SCHEMA)


@dataclass(frozen=True)
class AuditDetail:
    """One fairness audit, read from its JSON report, for the fairness page.

    `features`: each audited feature's verdict, reference group and how many groups were
    reported or suppressed (AUDIT_FEATURES_SCHEMA). `groups`: one row per feature and group
    (AUDIT_GROUPS_SCHEMA): counts, GROUP_METRICS with 95% intervals, GROUP_POINT_METRICS;
    every number of a suppressed group is null. `gates`: every gate result (AUDIT_GATES_SCHEMA),
    fail first, then warn, then pass. `overall`: each metric over all held-out patients with
    its interval (OVERALL_SCHEMA). `suppressed_label` is the audit's words for a suppressed
    group ("suppressed (<10 patients or <10 events)"). `report_name` is the HTML report's file
    name in the reports folder (None when it is missing).
    """

    audit_id: int
    model_version: str
    run_id: int | None
    created_at: datetime
    verdict: str
    json_path: Path
    report_name: str | None
    outcome: str | None
    horizon_hours: float | None
    threshold: float | None
    n_patients: int | None
    n_encounters: int | None
    n_rows: int | None
    n_events: int | None
    patient_days: float | None
    n_boot: int | None
    confidence: float | None
    min_patients: int | None
    min_events: int | None
    gates_source: str | None
    suppressed_label: str
    features: pl.DataFrame
    groups: pl.DataFrame
    gates: pl.DataFrame
    overall: pl.DataFrame


def _suppressed_label(report: AuditReport) -> str:
    for feature in report.features.values():
        if "suppressed" in feature.groups.columns and feature.groups["suppressed"].any():
            return feature.suppressed_label
    return f"suppressed (<{report.min_patients} patients or <{report.min_events} events)"


def _group_row(feature: str, group: Mapping[str, Any]) -> dict[str, Any]:
    suppressed = bool(group.get("suppressed"))
    row: dict[str, Any] = {
        "feature": feature,
        "group": str(group.get("group")),
        "suppressed": suppressed,
        "reference": bool(group.get("reference")) and not suppressed,
    }
    for name, dtype in AUDIT_GROUPS_SCHEMA.items():
        if name in row:
            continue
        value = None if suppressed else group.get(name)  # a suppressed group shows no number, ever
        row[name] = _integer(value) if dtype == pl.Int64() else _number(value)
    return row


def _gate_row(gate: GateResult) -> dict[str, Any]:
    low, high = (None, None) if gate.interval is None else (_number(gate.interval[0]), _number(gate.interval[1]))
    return {
        "feature": gate.feature, "gate": gate.gate, "group": gate.group, "reference": gate.reference,
        "metric": gate.metric, "compare": gate.compare, "verdict": str(gate.verdict), "value": _number(gate.value),
        "interval_low": low, "interval_high": high, "bound": _number(gate.bound), "reason": gate.reason,
    }  # fmt: skip


def _overall_rows(overall: Mapping[str, float]) -> list[dict[str, Any]]:
    rows = []
    for metric in (*GROUP_METRICS, *GROUP_POINT_METRICS):
        if metric in overall:
            rows.append(
                {"metric": metric, "label": GROUP_METRIC_LABELS[metric], "value": _number(overall.get(metric)),
                 "low": _number(overall.get(f"{metric}_low")), "high": _number(overall.get(f"{metric}_high"))}
            )  # fmt: skip
    return rows


def audit_detail(
    engine: Engine,
    reports: ReportStore,
    *,
    audit_id: int | None = None,
    model_version: str | None = None,
) -> AuditDetail | None:
    """The audit `audit_id` (default: the latest, of `model_version` when given) with its
    JSON report from the reports folder; None when there is no such audit or its JSON report
    is gone. Raises EvaluationError, naming the file and what to run, when the report exists
    but cannot be read."""
    query = select(audits).order_by(audits.c.created_at.desc(), audits.c.id.desc()).limit(1)
    if audit_id is not None:
        query = select(audits).where(audits.c.id == audit_id)
    elif model_version is not None:
        query = query.where(audits.c.model_version == model_version)
    with engine.connect() as connection:
        record = connection.execute(query).one_or_none()
    if record is None:
        return None
    json_path = reports.audit_json_path(record.report_path, record.model_version, record.run_id)
    document = None if json_path is None else reports.audit_document(json_path)
    if json_path is None or document is None:
        return None
    meta, report = document.meta, document.audit
    features, groups, gates = [], [], []
    for name, feature in report.features.items():
        members = feature.groups.to_dicts()
        features.append(
            {"feature": name, "verdict": str(feature.verdict), "reference": feature.reference,
             "reported_groups": _integer(feature.summary.get("reported_groups", sum(1 for g in members if not g["suppressed"]))),
             "suppressed_groups": _integer(feature.summary.get("suppressed_groups", sum(1 for g in members if g["suppressed"])))}
        )  # fmt: skip
        groups.extend(_group_row(name, group) for group in members)
        gates.extend(_gate_row(gate) for gate in feature.gates)
    gate_frame = _frame(gates, AUDIT_GATES_SCHEMA)
    if gate_frame.height:
        gate_frame = gate_frame.sort(pl.col("verdict").replace_strict(VERDICT_ORDER, default=3), maintain_order=True)
    html_name = audit_report_name(record.report_path)
    html_file = reports.audit_file(html_name) if html_name is not None and html_name.endswith(".html") else None
    return AuditDetail(
        audit_id=int(record.id),
        model_version=record.model_version,
        run_id=record.run_id,
        created_at=record.created_at,
        verdict=str(report.verdict),
        json_path=json_path,
        report_name=None if html_file is None else html_file.name,
        outcome=_text(meta.get("outcome")),
        horizon_hours=_number(meta.get("horizon_hours")),
        threshold=_number(report.threshold),
        n_patients=report.n_patients,
        n_encounters=report.n_encounters,
        n_rows=report.n_rows,
        n_events=report.n_events,
        patient_days=_number(report.patient_days),
        n_boot=report.n_boot,
        confidence=_number(report.confidence),
        min_patients=report.min_patients,
        min_events=report.min_events,
        gates_source=report.gates_source,
        suppressed_label=_suppressed_label(report),
        features=_frame(features, AUDIT_FEATURES_SCHEMA),
        groups=_frame(groups, AUDIT_GROUPS_SCHEMA),
        gates=gate_frame,
        overall=_frame(_overall_rows(report.overall), OVERALL_SCHEMA),
    )


def audit_report_file(engine: Engine, reports: ReportStore, audit_id: Any) -> Path | None:
    """The self-contained HTML report of audit `audit_id`: a file directly in the reports folder
    named like audit-<version>-<run id>.html, or None (no such audit, no such file). The
    stored directory is never followed, only the file name."""
    if isinstance(audit_id, bool) or not isinstance(audit_id, int):
        return None
    with engine.connect() as connection:
        report_path = connection.execute(select(audits.c.report_path).where(audits.c.id == audit_id)).scalar_one_or_none()
    name = audit_report_name(report_path)
    if name is None or not name.endswith(".html"):
        return None
    return reports.audit_file(name)


__all__ = [
    "AUDITS_SCHEMA",
    "AUDIT_FEATURES_SCHEMA",
    "AUDIT_GATES_SCHEMA",
    "AUDIT_GROUPS_SCHEMA",
    "AUDIT_TREND_SCHEMA",
    "COMPARISONS_SCHEMA",
    "DISCRIMINATION_SCHEMA",
    "GROUP_METRICS",
    "GROUP_METRIC_LABELS",
    "GROUP_POINT_METRICS",
    "MODEL_VERSIONS_SCHEMA",
    "OVERALL_SCHEMA",
    "PERFORMANCE_SCHEMA",
    "PERFORMANCE_WEEKS",
    "RELIABILITY_SCHEMA",
    "STATUS_MEASURED",
    "STATUS_NO_EVENTS",
    "STATUS_NO_NON_EVENTS",
    "STATUS_PENDING",
    "TOP_VARIABLES_SCHEMA",
    "TRADEOFF_SCHEMA",
    "AuditDetail",
    "EvaluationSummary",
    "ModelCard",
    "OperatingPointSummary",
    "PromiseCheck",
    "ThresholdTradeoff",
    "audit_detail",
    "audit_history",
    "audit_report_file",
    "audit_trend",
    "evaluation_report",
    "known_version",
    "model_card",
    "model_versions",
    "performance_over_time",
    "threshold_tradeoff",
    "weekly_performance",
]
