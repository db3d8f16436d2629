"""Alert burden, counted once: episodes, patient-days, alerts per 100 patient-days, the threshold for a budget."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from riskcast import alert_burden
from riskcast.evaluate import alert_metrics, threshold_at_alert_rate
from riskcast.model import alert_rate_at, threshold_for_alert_budget


def test_an_episode_starts_where_a_flag_turns_on_or_its_encounter_opens():
    flagged = np.array([0, 1, 1, 0, 1, 1, 1], dtype=bool)
    first_row = np.array([1, 0, 0, 0, 0, 1, 0], dtype=bool)  # encounter a: 5 rows, b: 2
    # a: on at row 1 (one episode through row 2), off, on again at row 4; b: on from its first row
    starts = alert_burden.episode_starts(flagged, first_row)
    assert starts.tolist() == [False, True, False, False, True, True, False]


def test_patient_days_are_rows_times_hours_over_24():
    assert alert_burden.patient_days(48) == 2.0
    assert alert_burden.patient_days(48, hours_per_row=4) == 8.0
    assert alert_burden.patient_days(np.array([24.0, 12.0])).tolist() == [1.0, 0.5]


def test_the_alert_rate_is_nan_without_exposure():
    assert alert_burden.alerts_per_100_patient_days(1, 2.0) == 50.0
    assert math.isnan(alert_burden.alerts_per_100_patient_days(0, 0.0))
    rates = alert_burden.alerts_per_100_patient_days(np.array([1.0, 0.0]), np.array([2.0, 0.0]))
    assert rates[0] == 50.0 and math.isnan(rates[1])


def test_rates_by_threshold_are_counted_for_every_distinct_score_at_once():
    # one encounter of 4 hourly rows = 1/6 patient-day, so one episode is 600 per 100 patient-days
    scores = np.array([0.8, 0.6, 0.7, 0.0])
    first_row = np.array([True, False, False, False])
    thresholds, rates = alert_burden.alert_rates_by_threshold(scores, first_row, patient_days=4 / 24)
    assert thresholds.tolist() == [0.0, 0.6, 0.7, 0.8]
    # >= 0.0: all on, 1 episode; >= 0.6: rows 0-2 on, 1; >= 0.7: on, off, on, 2; >= 0.8: 1
    assert rates == pytest.approx([600.0, 600.0, 1200.0, 600.0])


def test_the_budget_threshold_stops_before_the_first_breach_from_the_top():
    scores = np.array([0.8, 0.6, 0.7, 0.0])
    first_row = np.array([True, False, False, False])
    chosen = alert_burden.threshold_for_budget(scores, first_row, patient_days=4 / 24, alerts_per_100_patient_days=600)
    # 0.6 would also give 600, but 0.7 between it and the top gives 1200
    assert chosen == alert_burden.BudgetThreshold(threshold=0.8, alerts_per_100_patient_days=pytest.approx(600.0))


def test_a_budget_below_the_top_score_flags_nothing():
    scores = np.array([0.8, 0.6, 0.7, 0.0])
    first_row = np.array([True, False, False, False])
    chosen = alert_burden.threshold_for_budget(scores, first_row, patient_days=4 / 24, alerts_per_100_patient_days=100)
    assert chosen.threshold > 0.8 and chosen.alerts_per_100_patient_days == 0.0


def test_a_nan_score_never_flags():
    scores = np.array([np.nan, 0.9, np.nan])
    first_row = np.array([True, False, False])
    thresholds, rates = alert_burden.alert_rates_by_threshold(scores, first_row, patient_days=3 / 24)
    assert thresholds.tolist() == [0.9] and rates == pytest.approx([800.0])


def _eleven_encounters() -> tuple[np.ndarray, np.ndarray]:
    """11 encounters of 40 hourly rows (18.3 patient-days), each with a 0.9 and a 0.5 spike."""
    scores = np.full((11, 40), 0.1)
    scores[:, 10], scores[:, 20] = 0.9, 0.5
    return scores.ravel(), np.repeat(np.arange(11), 40)


def test_a_rate_equal_to_the_budget_but_for_rounding_is_within_it():
    scores, encounters = _eleven_encounters()
    first_row = np.r_[True, encounters[1:] != encounters[:-1]]
    # 11 episodes in 440/24 patient-days is 60 exactly, which floating point computes as 60.00000000000001
    assert alert_burden.alerts_per_100_patient_days(11, alert_burden.patient_days(440)) > 60.0
    chosen = alert_burden.threshold_for_budget(scores, first_row, patient_days=440 / 24, alerts_per_100_patient_days=60)
    assert chosen.threshold == 0.9


def test_training_and_evaluation_choose_the_same_threshold_for_a_budget():
    # before one module counted for both, training refused this threshold and the evaluation took it
    scores, encounters = _eleven_encounters()
    start = datetime(2024, 1, 1)
    frame = pl.DataFrame(
        {
            "encounter_id": [f"e{e}" for e in encounters],
            "time": [start + timedelta(hours=h) for h in np.tile(np.arange(40), 11).tolist()],
            "event_time": pl.Series([None] * len(scores), dtype=pl.Datetime("us")),
            "label": np.zeros(len(scores), dtype=np.int8),
            "risk": scores,
        }
    )
    point = threshold_for_alert_budget(scores, encounter_ids=encounters, alerts_per_100_patient_days=60)
    assert point.threshold == threshold_at_alert_rate(frame, alerts_per_100_patient_days=60) == 0.9
    promised = alert_rate_at(scores, point.threshold, encounter_ids=encounters)
    assert promised == point.achieved == alert_metrics(frame, threshold=point.threshold).alerts_per_100_patient_days
