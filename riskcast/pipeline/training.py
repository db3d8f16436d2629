"""Training data from the lake: the feature matrix with labels, ready for a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Engine as SQLEngine

from riskcast.errors import LakeError, ModelError
from riskcast.feature_store import FeatureStore
from riskcast.evaluate import alert_metrics, evaluate, threshold_at_alert_rate
from riskcast.explain import MEASUREMENT_PROCESS_SUFFIXES, global_importance
from riskcast.features.build import build_features, feature_columns
from riskcast.features.families import DEFAULT_FAMILIES, FAMILIES, columns_of
from riskcast.pipeline.reports import HeldOutEvaluation, PromiseCheck, ReportStore, TradeoffCurve
from riskcast.pipeline.store_sync import sync_models
from riskcast.pipeline.training_data import LabelSource, Labelling, StoreDataset, fresh_generation, labelled_shards
from riskcast.model import ModelRegistry, RiskModel, load_model, save_model
from riskcast.model.estimator import AUTO, DEFAULT_MEMORY_BUDGET_GIB
from riskcast.labels import challenge_labels, make_labels
from riskcast.lake import Lake


def feature_matrix(
    lake: Lake,
    *,
    at: datetime | None = None,
    outcome: str | None = None,
    horizon_hours: float = 12.0,
    keep_after_event: bool = False,
    families: Sequence[str] = DEFAULT_FAMILIES,
) -> pl.DataFrame:
    """The hourly feature matrix of every encounter in the lake, in memory, labelled when
    outcome is given (for small lakes, tests and exports; flows read the store's shards).

    Read from the feature store beside the lake (refreshed first). With `at`, built from the
    data as it stood at that time instead, without the store. With an outcome, rows after
    the first event are dropped (unless keep_after_event) and `label` (0/1, null when
    censored) and `event_time` are attached; for sepsis the challenge's `sepsis_label` too.
    """
    if lake.is_empty():
        raise LakeError(f"the lake at {lake.root} is empty: run `riskcast ingest PATH` first")
    if at is not None:
        frame = build_features(lake.scan("observations"), lake.scan("encounters"), lake.scan("patients"), at=at,
                               families=families)
        if outcome is None:
            return frame
        labels = make_labels(frame.select("encounter_id", "time"), lake.scan("outcomes"), lake.scan("encounters"),
                             outcome=outcome, horizon_hours=horizon_hours, as_of=at, keep_after_event=keep_after_event)
        frame = frame.join(labels, on=["encounter_id", "time"], how="inner")
        if outcome == "sepsis":
            frame = frame.join(challenge_labels(labels, lake.scan("outcomes")), on=["encounter_id", "time"], how="left")
        return frame.sort("encounter_id", "time")
    generation = fresh_generation(lake)
    columns = generation.columns()
    if families != FAMILIES:
        columns = [c for c in columns if c not in generation.features or c in set(columns_of(generation.features, families))]
    if outcome is None:
        return pl.concat(list(generation.iter_shards(columns))).sort("encounter_id", "time")
    labels = LabelSource(lake, batches=generation.batches)
    labelling = Labelling(outcome, horizon_hours, keep_after_event)
    parts = [labels.attach(shard, labelling, drop_censored=False) for shard in generation.iter_shards(columns)]
    return pl.concat(parts).sort("encounter_id", "time")


# --------------------------------------------------------------------------- training

# Alert episodes per 100 patient-days when no budget or sensitivity is asked for: about
# NEWS2>=5's burden on a general ward, so the model is compared at a rate wards accept.
DEFAULT_ALERT_BUDGET = 15.0
# Shallow, column-subsampled trees: deterioration events are rare, so deep trees overfit
# (held-out AUROC 0.85 vs 0.83 at depth 6 on a 1,500-encounter synthetic cohort).
# No class weighting: the calibrator and the operating point, not the booster, handle the
# rare class. Weighting positives by negatives/positives (about 45 for sepsis hours) fitted
# the training unit's positives and transported worse on bench/transport.py (medical ICU ->
# surgical ICU AUROC 0.782 -> 0.798, utility 0.214 -> 0.315; surgical -> medical 0.711 ->
# 0.719, 0.057 -> 0.110); the demo cohort's held-out AUROC went 0.801 -> 0.815.
TRAINING_DEFAULTS = {"max_depth": 4, "min_child_weight": 5.0, "colsample": 0.5, "calibration": "auto",
                     "scale_pos_weight": None}
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
# What each operating point promises (written into the model card).
OPERATING_POINT_PROMISES = {
    "alert_budget": "at most the chosen number of alert episodes per 100 patient-days on the calibration patients: "
                    "a ward's alert burden, checked again on the held-out patients and at any new site",
    "sensitivity": "at least the chosen share of positive hours flagged on the calibration patients",
    "utility": "the threshold that maximised the PhysioNet/CinC 2019 utility (the challenge's scoring rule) on the "
               "calibration patients; it promises that utility, not an alert burden, and the burden it implies is "
               "reported beside it",
}


# How far held-out or external data may drift from the promise before it counts as broken.
PROMISE_TOLERANCE = 0.2


TRADEOFF_POINTS = 40


def tradeoff_curve(scored: pl.DataFrame, *, score: str = "risk", points: int = TRADEOFF_POINTS) -> list[dict[str, Any]]:
    """Sensitivity, PPV and alert burden across thresholds, for choosing an alert budget by eye:
    the model's rows of the tradeoff file `train` writes (read back as
    riskcast.read_models.threshold_tradeoff).

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
        f"| PPV (hours) | {pct(check['promised_ppv'])} | {pct(check['observed_ppv'])} |\n"
        + (f"| PhysioNet 2019 utility (what was promised) | {check['promised_utility']:.3f} | "
           f"{'n/a' if check['observed_utility'] is None else format(check['observed_utility'], '.3f')} |\n"
           if "promised_utility" in check else "")
        + "\n"
    )


