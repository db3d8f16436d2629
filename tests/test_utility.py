"""The PhysioNet 2019 utility, row by row, against cases worked by hand, and the utility
operating point: the threshold it picks on a small frame is the best one."""

from __future__ import annotations

import numpy as np
import pytest

from riskcast.errors import EvaluationError, ModelError
from riskcast.model.operating_point import threshold_for_utility
from riskcast.utility import physionet_utility, row_utilities


def stays(*labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row labels and stay ids for stays given as label lists."""
    y = np.concatenate([np.asarray(stay) for stay in labels])
    ids = np.concatenate([np.full(len(stay), f"s{i}") for i, stay in enumerate(labels)])
    return y, ids


def test_the_challenges_own_example_scores_0_8125():
    y, ids = stays([0, 0, 0, 0, 1, 1])
    assert physionet_utility(y, np.array([0, 0, 1, 1, 1, 1]), ids) == pytest.approx(0.8125)


def test_the_best_alarms_score_1_and_no_alarms_0():
    # first label at row 20: t_sepsis = 26, so the best alarms are rows 14..29 (dt -12..+3)
    y, ids = stays([0] * 20 + [1] * 10, [0] * 15)
    best = np.zeros(len(y), dtype=bool)
    best[14:30] = True
    utilities = row_utilities(y, ids)
    assert utilities.score(best) == pytest.approx(1.0)
    assert utilities.score(np.zeros(len(y), dtype=bool)) == pytest.approx(0.0)
    assert utilities.score(np.ones(len(y), dtype=bool)) < 1.0


def test_row_utilities_by_hand():
    # One septic stay: first label at row 14, so t_sepsis = 20 and dt = row - 20.
    y, ids = stays([0] * 14 + [1] * 10)
    u = row_utilities(y, ids)
    # dt = -12 (row 8): an alarm earns 0; dt = -6 (row 14): 1; dt = 0 (row 20): (3 - 0) / 9;
    # dt = +3 (row 23): 0. No alarm at dt = 0 costs -2 * 6 / 9; at dt <= -6 nothing.
    assert u.alarm[8] == pytest.approx(0.0)
    assert u.alarm[14] == pytest.approx(1.0)
    assert u.alarm[20] == pytest.approx(3 / 9)
    assert u.alarm[23] == pytest.approx(0.0)
    assert u.no_alarm[20] == pytest.approx(-12 / 9)
    assert u.no_alarm[10] == pytest.approx(0.0)
    # an alarm 13 h before onset (row 7) is a little false alarm: max((-13 + 12) / 6, -0.05)
    assert u.alarm[7] == pytest.approx(-0.05)
    assert u.alarm[7 + 0] < 0 < u.alarm[9]


def test_a_stay_without_sepsis_costs_0_05_per_alarm():
    y, ids = stays([0, 0, 0, 0], [0] * 5 + [1] * 4)
    u = row_utilities(y, ids)
    np.testing.assert_allclose(u.alarm[:4], -0.05)
    np.testing.assert_allclose(u.no_alarm[:4], 0.0)


def test_rows_count_from_each_stays_own_first_row_however_stays_interleave():
    a, ids_a = stays([0, 0, 0, 1, 1])
    interleaved_y = np.array([0, 0, 0, 0, 1, 0, 1, 0])
    interleaved_ids = np.array(["a", "b", "a", "b", "a", "b", "a", "b"])
    together = row_utilities(interleaved_y, interleaved_ids)
    alone = row_utilities(np.array([0, 0, 1, 1]), np.array(["a"] * 4))
    np.testing.assert_allclose(together.alarm[interleaved_ids == "a"], alone.alarm)


def test_no_septic_stay_makes_the_score_undefined():
    y, ids = stays([0, 0, 0])
    with pytest.raises(EvaluationError, match="no stay has a SepsisLabel of 1"):
        physionet_utility(y, np.ones(3, dtype=bool), ids)


def test_the_utility_threshold_is_the_best_cut_known_by_hand():
    # One septic stay (onset at row 10 + 6 = 16): its rows 4..19 earn when flagged; two
    # clean stays whose every flag costs 0.05. Risks put the septic rows in the reward window
    # at 0.9, the clean stays' rows at 0.5 and the septic stay's early rows at 0.2.
    septic = [0] * 10 + [1] * 10
    y, ids = stays(septic, [0] * 20, [0] * 20)
    risk = np.full(len(y), 0.5)
    risk[:20] = 0.2
    risk[4:20] = 0.9
    utilities = row_utilities(y, ids)
    point = threshold_for_utility(risk, utilities, septic_weights=(1.0,))
    assert point.threshold == 0.9  # flagging the clean stays too (0.5) only costs
    assert point.rule == "utility"
    assert point.achieved == pytest.approx(utilities.score(risk >= 0.9))
    for other in (0.2, 0.5, 0.95):
        assert utilities.score(risk >= other) <= point.achieved
    assert point.flag_rate == pytest.approx(16 / 60)


def test_when_every_cut_costs_more_than_it_earns_the_utility_threshold_flags_nothing():
    # The septic stay's reward window has the lowest risk: reaching it means flagging 400
    # clean hours (0.05 each) and its own hours long before onset first.
    septic = [0] * 30 + [1] * 10  # t_sepsis = 36: rows 24..39 are the window
    y, ids = stays(septic, [0] * 400)
    risk = np.r_[np.full(24, 0.9), np.full(16, 0.05), np.full(400, 0.5)]
    utilities = row_utilities(y, ids)
    assert all(utilities.score(risk >= cut) < 0 for cut in (0.9, 0.5, 0.05))
    point = threshold_for_utility(risk, utilities)
    assert point.threshold > risk.max() and point.flag_rate == 0.0 and point.achieved == 0.0


def test_the_utility_threshold_needs_a_septic_stay():
    y, ids = stays([0, 0])
    with pytest.raises(ModelError, match="no positive rows"):
        threshold_for_utility(np.array([0.1, 0.2]), row_utilities(y, ids))


def test_the_utility_threshold_holds_where_sepsis_is_half_as_common():
    """A cut that pays only at the calibration patients' prevalence is passed over for one
    that still pays where septic stays are half as common (SEPTIC_WEIGHTS)."""
    septic = [0] * 30 + [1] * 10  # the reward window is rows 24..39
    y, ids = stays(septic, [0] * 300)
    # half the window at 0.9; its other half at 0.6 with 200 clean hours; the rest low
    risk = np.r_[np.full(24, 0.1), np.full(8, 0.9), np.full(8, 0.6), np.full(200, 0.6), np.full(100, 0.1)]
    utilities = row_utilities(y, ids)
    plain = threshold_for_utility(risk, utilities, septic_weights=(1.0,))
    robust = threshold_for_utility(risk, utilities)
    assert (plain.threshold, robust.threshold) == (0.6, 0.9)
    half = utilities.reweighted(0.5)
    assert utilities.score(risk >= 0.6) > utilities.score(risk >= 0.9)  # 0.6 is best here ...
    assert half.score(risk >= 0.6) < half.score(risk >= 0.9)  # ... but costs where sepsis is rarer
    worst = {cut: min(utilities.score(risk >= cut), half.score(risk >= cut)) for cut in (0.1, 0.6, 0.9)}
    assert max(worst, key=worst.get) == robust.threshold
    assert robust.achieved == pytest.approx(utilities.score(risk >= 0.9))
