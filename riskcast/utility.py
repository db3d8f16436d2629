"""The PhysioNet/CinC Challenge 2019 utility: what each hourly prediction earns or costs.

The challenge scores every hour of every stay (its `evaluate_sepsis_score.py`). A stay is
septic when any of its `SepsisLabel`s is 1; the label is already 6 h early, so the onset is
t_sepsis = (position of the first label 1) + 6 and each row sits dt = t - t_sepsis hours
from it, t being the row's 0-based position in its stay. Per row:

- non-septic stay: an alarm costs U_FP = -0.05, no alarm earns U_TN = 0;
- septic stay, dt > dt_late (+3): 0 either way;
- alarm (true positive): for dt <= dt_optimal (-6), max((dt + 12) / 6, U_FP), rising from 0
  at dt_early (-12) to U_TP = 1 at -6 (and U_FP for earlier alarms); for -6 < dt <= 3,
  (3 - dt) / 9, falling to 0 at dt_late;
- no alarm (false negative): 0 for dt <= -6; for -6 < dt <= 3, -2 (dt + 6) / 9, falling to
  U_FN = -2 at dt_late.

The total is additive over rows, so the utility of any set of alarms is
sum(no-alarm utility) + sum over alarmed rows of (alarm - no-alarm utility), and the
normalised score is (U - U_no_alarms) / (U_best - U_no_alarms): 1 for alarms exactly where
dt_early <= dt <= dt_late on septic stays, 0 for no alarms at all. Because it is additive,
the threshold that maximises it on a set of rows is found in one sorted pass
(riskcast.model.operating_point.threshold_for_utility).

Worked example (the challenge's own): labels 0,0,0,0,1,1 and alarms 0,0,1,1,1,1 give
t_sepsis = 10, U = 4/6 + 5/6 + 1 + 8/9 = 61/18, U_best = 76/18, U_none = -2/9 and a score of
(65/18) / (80/18) = 0.8125. The tests check it and other cases worked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskcast.errors import EvaluationError

DT_EARLY = -12.0
DT_OPTIMAL = -6.0
DT_LATE = 3.0
MAX_U_TP = 1.0
MIN_U_FN = -2.0
U_FP = -0.05
U_TN = 0.0


@dataclass(frozen=True)
class RowUtilities:
    """Per row: the utility of an alarm, of no alarm, and of the best choice; and whether
    the row's stay is septic."""

    alarm: np.ndarray
    no_alarm: np.ndarray
    best: np.ndarray
    septic: np.ndarray | None = None

    def reweighted(self, septic_weight: float) -> RowUtilities:
        """The same rows at a site where septic stays are `septic_weight` times as common
        (every septic stay's rows count that much; the others count once)."""
        if self.septic is None:
            raise EvaluationError("these row utilities do not say which stays are septic")
        weight = np.where(self.septic, septic_weight, 1.0)
        return RowUtilities(self.alarm * weight, self.no_alarm * weight, self.best * weight, self.septic)

    @property
    def gain(self) -> np.ndarray:
        """What raising the alarm adds, row by row."""
        return self.alarm - self.no_alarm

    @property
    def span(self) -> float:
        """U_best - U_no_alarms: the normaliser (positive when some stay is septic)."""
        return float(self.best.sum() - self.no_alarm.sum())

    def score(self, alarms: np.ndarray) -> float:
        """The normalised utility of these alarms (bool per row)."""
        if self.span <= 0:
            raise EvaluationError("cannot compute the PhysioNet utility: no stay has a SepsisLabel of 1, so the best "
                                  "and no-alarm utilities are equal")
        alarms = np.asarray(alarms, dtype=bool)
        observed = np.where(alarms, self.alarm, self.no_alarm).sum()
        return float((observed - self.no_alarm.sum()) / self.span)


def positions_in_stay(encounter_ids: np.ndarray) -> np.ndarray:
    """Each row's 0-based position among its stay's rows, in the order given."""
    codes, _ = pd.factorize(np.asarray(encounter_ids))
    if (codes < 0).any():
        raise EvaluationError(f"encounter ids have {int((codes < 0).sum())} missing value(s)")
    return pd.Series(codes).groupby(codes).cumcount().to_numpy(dtype=np.float64)


def row_utilities(labels: np.ndarray, encounter_ids: np.ndarray) -> RowUtilities:
    """The utilities of each row (see the module docstring).

    labels: the challenge's SepsisLabel (0/1) per row; encounter_ids: the stay of each row.
    Rows must be in time order within each stay and every hour of a stay must be there from
    its first row on, as in the challenge's files: t counts rows.
    """
    labels = np.asarray(labels)
    ids = np.asarray(encounter_ids)
    if labels.shape != ids.shape:
        raise EvaluationError(f"{len(labels):,} labels but {len(ids):,} encounter ids")
    position = positions_in_stay(ids)
    codes, _ = pd.factorize(ids)
    first_label = np.full(codes.max() + 1 if len(codes) else 0, np.inf)
    labelled = labels == 1
    np.minimum.at(first_label, codes[labelled], position[labelled])
    onset = first_label[codes] - DT_OPTIMAL  # first label + 6
    septic = np.isfinite(onset)
    dt = np.where(septic, position - np.where(septic, onset, 0.0), 0.0)
    early_side = dt <= DT_OPTIMAL
    tp = np.where(
        early_side,
        np.maximum((dt - DT_EARLY) * (MAX_U_TP / (DT_OPTIMAL - DT_EARLY)), U_FP),
        (DT_LATE - dt) * (MAX_U_TP / (DT_LATE - DT_OPTIMAL)),
    )
    fn = np.where(early_side, 0.0, (dt - DT_OPTIMAL) * (MIN_U_FN / (DT_LATE - DT_OPTIMAL)))
    late = dt > DT_LATE
    alarm = np.where(~septic, U_FP, np.where(late, 0.0, tp))
    no_alarm = np.where(~septic, U_TN, np.where(late, 0.0, fn))
    best = np.where(~septic, U_TN, np.where((dt >= DT_EARLY) & (dt <= DT_LATE), tp, 0.0))
    return RowUtilities(alarm, no_alarm, best, septic)


def physionet_utility(labels: np.ndarray, alarms: np.ndarray, encounter_ids: np.ndarray) -> float:
    """The challenge's normalised utility of these alarms (see row_utilities for the order)."""
    return row_utilities(labels, encounter_ids).score(alarms)