def make_promise(scored: pl.DataFrame, *, threshold: float, utility: float | None = None) -> dict[str, Any]:
    """What the operating point promises, measured on the model's own calibration patients.

    With `utility` (a threshold chosen by the PhysioNet 2019 utility) the promise is that
    utility; the alert burden and PPV are stated beside it but not promised.
    """
    metrics = alert_metrics(scored, threshold=threshold)
    promise = {
        "threshold": threshold,
        "alerts_per_100_patient_days": metrics.alerts_per_100_patient_days,
        "ppv": metrics.ppv,
        "text": metrics.promise,
        "tolerance": PROMISE_TOLERANCE,
    }
    if utility is not None:
        promise |= {
            "rule": "utility",
            "utility": utility,
            "text": f"risk >= {threshold:.4g}: PhysioNet 2019 utility at least {utility:.3f} (as on the calibration "
                    f"patients), with about {metrics.alerts_per_100_patient_days:.0f} alert episodes per 100 patient-days",
        }
    return promise


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
    check = {
        "promise": promise["text"],
        "promised_alerts_per_100_patient_days": promise["alerts_per_100_patient_days"],
        "observed_alerts_per_100_patient_days": observed["alerts_per_100_patient_days"],
        "promised_ppv": promise["ppv"],
        "observed_ppv": observed["ppv"],
        "burden_kept": bool(burden_ok),
        "ppv_kept": bool(ppv_ok),
        "kept": bool(burden_ok and ppv_ok),
    }
    if promise.get("rule") == "utility":  # the utility is what was promised; burden and PPV are context
        utilities = report.to_dict().get("utility") or {}
        observed_utility = utilities.get(report.score)
        kept = observed_utility is not None and observed_utility >= promise["utility"] * (1 - tolerance)
        check |= {"promised_utility": promise["utility"], "observed_utility": observed_utility,
                  "utility_kept": bool(kept), "kept": bool(kept)}
    return check


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


def fit_ablations(train: StoreDataset, features: list[str], *, engine: str, device: str, seed: int) -> dict[str, RiskModel]:
    """Refit the model on reduced feature sets (see ablation_features), same patients and settings."""
    models = {}
    for name in ABLATIONS:
        columns = ablation_features(name, features)
        model = RiskModel(engine=engine, device=device, threshold_rule="none", random_state=seed,
                          cache_dir=str(train.generation.folder), **TRAINING_DEFAULTS)
        data = train.with_features(columns)
        models[name] = model.fit(data)
        data.release()
    return models


