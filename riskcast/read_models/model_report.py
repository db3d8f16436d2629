"""Read models for the Model page: the model card, the held-out evaluation, the threshold
trade-off, and discrimination over time from the scores the model really gave (the Fairness
page's are in riskcast.read_models.fairness_report).

The dashboard draws; it computes nothing. Each function here reads what the pipeline has
already written and shapes it for one question:

- the model card: models/<version>/model_card.json (and .md), written by the registry;
- the held-out evaluation: the one sealed into the model's directory (its card), and the
  trade-off between sensitivity, PPV and alert burden: reports/tradeoff-<version>.json (both
  written by `riskcast train`, on the model's held-out patients);
- AUROC and AUPRC per week of the scores the model gave, as the nightly job computed and
  stored them (riskcast.pipeline.performance; the store's `weekly_performance` table): the
  page reads the rows and never runs the bootstrap itself.

Every file is read through riskcast.pipeline.reports (the one owner of report files), which
hands over typed objects; what is left here is shaping them for the page. Report files may be
missing (a model trained without reports, no audit yet): the readers return None and the page
says what to run. A file that exists but cannot be read raises EvaluationError (reports/) or
RegistryError (the model directory) naming the file and what to run. A number that is not
there (NaN, or null in the file) reads as null, never as zero.

Every time is UTC-aware (polars Datetime("us", "UTC")); `now` is always passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from riskcast.catalog import Catalog, load_catalog
from riskcast.evaluate import AlertMetrics, EvaluationReport
from riskcast.model import ModelRegistry
from riskcast.pipeline.performance import (
    PERFORMANCE_SCHEMA,
    PERFORMANCE_WEEKS,
    STATUS_MEASURED,
    STATUS_NO_EVENTS,
    STATUS_NO_NON_EVENTS,
    STATUS_PENDING,
)
from riskcast.pipeline.reports import PromiseCheck, ReportStore
from riskcast.pipeline.training import ABLATIONS, BASELINE_COLUMNS
from riskcast.read_models.report_values import UTC, integer_or_none, number_or_none, records_frame, text_or_none
from riskcast.read_models.scores import variable_label
from riskcast.store.weekly_performance import read_weekly_performance


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


def model_versions(registry: ModelRegistry) -> pl.DataFrame:
    """Every registered model version, newest first (columns MODEL_VERSIONS_SCHEMA); empty
    before the first `riskcast train`."""
    rows = [
        {"version": v.version, "engine": v.engine, "created_at": v.created_at, "is_champion": v.is_champion,
         "threshold": v.threshold}
        for v in registry.versions()
    ]  # fmt: skip
    return records_frame(rows, MODEL_VERSIONS_SCHEMA).sort("created_at", "version", descending=True)


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
        engine=text_or_none(model.get("engine")),
        calibration=text_or_none(model.get("calibration")),
        threshold=number_or_none(model.get("threshold")),
        threshold_rule=text_or_none(model.get("threshold_rule")),
        threshold_target=number_or_none(model.get("threshold_target")),
        n_features=integer_or_none(model.get("n_features")),
        intended_use=str(card.intended_use or "not stated"),
        outcome=card.outcome,
        horizon_hours=card.horizon_hours,
        data=card.described if card.described else ({"description": description} if description else {}),
        fingerprint=card.fingerprint,
        training=card.training_metrics,
        limits=card.limit_list,
        top_variables=records_frame(top, TOP_VARIABLES_SCHEMA),
        markdown=reports.model_card_markdown(version),
    )


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
                "auroc": number_or_none(entry.auroc), "auroc_low": number_or_none(entry.auroc_ci[0]),
                "auroc_high": number_or_none(entry.auroc_ci[1]), "auprc": number_or_none(entry.auprc),
                "auprc_low": number_or_none(entry.auprc_ci[0]), "auprc_high": number_or_none(entry.auprc_ci[1]),
                "n_rows": entry.n_rows, "n_positive": entry.n_positive, "n_boot_valid": entry.n_boot_valid,
            }
        )  # fmt: skip
    order = {"model": 0, "baseline": 1, "ablation": 2}
    return sorted(rows, key=lambda row: order[row["kind"]])


def _operating_point(point: AlertMetrics) -> OperatingPointSummary:
    return OperatingPointSummary(
        threshold=number_or_none(point.threshold),
        alerts_per_100_patient_days=number_or_none(point.alerts_per_100_patient_days),
        sensitivity=number_or_none(point.sensitivity),
        ppv=number_or_none(point.ppv),
        encounter_sensitivity=number_or_none(point.encounter_sensitivity),
        median_lead_time_hours=number_or_none(point.median_lead_time_hours),
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
                "baseline": name, "baseline_threshold": number_or_none(entry.baseline_threshold),
                "baseline_alerts_per_100_patient_days": number_or_none(baseline.alerts_per_100_patient_days),
                "baseline_sensitivity": number_or_none(baseline.sensitivity), "baseline_ppv": number_or_none(baseline.ppv),
                "model_threshold": number_or_none(entry.model_threshold),
                "model_alerts_per_100_patient_days": number_or_none(model.alerts_per_100_patient_days),
                "model_sensitivity": number_or_none(model.sensitivity), "model_ppv": number_or_none(model.ppv),
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
    reliability = [{name: number_or_none(value) if isinstance(value, float) else value for name, value in row.items()}
                   for row in calibration.reliability.to_dicts()]  # fmt: skip
    return EvaluationSummary(
        version=version,
        path=reports.model_card_path(version),
        outcome=report.outcome,
        threshold=number_or_none(report.threshold),
        n_patients=report.n_patients,
        n_encounters=report.n_encounters,
        n_rows=report.n_rows,
        n_positive=report.n_positive,
        prevalence=number_or_none(report.prevalence),
        patient_days=number_or_none(report.patient_days),
        discrimination=records_frame(_discrimination_rows(report), DISCRIMINATION_SCHEMA),
        reliability=records_frame(reliability, RELIABILITY_SCHEMA).sort("mean_predicted", nulls_last=True),
        brier=number_or_none(calibration.brier),
        ece=number_or_none(calibration.ece),
        calibration_in_the_large=number_or_none(calibration.calibration_in_the_large),
        operating_point=_operating_point(report.operating_point),
        comparisons=records_frame(_comparison_rows(report), COMPARISONS_SCHEMA),
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
        return records_frame([{name: number_or_none(row.get(name)) for name in TRADEOFF_SCHEMA} for row in rows.to_dicts()], TRADEOFF_SCHEMA)

    return ThresholdTradeoff(
        version=version,
        path=reports.tradeoff_path(version),
        model=frame(curve.model).sort("threshold", descending=True, nulls_last=True),
        news2=frame(curve.news2).sort("threshold"),
        current=evaluation.operating_point if evaluation is not None else None,
    )


@dataclass(frozen=True)
class StoredPerformance:
    """A version's weekly performance as the nightly job last computed and stored it.

    `weeks`: one row per calendar week (PERFORMANCE_SCHEMA), oldest first; empty before the
    nightly job first ran (or when the version had no scores in its window). `computed_at`:
    when it was computed (the outcomes known then are the ones counted); None when empty.
    """

    version: str
    weeks: pl.DataFrame
    computed_at: datetime | None


def stored_performance(engine: Engine, model_version: str) -> StoredPerformance:
    """`model_version`'s weekly AUROC and AUPRC as the nightly job stored them
    (riskcast.pipeline.performance.record_weekly_performance): the Model page reads this
    instead of running the patient bootstrap on every click."""
    stored = read_weekly_performance(engine, model_version)
    computed_at = stored["computed_at"].max() if stored.height else None
    return StoredPerformance(version=model_version, weeks=stored.select(list(PERFORMANCE_SCHEMA)), computed_at=computed_at)


__all__ = [
    "COMPARISONS_SCHEMA",
    "DISCRIMINATION_SCHEMA",
    "EvaluationSummary",
    "MODEL_SCORE",
    "MODEL_VERSIONS_SCHEMA",
    "ModelCard",
    "OperatingPointSummary",
    "PERFORMANCE_SCHEMA",
    "PERFORMANCE_WEEKS",
    "PromiseCheck",
    "RELIABILITY_SCHEMA",
    "STATUS_MEASURED",
    "STATUS_NO_EVENTS",
    "STATUS_NO_NON_EVENTS",
    "STATUS_PENDING",
    "TOP_VARIABLES_SCHEMA",
    "TRADEOFF_SCHEMA",
    "StoredPerformance",
    "ThresholdTradeoff",
    "evaluation_report",
    "known_version",
    "model_card",
    "model_versions",
    "stored_performance",
    "threshold_tradeoff",
]
