"""Training data from the lake: the feature matrix with labels, ready for a model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskcast.errors import LakeError, ModelError
from riskcast.evaluate import alert_metrics, evaluate, threshold_at_alert_rate
from riskcast.explain import MEASUREMENT_PROCESS_SUFFIXES, global_importance
from riskcast.features.build import build_features, feature_columns
from riskcast.model import ModelRegistry, RiskModel, load_model, save_model
from riskcast.labels import challenge_labels, make_labels
from riskcast.lake import Lake


def feature_matrix(
    lake: Lake,
    *,
    at: datetime | None = None,
    outcome: str | None = None,
    horizon_hours: float = 12.0,
    keep_after_event: bool = False,
) -> pl.DataFrame:
    """The hourly feature matrix of every encounter in the lake, labelled when outcome is given.

    With an outcome, rows after the first event are dropped (unless keep_after_event) and
    a `label` (0/1, null when censored) and `event_time` are attached; for sepsis the
    PhysioNet challenge's per-hour `sepsis_label` is attached too.
    """
    if lake.is_empty():
        raise LakeError(f"the lake at {lake.root} is empty: run `riskcast ingest PATH` first")
    observations = lake.scan("observations")
    encounters = lake.scan("encounters")
    frame = build_features(observations, encounters, lake.scan("patients"), at=at)
    if outcome is None:
        return frame
    labels = make_labels(
        frame.select("encounter_id", "time"),
        lake.scan("outcomes"),
        encounters,
        outcome=outcome,
        horizon_hours=horizon_hours,
        as_of=at,
        keep_after_event=keep_after_event,
    )
    frame = frame.join(labels, on=["encounter_id", "time"], how="inner")
    if outcome == "sepsis":
        frame = frame.join(challenge_labels(labels, lake.scan("outcomes")), on=["encounter_id", "time"], how="left")
    return frame.sort("encounter_id", "time")


# --------------------------------------------------------------------------- training

HELD_OUT_FILE = "heldout_patients.json"
# Alert episodes per 100 patient-days when no budget or sensitivity is asked for: about
# NEWS2>=5's burden on a general ward, so the model is compared at a rate wards accept.
DEFAULT_ALERT_BUDGET = 15.0
# Shallow, column-subsampled trees: deterioration events are rare, so deep trees overfit
# (held-out AUROC 0.85 vs 0.83 at depth 6 on a 1,500-encounter synthetic cohort).
TRAINING_DEFAULTS = {"max_depth": 4, "min_child_weight": 5.0, "colsample": 0.5, "calibration": "auto"}
# Baselines scored beside the model: name -> (feature column, alert threshold).
BASELINE_COLUMNS = {"NEWS2": ("news2", 5.0), "NEWS2 (high)": ("news2", 7.0), "qSOFA": ("qsofa", 2.0), "SIRS": ("sirs", 2.0)}
INTENDED_USE = (
    "Flag hospitalised adults whose risk of deterioration within the horizon is high, as an aid to the "
    "ward team's judgement. Not a diagnosis; not for patients outside the training population."
)
LIMITS = [
    "Validated on held-out patients of the training site only; check calibration and thresholds at a new site "
    "(`riskcast evaluate --data`) before use.",
    "Scores describe the data recorded: a patient whose essential vitals are stale gets 'insufficient data', not a score.",
    "Measurement-process features (how often things are measured) partly reflect clinicians' worry.",
]


ABLATIONS_DIR = "ablations"


def _finite(value: Any) -> Any:
    """The same structure with NaN and infinities as None, so the JSON is strict."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value
PROMISE_FILE = "promise.json"
# How far held-out or external data may drift from the promise before it counts as broken.
PROMISE_TOLERANCE = 0.2


TRADEOFF_POINTS = 40


def threshold_tradeoff(scored: pl.DataFrame, *, score: str = "risk", points: int = TRADEOFF_POINTS) -> list[dict[str, Any]]:
    """Sensitivity, PPV and alert burden across thresholds, for choosing an alert budget by eye.

    Thresholds are quantiles of the score among the riskier rows (where alerting happens),
    measured on held-out patients.
    """
    values = scored[score].drop_nulls()
    quantiles = np.unique(np.quantile(values.to_numpy(), np.linspace(0.5, 0.999, points)))
    rows = []
    for threshold in quantiles:
        metrics = alert_metrics(scored, threshold=float(threshold), score=score)
        rows.append(
            {
                "threshold": float(threshold),
                "alerts_per_100_patient_days": metrics.alerts_per_100_patient_days,
                "sensitivity": metrics.sensitivity,
                "ppv": metrics.ppv,
                "encounter_sensitivity": metrics.encounter_sensitivity,
            }
        )
    return rows