def score_dataset(
    data: StoreDataset,
    model: RiskModel,
    ablations: dict[str, RiskModel] | None = None,
    *,
    sample_rows: int = 0,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score every row of `data` shard by shard: (evaluation frame with the model's and each
    ablation's risk, a uniform random sample of up to `sample_rows` feature rows for SHAP).

    Only one shard's features are in memory at a time; the evaluation frame keeps keys,
    labels, baseline scores and risks.
    """
    ablations = ablations or {}
    features = list(model.feature_names_in_)
    wanted = list(dict.fromkeys([*features, *_baseline_sources(data.generation.features)]))
    rng = np.random.default_rng(seed)
    parts, sample, sample_keys = [], None, np.zeros(0)
    for index in range(data.n_chunks):
        frame = data.rows(index, columns=wanted)
        if frame.height == 0:
            continue
        scored = evaluation_frame(frame, model.predict_proba(frame.select(features))[:, 1])
        for name, ablation in ablations.items():
            risk = ablation.predict_proba(frame.select(list(ablation.feature_names_in_)))[:, 1]
            scored = scored.with_columns(pl.Series(name, risk, dtype=pl.Float64))
        parts.append(scored)
        if sample_rows:
            keys = rng.random(frame.height)
            merged_keys = np.concatenate([sample_keys, keys])
            merged = frame.select(features) if sample is None else pl.concat([sample, frame.select(features)])
            keep = np.argsort(merged_keys, kind="stable")[:sample_rows]
            sample, sample_keys = merged[np.sort(keep)], merged_keys[np.sort(keep)]
    if not parts:
        raise ModelError("no labelled rows to score among the chosen patients")
    return pl.concat(parts), sample if sample is not None else pl.DataFrame(schema={f: pl.Float32 for f in features})


def ablation_thresholds(scored: pl.DataFrame, ablations: dict[str, RiskModel], *, threshold: float) -> dict[str, float]:
    """Thresholds giving each ablation (a risk column of `scored`) the model's alert rate, for
    riskcast.evaluate's baselines, so every ablation is measured at the same alert burden."""
    if not ablations:
        return {}
    rate = alert_metrics(scored, threshold=threshold).alerts_per_100_patient_days
    return {name: threshold_at_alert_rate(scored, alerts_per_100_patient_days=rate, score=name) for name in ablations}


def _baseline_sources(features: Sequence[str]) -> list[str]:
    """The feature columns the bedside-score baselines are read from."""
    return [source for source, _ in BASELINE_COLUMNS.values() if source in features]


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
    n_test_events: int = 0  # held-out encounters with the outcome (label 1 in some hour)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "promoted": self.promoted,
            "rows": self.n_rows,
            "patients": self.n_patients,
            "test_patients": self.n_test_patients,
            "test_events": self.n_test_events,
            "device": self.device,
            "reports": self.report_paths,
            "evaluation": self.report.to_dict(),
            "promise_check": self.promise_check,
        }


def held_out_patients(frame: pl.DataFrame, *, test_fraction: float, temporal: bool, seed: int = 0) -> set[str]:
    """Held-out patients: a random share, or (temporal) the patients admitted last.

    frame: rows with patient_id and time (e.g. patient_first_seen's).
    """
    if not 0 < test_fraction < 1:
        raise ModelError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    first_seen = frame.group_by("patient_id").agg(pl.col("time").min().alias("first_time")).sort("first_time", "patient_id")
    n_test = max(1, int(round(first_seen.height * test_fraction)))
    if temporal:
        chosen = first_seen.tail(n_test)
    else:
        chosen = first_seen.sample(n=n_test, seed=seed, shuffle=True)
    return set(chosen["patient_id"].to_list())


def patient_first_seen(generation: Any) -> pl.DataFrame:
    """patient_id, time: each patient's first hour in the feature store (one streaming query)."""
    return generation.scan(["patient_id", "time"]).group_by("patient_id").agg(pl.col("time").min()).collect()


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


def default_labelling(outcome: str, horizon_hours: float) -> Labelling:
    """How a model of this outcome is labelled for training (see Labelling).

    Sepsis keeps the hours after onset (labelled 1), as the PhysioNet 2019 challenge scores
    and labels them: chosen on the transport benchmark (bench/transport.py), where it beat
    dropping them on every split. Other outcomes drop them: after a deterioration there is
    nothing left to predict.
    """
    return Labelling(outcome, horizon_hours, keep_after_event=outcome == "sepsis")


def default_operating_point(outcome: str) -> str:
    """The threshold rule a model of this outcome gets when none is asked for."""
    return "utility" if outcome == "sepsis" else "alert_budget"


OPERATING_POINTS = ("alert_budget", "sensitivity", "utility")


def _threshold_rule(
    outcome: str, operating_point: str | None, alerts_per_100_patient_days: float | None, target_sensitivity: float | None
) -> tuple[str, float]:
    rule = operating_point
    if rule is None:
        if target_sensitivity is not None:
            rule = "sensitivity"
        elif alerts_per_100_patient_days is not None:
            rule = "alert_budget"
        else:
            rule = default_operating_point(outcome)
    if rule not in OPERATING_POINTS:
        raise ModelError(f"operating point must be one of {', '.join(OPERATING_POINTS)} (got {rule!r})")
    if rule == "utility" and outcome != "sepsis":
        raise ModelError("--operating-point utility maximises the PhysioNet 2019 sepsis utility: it needs --outcome sepsis")
    if rule == "sensitivity":
        if target_sensitivity is None:
            raise ModelError("--operating-point sensitivity needs --target-sensitivity")
        return rule, target_sensitivity
    if rule == "alert_budget":
        return rule, alerts_per_100_patient_days if alerts_per_100_patient_days is not None else DEFAULT_ALERT_BUDGET
    return rule, 0.0


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
    operating_point: str | None = None,
    families: Sequence[str] | None = None,
    keep_after_event: bool | None = None,
    test_fraction: float = 0.2,
    temporal: bool = False,
    search: bool = False,
    ablations: bool = True,
    n_boot: int = 200,
    promote: bool | None = None,
    reports_dir: Path | None = None,
    seed: int = 0,
    negative_fraction: float = 1.0,
    external_memory: bool | str = AUTO,
    memory_budget_gib: float = DEFAULT_MEMORY_BUDGET_GIB,
    dask: str | None = None,
    store: FeatureStore | None = None,
    database: SQLEngine | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> TrainResult:
    """Refresh the feature store, train on most patients, evaluate on held-out patients, register.

    The operating point is chosen on the model's own calibration patients: by the PhysioNet
    utility for sepsis, else from an alert budget (default DEFAULT_ALERT_BUDGET) or, when
    given, a target sensitivity (`operating_point` names the rule outright). The first model
    becomes champion; later ones only when `promote` is True. Training and evaluation read
    the store shard by shard (`dask`: train on a Dask cluster instead, see riskcast.model.distributed).
    With `database` (the riskcast store), its models table is brought in line with the
    registry once the version is registered (riskcast.pipeline.store_sync.sync_models).
    """
    families = tuple(families) if families is not None else DEFAULT_FAMILIES
    progress("refreshing the feature store")
    generation = fresh_generation(lake, store, progress=progress)
    features = columns_of(generation.features, families)
    labels = LabelSource(lake, batches=generation.batches)
    labelling = default_labelling(outcome, horizon_hours)
    if keep_after_event is not None:
        labelling = Labelling(outcome, horizon_hours, keep_after_event)
    held_out = held_out_patients(patient_first_seen(generation), test_fraction=test_fraction, temporal=temporal, seed=seed)
    train = StoreDataset(generation, labels, labelling, features=features, exclude=held_out)
    rule, target = _threshold_rule(outcome, operating_point, alerts_per_100_patient_days, target_sensitivity)
    if rule == "utility" and not labelling.keep_after_event:
        raise ModelError("the utility operating point scores every hour: train sepsis with the hours after onset kept")
    model = RiskModel(
        engine=engine, device=device, threshold_rule=rule, threshold_target=target, random_state=seed,
        negative_fraction=negative_fraction, external_memory=external_memory, memory_budget_gib=memory_budget_gib,
        cache_dir=str(generation.folder), dask_address=dask, **TRAINING_DEFAULTS,
    )
    progress(f"training {engine} on the store's {generation.n_shards} shard(s), {len(features)} features "
             f"({', '.join(families)}; {rule}{'' if rule == 'utility' else f' {target:g}'})")
    if search:
        model.search(train)
    model.fit(train, progress=progress)
    n_rows, n_patients = model.fingerprint_.rows, model.fingerprint_.patients
    calibration_rows = train.rows_at(model.threshold_rows_, columns=_baseline_sources(generation.features))
    train.release()
    promise = make_promise(evaluation_frame(calibration_rows, model.threshold_risk_), threshold=model.threshold_,
                           utility=model.operating_point_.achieved if rule == "utility" else None)
    ablation_models: dict[str, RiskModel] = {}
    if ablations:
        progress("refitting ablations: clock only, physiology only (without measurement-process features)")
        ablation_models = fit_ablations(train, features, engine=engine, device=device, seed=seed)
    progress(f"evaluating on {len(held_out):,} held-out patients")
    test = StoreDataset(generation, labels, labelling.for_evaluation(), features=features, patients=held_out)
    scored, sample = score_dataset(test, model, ablation_models, sample_rows=2000, seed=seed)
    baselines = baselines_of(scored) | ablation_thresholds(scored, ablation_models, threshold=model.threshold_)
    report = evaluate(scored, threshold=model.threshold_, baselines=baselines, n_boot=n_boot, seed=seed, outcome=outcome)
    promise_check = check_promise(promise, report)
    importance = global_importance(model.contributions(sample), features)
    metadata = {
        "intended_use": INTENDED_USE,
        "data": {
            "outcome": outcome,
            "horizon_hours": horizon_hours,
            "rows": n_rows + scored.height,
            "patients": n_patients + scored["patient_id"].n_unique(),
            "test_patients": len(held_out),
            "split": "temporal" if temporal else "random by patient",
            "lake_batches": list(generation.batches),
            "labels": labelling.to_dict(),
            "feature_families": list(families),
            "feature_store": generation.folder.name,
            "negative_fraction": negative_fraction,
            "trained_on": f"dask cluster {dask}" if dask else "this machine, shard by shard",
        },
        "operating_point": {"rule": rule, "why": OPERATING_POINT_PROMISES[rule]},
        "metrics": report.to_dict(),
        "promise": promise,
        "promise_check_held_out": promise_check,
        "limits": LIMITS,
        "top_variables": importance.filter(pl.col("level") == "variable").head(10).select("name", "mean_abs_contribution").to_dicts(),
        "outcome": outcome,
        "horizon_hours": horizon_hours,
    }
    # Everything of the version goes into its stage, published whole when the block ends.
    reports = ReportStore(registry, reports_dir)
    with registry.staging(model, metadata=metadata, now=now) as stage:
        # Pseudonymous ids only: lets `riskcast evaluate` re-check the same held-out patients later.
        reports.write_held_out_patients(stage, held_out)
        reports.write_promise(stage, promise)
        for name, ablation in ablation_models.items():
            save_model(ablation, stage.path / ABLATIONS_DIR / name.replace(" ", "_"), metadata={"ablation": name})
    version = stage.version
    should_promote = promote if promote is not None else registry.champion() is None
    if should_promote:
        registry.promote(version, by="riskcast train", reason="first model" if registry.champion() is None else "--promote", now=now)
    if database is not None:
        sync_models(registry, database)
    paths: dict[str, str] = {}
    if reports_dir is not None:
        tradeoff = {
            "model": tradeoff_curve(scored),
            "news2": [
                {"threshold": t} | alert_metrics(scored, threshold=t, score="NEWS2").to_dict()
                for t in (3.0, 5.0, 7.0)
                if "NEWS2" in scored.columns
            ],
        }
        reports.write_tradeoff(version, TradeoffCurve.from_dict(tradeoff))
        # The export of what the version's card holds (the source of truth), for people.
        paths = reports.export_evaluation(
            version, HeldOutEvaluation(report, PromiseCheck.from_dict(promise_check)),
            markdown=f"# Evaluation of {version}\n\n" + promise_markdown(promise_check) + report.to_markdown(),
        )
    return TrainResult(
        version=version,
        promoted=should_promote,
        report=report,
        promise_check=promise_check,
        n_rows=n_rows + scored.height,
        n_patients=n_patients + scored["patient_id"].n_unique(),
        n_test_patients=len(held_out),
        device=model.device_,
        n_test_events=int(scored.filter(pl.col("label") == 1)["encounter_id"].n_unique()),
        report_paths=paths,
    )
