"""Retrospective scoring, external validation and recalibration of a registered model.

Another site's data is ingested into a scratch workspace under the riskcast home
(`scratch/<content hash>/lake`, with its own feature store beside it), never into the live
lake, so validating elsewhere cannot change what the live system scores.

When the source has rows of its own (PhysioNet 2019 files: one per `.psv` line), predictions
are made for exactly those rows, keyed by the file and its ICULOS, in the files' order, and
evaluation scores exactly those rows, as the challenge's own scorer does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskcast.catalog import load_catalog
from riskcast.config import Settings
from riskcast.errors import ModelError
from riskcast.evaluate import EvaluationReport, evaluate
from riskcast.features.families import FAMILIES
from riskcast.ingest import content_hash, discover
from riskcast.ingest.physionet import physionet_rows
from riskcast.lake import Lake
from riskcast.model import ModelRegistry, RiskModel
from riskcast.model.calibration import fit_calibrator
from riskcast.model.operating_point import threshold_for_alert_budget, threshold_for_sensitivity, threshold_for_utility
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.scoring import staleness
from riskcast.pipeline.reports import ReportStore
from riskcast.pipeline.training import (
    ablation_thresholds,
    baselines_of,
    check_promise,
    load_ablations,
    make_promise,
    score_dataset,
)
from riskcast.pipeline.training_data import LabelSource, Labelling, StoreDataset, fresh_generation
from riskcast.score_status import ScoreStatus
from riskcast.utility import row_utilities

PREDICTION_COLUMNS = ["encounter_id", "time", "risk", "flagged", "data_status"]
ROW_KEY_COLUMNS = ["source_file", "file_name", "line", "iculos"]


def model_outcome(registry: ModelRegistry, version: str) -> tuple[str, float]:
    """The outcome and horizon a registered model was trained for (its model card's; a card
    that names neither is a deterioration model with a 12-hour horizon)."""
    card = ReportStore(registry).require_model_card(version)
    return card.outcome or "deterioration", 12.0 if card.horizon_hours is None else card.horizon_hours


def scratch_lake(settings: Settings, data_path: Path, *, now: datetime, progress: Callable[[str], None]) -> Lake:
    """A lake holding only `data_path` (its feature store beside it), reused when the same
    content is validated again."""
    if not Path(data_path).exists():
        raise ModelError(f"{data_path}: no such file or folder to validate on")
    lake = Lake(settings.home / "scratch" / content_hash(Path(data_path))[:16] / "lake")
    progress(f"ingesting {data_path} into the scratch workspace {lake.root.parent}")
    summary, _ = ingest_paths([Path(data_path)], lake=lake, now=now, source_timezone=settings.source_timezone)
    if summary.batch_id and summary.total_quarantined:
        progress(f"{summary.total_quarantined:,} rows quarantined in the scratch workspace (see its lake)")
    return lake


def source_rows(data_path: Path) -> pl.DataFrame | None:
    """The source's own rows when it has them (PhysioNet files), else None."""
    sources = discover([Path(data_path)]).sources
    if sources and all(s.format == "physionet" for s in sources):
        return pl.concat([physionet_rows(s.path) for s in sources]).rename({"_source_file": "source_file"})
    return None


def _resolve_version(registry: ModelRegistry, model_version: str | None) -> str:
    version = model_version or registry.champion()
    if version is None:
        registry.load()  # raises the "no champion yet" message
    return str(version)


def _features_and_labels(lake: Lake, progress: Callable[[str], None]) -> tuple[Any, LabelSource]:
    generation = fresh_generation(lake, families=FAMILIES, progress=progress)
    return generation, LabelSource(lake, batches=generation.batches)


