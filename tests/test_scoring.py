"""riskcast.pipeline.scoring, the headline rule: stale or missing vitals are insufficient data,
never low risk.

Small feature frames built in each test, scored by a stand-in model that would call every
row it sees reassuring (1%): a stale or missing vital must stop a row before the model is
asked, so the score carries no risk at all, never the model's 1%. Limits come from the
variable catalogue (schemas/variables.yaml), not from this file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest

from riskcast.catalog import load_catalog
from riskcast.pipeline.scoring import score_hour, score_latest, staleness
from riskcast.score_status import ScoreStatus

AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CATALOG = load_catalog()
ESSENTIAL = CATALOG.essential
FRESH_HOURS = 0.5
REASSURING_RISK = 0.01


class ReassuringModel:
    """Stands in for RiskModel: every row it is asked about is low risk, with no drivers.
    `asked` keeps the heart rates of the rows it saw, to show which rows reached it."""

    def __init__(self) -> None:
        self.feature_names_in_ = [f"{name}_last" for name in ESSENTIAL]
        self.threshold_ = 0.5
        self.asked: list[float] = []

    def predict_proba(self, X: Any) -> np.ndarray:
        self.asked.extend(X["heart_rate_last"].tolist())
        return np.column_stack([np.full(len(X), 1 - REASSURING_RISK), np.full(len(X), REASSURING_RISK)])

    def contributions(self, X: Any) -> np.ndarray:
        return np.zeros((len(X), len(self.feature_names_in_)))


def limit(name: str) -> float:
    return CATALOG[name].stale_after_hours


def features(**hours_since: dict[str, float | None]) -> pl.DataFrame:
    """One feature row per encounter: every essential vital charted FRESH_HOURS ago unless the
    encounter's dict says otherwise (None: never charted). heart_rate_last is the row's
    position, so the model's `asked` says which rows reached it."""
    rows = []
    for position, (encounter_id, ages) in enumerate(hours_since.items()):
        row: dict[str, Any] = {"encounter_id": encounter_id, "time": AT}
        for name in ESSENTIAL:
            row[f"{name}_last"] = float(position) if name == "heart_rate" else 1.0
            row[f"{name}_hours_since"] = ages.get(name, FRESH_HOURS)
        rows.append(row)
    schema = {"encounter_id": pl.String, "time": pl.Datetime("us", "UTC")}
    schema |= {f"{name}_{part}": pl.Float64 for name in ESSENTIAL for part in ("last", "hours_since")}
    return pl.DataFrame(rows, schema=schema)


def scored(frame: pl.DataFrame) -> tuple[dict[str, dict[str, Any]], ReassuringModel]:
    model = ReassuringModel()
    scores, _drivers = score_latest(frame, model, catalog=CATALOG)
    return {row["encounter_id"]: row for row in scores.iter_rows(named=True)}, model


def test_stale_vitals_are_insufficient_data_not_low_risk() -> None:
    rows, model = scored(features(E1={"resp_rate": limit("resp_rate") + 1}))
    assert rows["E1"]["status"] == ScoreStatus.INSUFFICIENT_DATA
    assert rows["E1"]["risk"] is None  # not the model's reassuring 1%
    assert rows["E1"]["missing"] == "resp_rate"
    assert model.asked == []


def test_fresh_vitals_are_scored_with_the_models_risk() -> None:
    rows, model = scored(features(E1={}))
    assert rows["E1"]["status"] == ScoreStatus.SCORED
    assert rows["E1"]["risk"] == pytest.approx(REASSURING_RISK)
    assert rows["E1"]["missing"] == ""
    assert model.asked == [0.0]


def test_a_vital_exactly_at_its_stale_limit_is_fresh_and_a_minute_past_it_is_stale() -> None:
    at_limit = limit("heart_rate")
    rows, model = scored(features(AT_LIMIT={"heart_rate": at_limit}, PAST={"heart_rate": at_limit + 1 / 60}))
    assert rows["AT_LIMIT"]["status"] == ScoreStatus.SCORED
    assert rows["PAST"]["status"] == ScoreStatus.INSUFFICIENT_DATA and rows["PAST"]["risk"] is None
    assert model.asked == [0.0]


def test_a_missing_feed_is_insufficient_data() -> None:
    rows, model = scored(features(E1={"spo2": None}))
    assert rows["E1"]["status"] == ScoreStatus.INSUFFICIENT_DATA
    assert rows["E1"]["risk"] is None and rows["E1"]["missing"] == "spo2"
    assert model.asked == []


def test_one_patients_stale_vitals_do_not_change_anothers_score() -> None:
    rows, model = scored(features(FRESH={}, STALE={"sbp": limit("sbp") + 5}, SILENT={"temperature": None}))
    assert {e: r["status"] for e, r in rows.items()} == {
        "FRESH": ScoreStatus.SCORED, "STALE": ScoreStatus.INSUFFICIENT_DATA, "SILENT": ScoreStatus.INSUFFICIENT_DATA,
    }  # fmt: skip
    assert rows["FRESH"]["risk"] == pytest.approx(REASSURING_RISK)
    assert model.asked == [0.0]


def test_staleness_names_every_stale_or_missing_vital_in_catalogue_order() -> None:
    first, last = ESSENTIAL[0], ESSENTIAL[-1]
    frame = features(E1={last: None, first: limit(first) + 1}, E2={})
    assert staleness(frame, catalog=CATALOG).to_list() == [f"{first},{last}", ""]


def test_an_encounter_admitted_within_the_hour_has_no_features_and_is_insufficient_data() -> None:
    admitted = pl.DataFrame({"encounter_id": ["E1", "NEW"]})
    model = ReassuringModel()
    scores, _drivers = score_hour(admitted, features(E1={}), model, at=AT, catalog=CATALOG)
    rows = {row["encounter_id"]: row for row in scores.iter_rows(named=True)}
    assert rows["NEW"]["status"] == ScoreStatus.INSUFFICIENT_DATA
    assert rows["NEW"]["risk"] is None and rows["NEW"]["scored_at"] == AT
    assert rows["NEW"]["missing"] == ",".join(ESSENTIAL)
    assert rows["E1"]["status"] == ScoreStatus.SCORED and model.asked == [0.0]
