"""Score every admitted encounter at an hour: calibrated risk, top drivers, into the store.

An encounter whose essential vitals are missing or older than the catalogue's
stale-after interval gets the status ScoreStatus.INSUFFICIENT_DATA and no risk: missing data is
never shown as low risk. A run is recorded in the store; scoring the same hour again
writes nothing new (the store's unique key on model version, encounter and hour), unless
observations charted in that hour arrived since: then the hour's score is revised.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import polars as pl

from riskcast.admission import admitted_at
from riskcast.alerts.policy import PolicySet, load_policy
from riskcast.alerts.state import process_scores, resolve_departed
from riskcast.catalog import Catalog, load_catalog
from riskcast.errors import LakeError
from riskcast.explain import drivers_frame, top_drivers
from riskcast.features.build import latest_features
from riskcast.features.families import FAMILIES
from riskcast.lake import Lake
from riskcast.model import ModelRegistry, RiskModel
from riskcast.score_status import ScoreStatus
from riskcast.store import fail_unfinished_runs, finish_run, start_run, write_scores
from riskcast.store.records import run_holder

MIN_DRIVER_CONTRIBUTION = 0.01  # log-odds; smaller pushes are noise, not reasons


@dataclass(frozen=True)
class ScoreSummary:
    """What one scoring run did."""

    run_id: int | None
    at: datetime
    model_version: str
    admitted: int
    scored: int
    insufficient_data: int
    flagged: int
    written: int
    threshold: float
    alerts: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts,
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "model_version": self.model_version,
            "admitted": self.admitted,
            "scored": self.scored,
            "insufficient_data": self.insufficient_data,
            "flagged": self.flagged,
            "written": self.written,
            "threshold": self.threshold,
        }


def admitted_encounters(encounters: pl.LazyFrame, *, at: datetime) -> pl.DataFrame:
    """encounter_id, patient_id, ward, site of the encounters to score at `at`: those in
    hospital then (riskcast.admission.admitted_at)."""
    return admitted_at(encounters, at=at).select("encounter_id", "patient_id", "ward", "site").collect()


def staleness(latest: pl.DataFrame, *, catalog: Catalog) -> pl.Series:
    """Per row, the essential vitals that are missing or stale, comma separated in catalogue
    order ("" when all are fresh). `{name}_hours_since` null means never charted (a missing
    feed); above the catalogue's stale_after_hours means stale; exactly at it is still fresh."""
    parts = []
    for name in catalog.essential:
        variable = catalog[name]
        hours = pl.col(f"{name}_hours_since")
        stale = hours.is_null() | (hours > variable.stale_after_hours)
        parts.append(pl.when(stale).then(pl.lit(name)))
    return latest.select(pl.concat_str(parts, separator=",", ignore_nulls=True).fill_null("").alias("missing"))["missing"]