def promise_markdown(check: dict[str, Any]) -> str:
    """The promise check as a short Markdown section."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    verdict = "kept" if check["kept"] else "BROKEN"
    return (
        f"## Promise: {verdict}\n\nMade on the calibration patients: **{check['promise']}**.\n\n"
        f"| | promised | observed here |\n|---|---|---|\n"
        f"| alerts per 100 patient-days | {check['promised_alerts_per_100_patient_days']:.1f} | "
        f"{check['observed_alerts_per_100_patient_days']:.1f} |\n"
        f"| PPV (hours) | {pct(check['promised_ppv'])} | {pct(check['observed_ppv'])} |\n\n"
    )


def make_promise(scored: pl.DataFrame, *, threshold: float) -> dict[str, Any]:
    """What the operating point promises, measured on the model's own calibration patients."""
    metrics = alert_metrics(scored, threshold=threshold)
    return {
        "threshold": threshold,
        "alerts_per_100_patient_days": metrics.alerts_per_100_patient_days,
        "ppv": metrics.ppv,
        "text": metrics.promise,
        "tolerance": PROMISE_TOLERANCE,
    }


def check_promise(promise: dict[str, Any], report: Any) -> dict[str, Any]:
    """Is the promise kept on this evaluation's patients? (burden and PPV within tolerance)

    Kept when alerts per 100 patient-days are at most the promise × (1 + tolerance) and
    the hourly PPV at least the promise × (1 − tolerance); the numbers are reported either way.
    """
    observed = report.to_dict()["operating_point"]
    tolerance = promise["tolerance"]
    burden_ok = observed["alerts_per_100_patient_days"] is not None and (
        observed["alerts_per_100_patient_days"] <= promise["alerts_per_100_patient_days"] * (1 + tolerance)
    )
    ppv_ok = promise["ppv"] is None or (observed["ppv"] is not None and observed["ppv"] >= promise["ppv"] * (1 - tolerance))
    return {
        "promise": promise["text"],
        "promised_alerts_per_100_patient_days": promise["alerts_per_100_patient_days"],
        "observed_alerts_per_100_patient_days": observed["alerts_per_100_patient_days"],
        "promised_ppv": promise["ppv"],
        "observed_ppv": observed["ppv"],
        "burden_kept": bool(burden_ok),
        "ppv_kept": bool(ppv_ok),
        "kept": bool(burden_ok and ppv_ok),
    }


def ablation_features(name: str, features: list[str]) -> list[str]:
    """The features an ablation model may use.

    "clock only": hours since admission alone — on some data (PhysioNet 2019) the clock
    reaches much of a trained model's utility. "physiology only": everything except the
    measurement-process features (how long since and how often things were measured,
    and NEWS2's count of missing components), which partly record the clinicians' worry
    rather than the patient.
    """
    if name == "clock only":
        return ["hours_since_admission"]
    if name == "physiology only":
        return [f for f in features if not f.endswith(MEASUREMENT_PROCESS_SUFFIXES) and f != "news2_missing"]
    raise ModelError(f"unknown ablation {name!r}; known: clock only, physiology only")


ABLATIONS = ("clock only", "physiology only")


def fit_ablations(train: pl.DataFrame, features: list[str], *, engine: str, device: str, seed: int) -> dict[str, RiskModel]:
    """Refit the model on reduced feature sets (see ablation_features), same patients and settings."""
    models = {}
    for name in ABLATIONS:
        columns = ablation_features(name, features)
        model = RiskModel(engine=engine, device=device, threshold_rule="none", random_state=seed, **TRAINING_DEFAULTS)
        models[name] = model.fit(train.select(columns).to_pandas(), train["label"].to_numpy(), groups=train["patient_id"].to_numpy())
    return models


def with_ablations(scored: pl.DataFrame, frame: pl.DataFrame, ablations: dict[str, RiskModel], *, threshold: float) -> dict[str, float]:
    """Add each ablation's risk as a column of `scored`; thresholds giving the model's alert rate.

    Returns name -> threshold, for riskcast.evaluate's baselines, so every ablation is
    measured at the same alert burden as the full model.
    """
    if not ablations:
        return {}
    rate = alert_metrics(scored, threshold=threshold).alerts_per_100_patient_days
    thresholds = {}
    for name, model in ablations.items():
        risk = model.predict_proba(frame.select(list(model.feature_names_in_)).to_pandas())[:, 1]
        scored.insert_column(scored.width, pl.Series(name, risk, dtype=pl.Float64))
        thresholds[name] = threshold_at_alert_rate(scored, alerts_per_100_patient_days=rate, score=name)
    return thresholds


