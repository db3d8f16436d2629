"""Alert burden: alert episodes, patient-days, alerts per 100 patient-days, the threshold for a budget.

The one definition of each. The operating point (riskcast.model.operating_point) picks a
threshold for a budget with it, the evaluation (riskcast.evaluate) reports and checks the
promise with it, and the fairness audit (riskcast.fairness) compares groups with it, so all
three count the same alerts.

Every function takes rows already in time order within each encounter, each encounter's rows
contiguous, and `first_row` marking the row that opens an encounter (how rows get into that
order is the caller's business: an encounter id and a time, or the order given). A row is
*flagged* when its score is >= the threshold; a NaN score never flags.

- An *alert episode* starts at a flagged row that opens its encounter or follows an unflagged
  row: a flag that stays on for ten hours is one alert, on-off-on is two, and a flag carried
  into the next encounter starts a new one.
- *Patient-days* are exposure: `rows * hours_per_row / 24` (24 hourly rows are one patient-day).
- The *alert rate* is `100 * alert episodes / patient-days`, NaN with no exposure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOURS_PER_ROW = 1.0
# A rate this close above a budget is the budget itself, rounded: 100 * 33 / 55 patient-days
# computes to 60.00000000000001, and a budget of 60 must allow it.
ROUNDING_SLACK = 1e-9


@dataclass(frozen=True)
class BudgetThreshold:
    """The threshold chosen for an alert budget and the alert rate it gives on the rows it was
    chosen on (0.0 when even the highest score was over budget and nothing flags)."""

    threshold: float
    alerts_per_100_patient_days: float


def episode_starts(flagged: np.ndarray, first_row: np.ndarray) -> np.ndarray:
    """Per row: True where an alert episode starts (flagged, and first in its encounter or
    after an unflagged row)."""
    flagged = np.asarray(flagged, dtype=bool)
    previous = np.r_[False, flagged[:-1]]
    return flagged & (np.asarray(first_row, dtype=bool) | ~previous)


def patient_days(n_rows: float | np.ndarray, *, hours_per_row: float = HOURS_PER_ROW) -> float | np.ndarray:
    """Exposure of `n_rows` rows of `hours_per_row` hours each, in days (element-wise on arrays)."""
    if isinstance(n_rows, np.ndarray):
        return n_rows * hours_per_row / 24.0
    return float(n_rows) * hours_per_row / 24.0


def alerts_per_100_patient_days(
    n_episodes: float | np.ndarray, patient_days: float | np.ndarray
) -> float | np.ndarray:
    """`100 * n_episodes / patient_days`; NaN where there are no patient-days (element-wise on arrays)."""
    if isinstance(n_episodes, np.ndarray) or isinstance(patient_days, np.ndarray):
        episodes, days = np.asarray(n_episodes, dtype=np.float64), np.asarray(patient_days, dtype=np.float64)
        out = np.full(np.broadcast(episodes, days).shape, np.nan)
        np.divide(100.0 * episodes, days, out=out, where=days > 0)
        return out
    return 100.0 * float(n_episodes) / float(patient_days) if patient_days > 0 else float("nan")


def alert_rates_by_threshold(
    scores: np.ndarray, first_row: np.ndarray, *, patient_days: float
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, rates): every distinct non-NaN score as a threshold, ascending, and the alert
    rate flagging `scores >= threshold` would give, all at once (sorting, not one pass each).

    episodes(t) = #{rows with score >= t} - #{consecutive rows of one encounter both >= t}.
    """
    scores = np.asarray(scores, dtype=np.float64)
    first_row = np.asarray(first_row, dtype=bool)
    scored = np.sort(scores[~np.isnan(scores)])
    pair_min = np.minimum(scores[1:], scores[:-1])[~first_row[1:]]
    pair_min = np.sort(pair_min[~np.isnan(pair_min)])
    thresholds = np.unique(scored)
    flagged_rows = scored.size - np.searchsorted(scored, thresholds, side="left")
    flagged_pairs = pair_min.size - np.searchsorted(pair_min, thresholds, side="left")
    return thresholds, alerts_per_100_patient_days(flagged_rows - flagged_pairs, np.asarray(patient_days))


def threshold_for_budget(
    scores: np.ndarray, first_row: np.ndarray, *, patient_days: float, alerts_per_100_patient_days: float
) -> BudgetThreshold:
    """The lowest threshold whose alert rate, and that of every higher threshold, is within budget.

    The episode count is not monotone in the threshold (lowering it can merge two episodes
    into one), so the distinct scores are walked from the highest down and the walk stops
    before the first threshold over budget: the chosen one has margin above it, not just a
    lucky dip. When even the highest score is over budget, the threshold sits just above it
    (nothing flags); when none is, it is the lowest score. A rate within ROUNDING_SLACK above
    the budget is within it. `scores` needs one non-NaN value.
    """
    thresholds, rates = alert_rates_by_threshold(scores, first_row, patient_days=patient_days)
    if thresholds.size == 0:
        raise ValueError("threshold_for_budget needs at least one non-NaN score")
    over = np.flatnonzero(rates > alerts_per_100_patient_days + ROUNDING_SLACK)
    if over.size == 0:
        index = 0
    elif over[-1] == thresholds.size - 1:
        return BudgetThreshold(float(np.nextafter(thresholds[-1], np.inf)), 0.0)
    else:
        index = int(over[-1]) + 1
    return BudgetThreshold(float(thresholds[index]), float(rates[index]))