def score_latest(
    features: pl.DataFrame, model: RiskModel, *, catalog: Catalog | None = None, k_drivers: int = 3
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scores and drivers for feature rows (one per encounter): pure, no store.

    Returns scores (encounter_id, scored_at, risk, status, missing) and drivers
    (encounter_id, scored_at, rank, variable, feature, text, contribution, value).
    """
    catalog = catalog or load_catalog()
    missing = staleness(features, catalog=catalog)
    sufficient = (missing == "").to_numpy()
    names = list(model.feature_names_in_)
    risk = np.full(features.height, np.nan)
    keys = features.select("encounter_id", pl.col("time").alias("scored_at"))
    drivers = drivers_frame(keys.head(0), [])
    if sufficient.any():
        usable = features.filter(pl.Series(sufficient))
        X = usable.select(names).to_pandas()
        risk[sufficient] = model.predict_proba(X)[:, 1]
        contributions = model.contributions(X)
        ranked = top_drivers(contributions, usable, names, k=k_drivers, min_abs=MIN_DRIVER_CONTRIBUTION)
        drivers = drivers_frame(usable.select("encounter_id", pl.col("time").alias("scored_at")), ranked)
    scores = keys.with_columns(
        pl.Series("risk", risk).fill_nan(None),
        pl.Series("status", np.where(sufficient, ScoreStatus.SCORED, ScoreStatus.INSUFFICIENT_DATA)),
        missing.alias("missing"),
    )
    return scores, drivers


def score_hour(
    admitted: pl.DataFrame,
    latest: pl.DataFrame,
    model: RiskModel,
    *,
    at: datetime,
    catalog: Catalog | None = None,
    k_drivers: int = 3,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scores and drivers for every encounter in `admitted` at the hour `at`: pure, no store.

    `latest` holds the encounters' feature rows at `at` (one per encounter that has one), as
    score_latest takes them. An admitted encounter without a row was admitted within the
    hour and nothing has been measured yet: it gets ScoreStatus.INSUFFICIENT_DATA, no risk,
    and every essential vital named as missing, never a risk the model made up from nothing.
    Returns score_latest's two frames, the encounters without a row appended to the scores.
    """
    catalog = catalog or load_catalog()
    no_row = admitted.join(latest.select("encounter_id"), on="encounter_id", how="anti")
    scores, drivers = score_latest(latest, model, catalog=catalog, k_drivers=k_drivers)
    if no_row.height:  # admitted within the last hour: no feature row yet, nothing measured
        scores = pl.concat([
            scores,
            no_row.select(
                "encounter_id",
                pl.lit(at).cast(scores.schema["scored_at"]).alias("scored_at"),
                pl.lit(None, dtype=pl.Float64).alias("risk"),
                pl.lit(ScoreStatus.INSUFFICIENT_DATA).alias("status"),
                pl.lit(",".join(catalog.essential)).alias("missing"),
            ),
        ])
    return scores, drivers


def observations_seen(observations: pl.LazyFrame, *, at: datetime, encounter_ids: pl.Series) -> pl.DataFrame:
    """encounter_id, observations: how many observations of each encounter were charted at
    or before `at` — what a score of the hour saw. A later count that is higher means late
    data arrived for the hour, and the hour's score is revised (riskcast.store.write_scores)."""
    return (
        observations.filter(pl.col("encounter_id").is_in(encounter_ids.implode()) & (pl.col("charttime") <= at))
        .group_by("encounter_id")
        .agg(pl.len().cast(pl.Int64).alias("observations"))
        .collect()
    )


def score_admitted(
    lake: Lake,
    registry: ModelRegistry,
    engine: Any,
    *,
    at: datetime,
    now: datetime,
    model_version: str | None = None,
    policy_set: PolicySet | None = None,
) -> ScoreSummary:
    """Score every encounter admitted at the hour `at` (truncated to the hour) and store it.

    Scores of the champion then go through the alert policy (riskcast.alerts): new alerts,
    re-alerts, stale-data alerts and escalations are written in the same run, and the open
    alerts of patients no longer admitted at the hour are resolved.
    """
    if lake.is_empty():
        raise LakeError(f"the lake at {lake.root} is empty: run `riskcast ingest PATH` first")
    if at.tzinfo is None:
        raise ValueError(f"at must be timezone-aware, got {at.isoformat()}")
    at = at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    version = model_version or registry.champion()
    model = registry.load(version)
    version = version or registry.champion()
    run_id = start_run(engine, "score", details={"at": at.isoformat(), **run_holder()}, scheduled_for=at,
                       model_version=version, now=now)
    try:
        fail_unfinished_runs(
            engine, "score", scheduled_for=at, model_version=version, now=now, except_id=run_id,
            error=f"did not finish (its process is gone, or it started over 6 h ago on another host); "
                  f"run {run_id} scored the hour again",
        )
        admitted = admitted_encounters(lake.scan("encounters"), at=at)
        is_champion = version == registry.champion()  # challengers are scored in shadow: no alerts
        if admitted.height == 0:
            departed = resolve_departed(engine, admitted=(), at=at, now=now) if is_champion else []
            finish_run(engine, run_id, status="succeeded", details={"admitted": 0, "departed_resolved": len(departed)},
                       now=now)
            return ScoreSummary(run_id, at, version, 0, 0, 0, 0, 0, float(model.threshold_))
        # One listing of the lake's files for both the features and the count of what they saw.
        observations = lake.scan("observations")
        latest = latest_features(
            observations, lake.scan("encounters"), lake.scan("patients"),
            at=at, encounter_ids=admitted["encounter_id"].to_list(), families=FAMILIES,
        )
        scores, drivers = score_hour(admitted, latest, model, at=at)
        seen = observations_seen(observations, at=at, encounter_ids=admitted["encounter_id"])
        scores = (
            scores.join(admitted, on="encounter_id", how="left")
            .join(seen, on="encounter_id", how="left")
            .with_columns(pl.col("observations").fill_null(0))
        )
        written = write_scores(engine, run_id, version, scores, drivers, now=now)
        n_scored = int((scores["status"] == ScoreStatus.SCORED).sum())
        flagged = int((scores["risk"].fill_null(0.0) >= model.threshold_).sum())
        alerts = None
        if is_champion:
            processed = process_scores(
                engine,
                scores.with_columns(pl.lit(version).alias("model_version")),
                policy_set=policy_set or load_policy(),
                model_threshold=float(model.threshold_),
                now=now,
            )
            departed = resolve_departed(engine, admitted=admitted["encounter_id"].to_list(), at=at, now=now)
            alerts = {**dataclasses.asdict(processed), "departed_resolved": len(departed)}
        summary = ScoreSummary(
            run_id, at, version, admitted.height, n_scored, scores.height - n_scored, flagged, written,
            float(model.threshold_), alerts,
        )
        finish_run(engine, run_id, status="succeeded", details=summary.to_dict(), now=now)
        return summary
    except Exception as exc:
        finish_run(engine, run_id, status="failed", error=f"{type(exc).__name__}: {exc}", now=now)
        raise