def load_ablations(model_dir: Path) -> dict[str, RiskModel]:
    """The ablation models saved beside a registered model (none for older models)."""
    folder = model_dir / ABLATIONS_DIR
    if not folder.is_dir():
        return {}
    return {name: load_model(folder / name.replace(" ", "_")) for name in ABLATIONS if (folder / name.replace(" ", "_")).is_dir()}


@dataclass(frozen=True)
class TrainResult:
    """A trained, registered model and its held-out evaluation."""

    version: str
    promoted: bool
    report: Any  # riskcast.evaluate.EvaluationReport
    promise_check: dict[str, Any]
    n_rows: int
    n_patients: int
    n_test_patients: int
    device: str
    report_paths: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "promoted": self.promoted,
            "rows": self.n_rows,
            "patients": self.n_patients,
            "test_patients": self.n_test_patients,
            "device": self.device,
            "reports": self.report_paths,
            "evaluation": self.report.to_dict(),
            "promise_check": self.promise_check,
        }


def test_patients(frame: pl.DataFrame, *, test_fraction: float, temporal: bool, seed: int = 0) -> set[str]:
    """Held-out patients: a random share, or (temporal) the patients admitted last."""
    if not 0 < test_fraction < 1:
        raise ModelError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    first_seen = frame.group_by("patient_id").agg(pl.col("time").min().alias("first_time")).sort("first_time", "patient_id")
    n_test = max(1, int(round(first_seen.height * test_fraction)))
    if temporal:
        chosen = first_seen.tail(n_test)
    else:
        chosen = first_seen.sample(n=n_test, seed=seed, shuffle=True)
    return set(chosen["patient_id"].to_list())


def evaluation_frame(frame: pl.DataFrame, risk: np.ndarray) -> pl.DataFrame:
    """Predictions with labels and the baseline scores, as riskcast.evaluate expects."""
    columns = ["encounter_id", "patient_id", "time", "label", "event_time"]
    if "sepsis_label" in frame.columns:
        columns.append("sepsis_label")
    out = frame.select(columns).with_columns(pl.Series("risk", risk, dtype=pl.Float64))
    return out.with_columns(
        [frame[source].cast(pl.Float64).alias(name) for name, (source, _) in BASELINE_COLUMNS.items() if source in frame.columns]
    )


def baselines_of(frame: pl.DataFrame) -> dict[str, float]:
    return {name: threshold for name, (source, threshold) in BASELINE_COLUMNS.items() if name in frame.columns}


