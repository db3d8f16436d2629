"""Training data from the lake: the feature matrix with labels, ready for a model."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from riskcast.errors import LakeError
from riskcast.features.build import build_features
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
    return frame
