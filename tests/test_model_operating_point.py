"""Choosing the alert threshold: alert episodes per 100 patient-days, and sensitivity."""

from __future__ import annotations

import numpy as np
import pytest

from riskcast.errors import ModelError
from riskcast.model import (
    OperatingPoint,
    alert_episodes,
    alert_rate_at,
    fixed_operating_point,
    threshold_for_alert_budget,
    threshold_for_sensitivity,
)


def test_an_alert_episode_is_a_flag_turning_on_within_an_encounter():
    flags = [0, 1, 1, 0, 1, 1, 1]
    encounters = ["a", "a", "a", "a", "a", "b", "b"]
    # a: on at hour 1, off at 3, on again at 4 -> 2 episodes; b: on from its first hour -> 1
    assert alert_episodes(flags, encounter_ids=encounters) == 3


def test_a_flag_carried_across_encounters_starts_a_new_episode():
    assert alert_episodes([1, 1, 1, 1], encounter_ids=["a", "a", "b", "b"]) == 2


def test_interleaved_encounters_keep_their_own_time_order():
    # rows sorted by time across the ward: a, b, a, b, a, b
    flags = [1, 0, 0, 1, 1, 1]
    encounters = ["a", "b", "a", "b", "a", "b"]
    # a: 1, 0, 1 -> 2 episodes; b: 0, 1, 1 -> 1 episode
    assert alert_episodes(flags, encounter_ids=encounters) == 3


def test_alert_rate_counts_rows_times_hours_as_exposure():
    risk = np.array([0.9] + [0.1] * 47)  # one episode in 48 hourly rows = 2 patient-days
    assert alert_rate_at(risk, 0.5, encounter_ids=np.zeros(48)) == pytest.approx(50.0)
    # the same rows standing for 4 hours each are 8 patient-days
    assert alert_rate_at(risk, 0.5, encounter_ids=np.zeros(48), hours_per_row=4) == pytest.approx(12.5)


def _ward(seed: int = 0, encounters: int = 60, hours: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Risk that wanders within each encounter (so flags switch on and off)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=0.4, size=(encounters, hours)).cumsum(axis=1) + rng.normal(size=(encounters, 1))
    risk = 1 / (1 + np.exp(-(steps - 2.0)))
    return risk.ravel(), np.repeat(np.arange(encounters), hours)


@pytest.mark.parametrize("budget", [0.0, 5.0, 20.0, 60.0])
def test_alert_budget_threshold_meets_the_budget_on_its_data(budget):
    risk, encounters = _ward()
    point = threshold_for_alert_budget(risk, encounter_ids=encounters, alerts_per_100_patient_days=budget)
    rate = alert_rate_at(risk, point.threshold, encounter_ids=encounters)
    assert rate <= budget
    assert rate == pytest.approx(point.achieved)
    assert point.rule == "alert_budget" and point.target == budget and point.n_rows == len(risk)


def test_alert_budget_threshold_is_the_lowest_with_no_breach_above_it():
    risk, encounters = _ward(seed=1)
    budget = 20.0
    point = threshold_for_alert_budget(risk, encounter_ids=encounters, alerts_per_100_patient_days=budget)
    candidates = np.unique(risk)
    rates = np.array([alert_rate_at(risk, t, encounter_ids=encounters) for t in candidates])
    above = candidates >= point.threshold
    assert np.all(rates[above] <= budget)
    below = candidates[candidates < point.threshold]
    assert len(below) and rates[candidates == below.max()][0] > budget


def test_alert_budget_too_small_for_any_flag_sets_the_threshold_above_every_risk():
    risk = np.array([0.2, 0.9, 0.3, 0.8])
    point = threshold_for_alert_budget(risk, encounter_ids=[1, 1, 2, 2], alerts_per_100_patient_days=1.0)
    assert point.threshold > risk.max() and point.achieved == 0.0 and point.flag_rate == 0.0


def test_sensitivity_threshold_is_the_highest_that_flags_the_target_share_of_positives():
    risk = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 0, 0])
    point = threshold_for_sensitivity(risk, y, target=0.75)  # 3 of the 4 positives
    assert point.threshold == 0.5
    assert point.achieved == 0.75 and point.flag_rate == 0.5


def test_sensitivity_needs_positive_rows():
    with pytest.raises(ModelError, match="none of the 3 rows is positive"):
        threshold_for_sensitivity([0.1, 0.2, 0.3], [0, 0, 0], target=0.8)


def test_operating_point_round_trips_through_a_plain_dict():
    point = threshold_for_sensitivity([0.1, 0.9, 0.4], [0, 1, 1], target=1.0)
    assert OperatingPoint.from_dict(point.to_dict()) == point


def test_fixed_threshold_must_be_a_probability():
    assert fixed_operating_point(0.3).rule == "fixed"
    with pytest.raises(ModelError, match="threshold must be a probability"):
        fixed_operating_point(1.5)


def test_encounter_ids_must_match_the_risk_rows():
    with pytest.raises(ModelError, match="encounter_ids has 2 values but risk has 3"):
        threshold_for_alert_budget([0.1, 0.2, 0.3], encounter_ids=[1, 2], alerts_per_100_patient_days=5)