def train_and_register(
    lake: Lake,
    registry: ModelRegistry,
    *,
    now: datetime,
    outcome: str = "deterioration",
    horizon_hours: float = 12.0,
    engine: str = "xgboost",
    device: str = "auto",
    alerts_per_100_patient_days: float | None = None,
    target_sensitivity: float | None = None,
    test_fraction: float = 0.2,
    temporal: bool = False,
    search: bool = False,
    ablations: bool = True,
    n_boot: int = 200,
    promote: bool | None = None,
    reports_dir: Path | None = None,
    seed: int = 0,
    progress: Callable[[str], None] = lambda message: None,
) -> TrainResult:
    """Build labelled features, train on most patients, evaluate on held-out patients, register.

    The operating point is chosen on the model's own calibration patients from an alert
    budget (default DEFAULT_ALERT_BUDGET) or, when given, a target sensitivity. The first model becomes
    champion; later ones only when `promote` is True.
    """
    progress("building features and labels")
    frame = feature_matrix(lake, outcome=outcome, horizon_hours=horizon_hours).filter(pl.col("label").is_not_null())
    if frame.height == 0 or frame["label"].sum() == 0:
        raise ModelError(f"no labelled rows with a {outcome!r} event in the lake; check the outcomes table")
    held_out = test_patients(frame, test_fraction=test_fraction, temporal=temporal, seed=seed)
    is_test = pl.col("patient_id").is_in(pl.Series(list(held_out), dtype=pl.String).implode())
    train, test = frame.filter(~is_test), frame.filter(is_test)
    features = feature_columns(frame.drop("label", "event_time", "sepsis_label", strict=False))
    if target_sensitivity is not None:
        rule, target = "sensitivity", target_sensitivity
    else:
        rule = "alert_budget"
        target = alerts_per_100_patient_days if alerts_per_100_patient_days is not None else DEFAULT_ALERT_BUDGET
    model = RiskModel(
        engine=engine, device=device, threshold_rule=rule, threshold_target=target, random_state=seed, **TRAINING_DEFAULTS
    )
    progress(f"training {engine} on {train.height:,} rows of {train['patient_id'].n_unique():,} patients ({rule} {target})")
    X = train.select(features).to_pandas()
    if search:
        model.search(X, train["label"].to_numpy(), groups=train["patient_id"].to_numpy())
    model.fit(X, train["label"].to_numpy(), groups=train["patient_id"].to_numpy(), encounter_ids=train["encounter_id"].to_numpy())
    calibration_rows = train[model.split_.held_out]
    promise = make_promise(
        evaluation_frame(calibration_rows, model.predict_proba(calibration_rows.select(features).to_pandas())[:, 1]),
        threshold=model.threshold_,
    )
    ablation_models: dict[str, RiskModel] = {}
    if ablations:
        progress("refitting ablations: clock only, physiology only (without measurement-process features)")
        ablation_models = fit_ablations(train, features, engine=engine, device=device, seed=seed)
    progress(f"evaluating on {len(held_out):,} held-out patients ({test.height:,} rows)")
    risk = model.predict_proba(test.select(features).to_pandas())[:, 1]
    scored = evaluation_frame(test, risk)
    baselines = baselines_of(scored) | with_ablations(scored, test, ablation_models, threshold=model.threshold_)
    report = evaluate(scored, threshold=model.threshold_, baselines=baselines, n_boot=n_boot, seed=seed, outcome=outcome)
    promise_check = check_promise(promise, report)
    sample = test.select(features).sample(n=min(2000, test.height), seed=seed)
    importance = global_importance(model.contributions(sample.to_pandas()), features)
    metadata = {
        "intended_use": INTENDED_USE,
        "data": {
            "outcome": outcome,
            "horizon_hours": horizon_hours,
            "rows": frame.height,
            "patients": frame["patient_id"].n_unique(),
            "test_patients": len(held_out),
            "split": "temporal" if temporal else "random by patient",
            "lake_batches": lake.committed_batch_ids(),
        },
        "metrics": report.to_dict(),
        "promise": promise,
        "promise_check_held_out": promise_check,
        "limits": LIMITS,
        "top_variables": importance.filter(pl.col("level") == "variable").head(10).select("name", "mean_abs_contribution").to_dicts(),
        "outcome": outcome,
        "horizon_hours": horizon_hours,
    }
    # Everything of the version goes into its stage, published whole when the block ends.
    with registry.staging(model, metadata=metadata, now=now) as stage:
        # Pseudonymous ids only: lets `riskcast evaluate` re-check the same held-out patients later.
        (stage.path / HELD_OUT_FILE).write_text(json.dumps(sorted(held_out)))
        (stage.path / PROMISE_FILE).write_text(json.dumps(promise, indent=2))
        for name, ablation in ablation_models.items():
            save_model(ablation, stage.path / ABLATIONS_DIR / name.replace(" ", "_"), metadata={"ablation": name})
    version = stage.version
    should_promote = promote if promote is not None else registry.champion() is None
    if should_promote:
        registry.promote(version, by="riskcast train", reason="first model" if registry.champion() is None else "--promote", now=now)
    paths: dict[str, str] = {}
    if reports_dir is not None:
        reports_dir.mkdir(parents=True, exist_ok=True)
        json_path = reports_dir / f"evaluation-{version}.json"
        md_path = reports_dir / f"evaluation-{version}.md"
        tradeoff = {
            "model": threshold_tradeoff(scored),
            "news2": [
                {"threshold": t} | alert_metrics(scored, threshold=t, score="NEWS2").to_dict()
                for t in (3.0, 5.0, 7.0)
                if "NEWS2" in scored.columns
            ],
        }
        (reports_dir / f"tradeoff-{version}.json").write_text(json.dumps(_finite(tradeoff), indent=2, allow_nan=False))
        json_path.write_text(json.dumps(report.to_dict() | {"promise_check": promise_check}, indent=2))
        md_path.write_text(f"# Evaluation of {version}\n\n" + promise_markdown(promise_check) + report.to_markdown())
        paths = {"json": str(json_path), "markdown": str(md_path)}
    return TrainResult(
        version=version,
        promoted=should_promote,
        report=report,
        promise_check=promise_check,
        n_rows=frame.height,
        n_patients=frame["patient_id"].n_unique(),
        n_test_patients=len(held_out),
        device=model.device_,
        report_paths=paths,
    )
