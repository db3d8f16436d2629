"""Retrospective scoring and external validation of a registered model.

Another site's data is ingested into a scratch workspace under the riskcast home
(`scratch/<content hash>`), never into the live lake, so validating elsewhere cannot
change what the live system scores.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from riskcast.catalog import load_catalog
from riskcast.config import Settings
from riskcast.errors import ModelError
from riskcast.evaluate import EvaluationReport, evaluate
from riskcast.features.build import build_features
from riskcast.ingest import content_hash
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.scoring import staleness
from riskcast.pipeline.training import (
    HELD_OUT_FILE,
    PROMISE_FILE,
    baselines_of,
    check_promise,
    evaluation_frame,
    feature_matrix,
    load_ablations,
    with_ablations,
)


def model_outcome(registry: ModelRegistry, version: str) -> tuple[str, float]:
    """The outcome and horizon a registered model was trained for."""
    card = registry.read_json(version, "model_card.json") or {}
    other = card.get("other", {})
    return str(other.get("outcome", "deterioration")), float(other.get("horizon_hours", 12.0))


def scratch_lake(settings: Settings, data_path: Path, *, now: datetime, progress: Callable[[str], None]) -> Lake:
    """A lake holding only `data_path`, reused when the same content is validated again."""
    if not Path(data_path).exists():
        raise ModelError(f"{data_path}: no such file or folder to validate on")
    lake = Lake(settings.home / "scratch" / content_hash(Path(data_path))[:16])
    progress(f"ingesting {data_path} into the scratch workspace {lake.root}")
    summary, _ = ingest_paths([Path(data_path)], lake=lake, now=now, source_timezone=settings.source_timezone)
    if summary.batch_id and summary.total_quarantined:
        progress(f"{summary.total_quarantined:,} rows quarantined in the scratch workspace (see its lake)")
    return lake


def _resolve_version(registry: ModelRegistry, model_version: str | None) -> str:
    version = model_version or registry.champion()
    if version is None:
        registry.load()  # raises the "no champion yet" message
    return str(version)


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
    """Evaluate a model on its held-out patients (data_path None) or on another site's data."""
    version = _resolve_version(registry, model_version)
    model = registry.load(version)
    trained_outcome, trained_horizon = model_outcome(registry, version)
    outcome = outcome or trained_outcome
    horizon_hours = horizon_hours or trained_horizon
    if data_path is None:
        lake, where = Lake(settings.lake_dir), "held-out patients of the training data"
    else:
        lake, where = scratch_lake(settings, data_path, now=now, progress=progress), str(data_path)
    progress(f"building features and {outcome} labels ({horizon_hours:g} h horizon)")
    # For sepsis the PhysioNet challenge scores every hour, after onset too.
    frame = feature_matrix(lake, outcome=outcome, horizon_hours=horizon_hours, keep_after_event=outcome == "sepsis")
    frame = frame.filter(pl.col("label").is_not_null())
    if data_path is None:
        held_out = registry.read_json(version, HELD_OUT_FILE)
        if held_out is None:
            raise ModelError(f"{version} has no record of its held-out patients; evaluate it with --data")
        frame = frame.filter(pl.col("patient_id").is_in(pl.Series(held_out, dtype=pl.String).implode()))
    progress(f"scoring {frame.height:,} encounter-hours of {frame['patient_id'].n_unique():,} patients")
    risk = model.predict_proba(frame.select(list(model.feature_names_in_)).to_pandas())[:, 1]
    scored = evaluation_frame(frame, risk)
    ablations = load_ablations(registry.path_of(version))
    baselines = baselines_of(scored) | with_ablations(scored, frame, ablations, threshold=model.threshold_)
    report = evaluate(scored, threshold=model.threshold_, baselines=baselines, n_boot=n_boot, outcome=outcome)
    promise = registry.read_json(version, PROMISE_FILE)
    promise_check = check_promise(promise, report) if promise is not None else None
    meta = {
        "model_version": version,
        "promise_check": promise_check,
        "data": where,
        "outcome": outcome,
        "horizon_hours": horizon_hours,
        "rows": frame.height,
        "patients": frame["patient_id"].n_unique(),
    }
    return report, meta


def predict_dataset(
    settings: Settings,
    registry: ModelRegistry,
    *,
    data_path: Path,
    now: datetime,
    model_version: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """encounter_id, time, risk, flagged (at the model's threshold), data_status for every hour.

    data_status is "insufficient_data" where the essential vitals are missing or stale
    at that hour: the risk is still given for outside scorers, but should not be read
    as reassurance.
    """
    version = _resolve_version(registry, model_version)
    model = registry.load(version)
    lake = scratch_lake(settings, data_path, now=now, progress=progress)
    progress("building features")
    features = build_features(lake.scan("observations"), lake.scan("encounters"), lake.scan("patients"))
    progress(f"scoring {features.height:,} encounter-hours")
    risk = model.predict_proba(features.select(list(model.feature_names_in_)).to_pandas())[:, 1]
    missing = staleness(features, catalog=load_catalog())
    predictions = features.select("encounter_id", "time").with_columns(
        pl.Series("risk", risk),
        pl.Series("flagged", risk >= model.threshold_),
        pl.when(missing == "").then(pl.lit("scored")).otherwise(pl.lit("insufficient_data")).alias("data_status"),
    )
    meta = {"model_version": version, "data": str(data_path), "threshold": model.threshold_,
            "flagged": int(predictions["flagged"].sum())}
    return predictions, meta