def evaluate_model(
    settings: Settings,
    registry: ModelRegistry,
    *,
    data_path: Path | None,
    now: datetime,
    model_version: str | None = None,
    outcome: str | None = None,
    horizon_hours: float | None = None,
    n_boot: int = 200,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[EvaluationReport, dict[str, Any]]:
    """Evaluate a model on its held-out patients (data_path None) or on another site's data.

    At another site the meta also says how the model's calibration and operating point
    transport: calibration-in-the-large, the alert rate and flag rate the site would see at
    the model's threshold, and whether the promise made on the calibration patients holds.
    """
    version = _resolve_version(registry, model_version)
    model = registry.load(version)
    trained_outcome, trained_horizon = model_outcome(registry, version)
    outcome = outcome or trained_outcome
    horizon_hours = horizon_hours or trained_horizon
    if data_path is None:
        lake, where = Lake(settings.lake_dir), "held-out patients of the training data"
    else:
        lake, where = scratch_lake(settings, data_path, now=now, progress=progress), str(data_path)
    progress(f"refreshing features and {outcome} labels ({horizon_hours:g} h horizon)")
    generation, labels = _features_and_labels(lake, progress)
    patients = None
    if data_path is None:
        held_out = ReportStore(registry).held_out_patients(version)
        if held_out is None:
            raise ModelError(f"{version} has no record of its held-out patients; evaluate it with --data")
        patients = held_out
    rows = source_rows(data_path) if data_path is not None else None
    labelling = Labelling(outcome, horizon_hours).for_evaluation()
    data = StoreDataset(generation, labels, labelling, features=list(model.feature_names_in_), patients=patients,
                        only_rows=None if rows is None else rows.select("encounter_id", "time"))
    ablations = load_ablations(registry.path_of(version))
    progress(f"scoring {'the source rows' if rows is not None else 'every labelled hour'} shard by shard")
    scored, _ = score_dataset(data, model, ablations)
    baselines = baselines_of(scored) | ablation_thresholds(scored, ablations, threshold=model.threshold_)
    report = evaluate(scored, threshold=model.threshold_, baselines=baselines, n_boot=n_boot, outcome=outcome)
    promise = ReportStore(registry).promise(version)
    promise_check = check_promise(promise, report) if promise is not None else None
    meta = {
        "model_version": version,
        "promise_check": promise_check,
        "data": where,
        "outcome": outcome,
        "horizon_hours": horizon_hours,
        "rows": scored.height,
        "patients": scored["patient_id"].n_unique(),
        "transport": transport_summary(report, threshold=model.threshold_),
    }
    return report, meta


def transport_summary(report: EvaluationReport, *, threshold: float) -> dict[str, Any]:
    """How the model's probabilities and threshold behave on these rows."""
    data = report.to_dict()
    calibration, point = data["calibration"], data["operating_point"]
    return {
        "calibration_in_the_large": calibration["calibration_in_the_large"],
        "mean_predicted": calibration["mean_predicted"],
        "observed_rate": calibration["observed_rate"],
        "threshold": threshold,
        "alerts_per_100_patient_days": point["alerts_per_100_patient_days"],
        "flag_rate": point.get("flag_rate"),
        "utility": None if data.get("utility") is None else data["utility"].get(report.score),
    }


def predict_dataset(
    settings: Settings,
    registry: ModelRegistry,
    *,
    data_path: Path,
    now: datetime,
    model_version: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A risk for every hour of another dataset, at the model's threshold.

    Columns: encounter_id, time, risk, flagged, data_status; for sources with rows of their
    own (PhysioNet files) also source_file, file_name, line and iculos, with exactly one
    prediction per source row in the files' order. data_status is ScoreStatus.INSUFFICIENT_DATA
    ("insufficient_data") where the essential vitals are missing or stale at that hour: the
    risk is still given for outside scorers, but must not be read as reassurance;
    "unreadable_row" marks a source row whose time could not be read (no features, so no risk).
    """
    version = _resolve_version(registry, model_version)
    model = registry.load(version)
    rows = source_rows(data_path)
    lake = scratch_lake(settings, data_path, now=now, progress=progress)
    generation, _ = _features_and_labels(lake, progress)
    progress(f"scoring {generation.rows:,} encounter-hours shard by shard")
    predictions = pl.concat([
        _predict_shard(frame, model) for frame in generation.iter_shards(_prediction_columns(model))
    ])
    if rows is not None:
        predictions = rows.join(predictions, on=["encounter_id", "time"], how="left", maintain_order="left").select(
            *ROW_KEY_COLUMNS, *PREDICTION_COLUMNS
        ).with_columns(pl.col("data_status").fill_null("unreadable_row"))
    meta = {"model_version": version, "data": str(data_path), "threshold": model.threshold_,
            "flagged": int(predictions["flagged"].fill_null(False).sum()),
            "unreadable_rows": int((predictions["data_status"] == "unreadable_row").sum()),
            "source_rows": None if rows is None else rows.height}
    return predictions, meta


def _prediction_columns(model: RiskModel) -> list[str]:
    essential = [f"{name}_hours_since" for name in load_catalog().essential]
    return list(dict.fromkeys(["encounter_id", "time", *model.feature_names_in_, *essential]))


def _predict_shard(frame: pl.DataFrame, model: RiskModel) -> pl.DataFrame:
    risk = model.predict_proba(frame.select(list(model.feature_names_in_)))[:, 1] if frame.height else np.zeros(0)
    missing = staleness(frame, catalog=load_catalog())
    return frame.select("encounter_id", "time").with_columns(
        pl.Series("risk", risk, dtype=pl.Float64),
        pl.Series("flagged", risk >= model.threshold_, dtype=pl.Boolean),
        pl.when(missing == "")
        .then(pl.lit(ScoreStatus.SCORED))
        .otherwise(pl.lit(ScoreStatus.INSUFFICIENT_DATA))
        .alias("data_status"),
    )


def write_physionet_predictions(predictions: pl.DataFrame, out_dir: Path) -> int:
    """One `.psv` per stay (named like its source file) with PredictedProbability|PredictedLabel,
    one line per source row, so the challenge's `evaluate_sepsis_score.py` reads it unchanged.

    A row without a risk (its line's ICULOS could not be read) repeats the stay's previous
    prediction, or 0 at the start: the format needs a number on every line. The folder is
    written beside `out_dir` and renamed into place, so it is never half written. Returns
    the number of files.
    """
    if "file_name" not in predictions.columns:
        raise ModelError("--format physionet needs PhysioNet 2019 files as --data (one .psv per stay)")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ModelError(f"{out_dir} already holds files; choose a new or empty folder for --format physionet")
    staging = out_dir.with_name(f".tmp-{out_dir.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    filled = predictions.with_columns(
        pl.col("risk").forward_fill().over("source_file").fill_null(0.0),
        pl.col("flagged").forward_fill().over("source_file").fill_null(False),
    )
    count = 0
    try:
        for (name,), part in filled.partition_by("source_file", as_dict=True, maintain_order=True).items():
            file_name = part["file_name"][0]
            lines = [f"{r:.12g}|{int(f)}" for r, f in zip(part["risk"].to_list(), part["flagged"].to_list(), strict=True)]
            (staging / file_name).write_text("PredictedProbability|PredictedLabel\n" + "\n".join(lines) + "\n")
            count += 1
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


def recalibrate_model(
    settings: Settings,
    registry: ModelRegistry,
    *,
    data_path: Path,
    now: datetime,
    model_version: str | None = None,
    first_patients: int | None = None,
    fraction: float = 0.3,
    method: str = "auto",
    by: str = "riskcast recalibrate",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Fit a new calibrator (and re-choose the threshold by the model's own rule) on a new
    site's first patients, and register the result as a new version: never applied silently.

    The booster is the model's own; only the mapping from margin to probability and the
    threshold change. "First" is by admission time, so the new site's later patients stay
    free to check it on. The new version's card records the data, the patients, the method
    and the calibration before and after; it is promoted only through the usual gates.
    """
    version = _resolve_version(registry, model_version)
    model = registry.load(version)
    outcome, horizon_hours = model_outcome(registry, version)
    lake = scratch_lake(settings, data_path, now=now, progress=progress)
    generation, labels = _features_and_labels(lake, progress)
    first_seen = generation.scan(["patient_id", "time"]).group_by("patient_id").agg(pl.col("time").min()).sort(
        "time", "patient_id").collect()
    n = first_patients or max(1, int(round(first_seen.height * fraction)))
    if n >= first_seen.height:
        raise ModelError(f"recalibrating on {n:,} of {first_seen.height:,} patients leaves none to check it on; "
                         "take fewer (--first-patients or --fraction)")
    chosen = first_seen.head(n)["patient_id"].to_list()
    rows = source_rows(data_path)
    labelling = Labelling(outcome, horizon_hours).for_evaluation()
    data = StoreDataset(generation, labels, labelling, features=list(model.feature_names_in_), patients=chosen,
                        only_rows=None if rows is None else rows.select("encounter_id", "time"))
    margins, frames = [], []
    for index in range(data.n_chunks):
        frame = data.rows(index)
        if frame.height:
            margins.append(model.predict_margin(frame.select(list(model.feature_names_in_))))
            frames.append(frame.select("encounter_id", "patient_id", "time", "label", "event_time", *(
                ["sepsis_label"] if "sepsis_label" in frame.columns else [])))
    if not frames:
        raise ModelError(f"the first {n:,} patients of {data_path} have no labelled hours to recalibrate on")
    margin, keys = np.concatenate(margins), pl.concat(frames)
    y = keys["label"].to_numpy().astype(np.int8)
    if y.sum() == 0:
        raise ModelError(f"the first {n:,} patients of {data_path} have no {outcome} events: nothing to calibrate on")
    before = float(np.mean(model.calibrator_.predict(margin)) - y.mean())
    recalibrated = model.calibration_method_ if method == "auto" else method
    if method == "auto":
        recalibrated = "isotonic" if y.sum() >= 1000 else "platt"
    calibrator = fit_calibrator(margin, y, method=recalibrated)
    risk = calibrator.predict(margin)
    rule = None if model.operating_point_ is None else model.operating_point_.rule
    point = model.operating_point_
    if rule == "utility":
        utilities = row_utilities(keys["sepsis_label"].to_numpy(), keys["encounter_id"].to_numpy())
        point = threshold_for_utility(risk, utilities)
    elif rule == "alert_budget" and point is not None and point.target is not None:
        point = threshold_for_alert_budget(risk, encounter_ids=keys["encounter_id"].to_numpy(),
                                           alerts_per_100_patient_days=point.target)
    elif rule == "sensitivity" and point is not None and point.target is not None:
        point = threshold_for_sensitivity(risk, y, target=point.target)
    new = _copy_with(model, calibrator, recalibrated, point)
    card = ReportStore(registry).require_model_card(version)
    record = {
        "from_version": version,
        "data": str(data_path),
        "patients": n,
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "chosen_as": "the site's first patients by admission time",
        "method": recalibrated,
        "calibration_in_the_large_before": before,
        "calibration_in_the_large_after": float(risk.mean() - y.mean()),
        "threshold_before": float(model.threshold_),
        "threshold_after": float(new.threshold_),
        "by": by,
        "at": now.isoformat(),
    }
    metadata = {
        "intended_use": card.intended_use,
        "data": card.data_description,
        "limits": card.limits,
        **card.other,
        "recalibration": record,
    }
    promise = make_promise(keys.with_columns(pl.Series("risk", risk)), threshold=new.threshold_,
                           utility=point.achieved if rule == "utility" and point is not None else None)
    with registry.staging(new, metadata=metadata, now=now) as stage:
        ReportStore.write_promise(stage, promise)
    new_version = stage.version
    return {"version": new_version, **record}


def _copy_with(model: RiskModel, calibrator: Any, method: str, point: Any) -> RiskModel:
    """A copy of a fitted model with another calibrator and operating point (same booster)."""
    new = RiskModel(**model.get_params())
    for name, value in vars(model).items():
        if name.endswith("_") and not name.startswith("_"):
            setattr(new, name, value)
    new.calibrator_ = calibrator
    new.calibration_method_ = method
    new.operating_point_ = point
    new.threshold_ = point.threshold if point is not None else model.threshold_
    return new


__all__ = [
    "evaluate_model",
    "model_outcome",
    "predict_dataset",
    "recalibrate_model",
    "source_rows",
    "transport_summary",
    "write_physionet_predictions",
]
