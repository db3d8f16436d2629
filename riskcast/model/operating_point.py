"""Choose the probability threshold at which the model raises a flag.

A row is *flagged* when its calibrated risk is >= the threshold.

An *alert* (for alert budgets) is an alert EPISODE: a flag turning on within an
encounter after being off, or on the encounter's first row. Rows must be in time order
within each encounter (encounters may be interleaved; the order of rows that share an
encounter id is what counts). A flag that stays on for ten hours is one alert; one that
goes off and on again is two.

Patient-days are exposure time: `rows * hours_per_row / 24` (with hourly rows, 24 rows
are one patient-day). The alert rate is `100 * alert episodes / patient-days`. Episodes,
patient-days, rates and the threshold for a budget are counted by riskcast.alert_burden,
the same count the evaluation and the fairness audit use; this module groups the rows by
encounter and validates them.

The threshold is chosen on held-out (calibration) patients and stored with the model
together with how it was chosen, as an OperatingPoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from riskcast import alert_burden
from riskcast.errors import ModelError
from riskcast.utility import RowUtilities

ALERT_BUDGET = "alert_budget"
SENSITIVITY = "sensitivity"
FIXED = "fixed"


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold and how it was chosen.

    `rule` is "alert_budget" (target and achieved in alert episodes per 100
    patient-days), "sensitivity" (target and achieved as the fraction of positive rows
    flagged) or "fixed" (set by hand). `flag_rate` is the fraction of rows flagged at
    the threshold on the rows it was chosen on; `n_rows` counts those rows.
    """

    threshold: float
    rule: str
    target: float | None
    achieved: float | None
    flag_rate: float | None
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers and strings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatingPoint:
        """Inverse of to_dict."""
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise ModelError(f"operating point is malformed: {exc!r}") from exc


def fixed_operating_point(threshold: float) -> OperatingPoint:
    """An operating point set by hand (e.g. from the alert policy file)."""
    if not (0.0 <= threshold <= 1.0):
        raise ModelError(f"threshold must be a probability in [0, 1] (got {threshold!r})")
    return OperatingPoint(threshold=float(threshold), rule=FIXED, target=None, achieved=None, flag_rate=None, n_rows=0)


def _as_risk(risk: Any) -> np.ndarray:
    array = np.asarray(risk, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ModelError(f"risk must be a non-empty 1-D array of probabilities (got shape {array.shape})")
    if np.isnan(array).any():
        raise ModelError(f"risk has {int(np.isnan(array).sum())} NaN value(s)")
    return array


def _time_ordered_by_encounter(encounter_ids: Any, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, first): a stable order grouping rows by encounter, and which rows start one."""
    ids = np.asarray(encounter_ids)
    if ids.ndim != 1 or len(ids) != n_rows:
        raise ModelError(f"encounter_ids has {len(ids)} values but risk has {n_rows}")
    codes, _ = pd.factorize(ids)
    if (codes < 0).any():
        raise ModelError(f"encounter_ids has {int((codes < 0).sum())} missing value(s)")
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    first = np.ones(n_rows, dtype=bool)
    first[1:] = sorted_codes[1:] != sorted_codes[:-1]
    return order, first


def alert_episodes(flags: Any, *, encounter_ids: Any) -> int:
    """Number of alert episodes: flags turning on within an encounter (see module doc)."""
    flags = np.asarray(flags, dtype=bool)
    order, first = _time_ordered_by_encounter(encounter_ids, len(flags))
    return int(np.count_nonzero(alert_burden.episode_starts(flags[order], first)))


def alert_rate_at(
    risk: Any, threshold: float, *, encounter_ids: Any, hours_per_row: float = 1.0
) -> float:
    """Alert episodes per 100 patient-days when flagging risk >= threshold."""
    risk = _as_risk(risk)
    patient_days = alert_burden.patient_days(len(risk), hours_per_row=hours_per_row)
    episodes = alert_episodes(risk >= threshold, encounter_ids=encounter_ids)
    return float(alert_burden.alerts_per_100_patient_days(episodes, patient_days))


def threshold_for_alert_budget(
    risk: Any,
    *,
    hours_per_row: float = 1.0,
    encounter_ids: Any,
    alerts_per_100_patient_days: float,
) -> OperatingPoint:
    """The lowest threshold whose alert rate, and that of every higher threshold, is within budget.

    The episode count is not monotone in the threshold (raising it can split one long
    episode into two), so candidates are scanned from the top down and the scan stops
    at the first threshold over budget: the chosen threshold has margin above it, not
    just a lucky dip. Candidates are the distinct risk values; if even flagging only
    the highest risk is over budget, the threshold sits just above the maximum (no
    flags on these rows). See riskcast.alert_burden.threshold_for_budget.
    """
    if hours_per_row <= 0:
        raise ModelError(f"hours_per_row must be positive (got {hours_per_row!r})")
    budget = float(alerts_per_100_patient_days)
    if budget < 0:
        raise ModelError(f"alerts_per_100_patient_days must be >= 0 (got {budget!r})")
    risk = _as_risk(risk)
    n_rows = len(risk)
    order, first = _time_ordered_by_encounter(encounter_ids, n_rows)
    chosen = alert_burden.threshold_for_budget(
        risk[order], first,
        patient_days=alert_burden.patient_days(n_rows, hours_per_row=hours_per_row),
        alerts_per_100_patient_days=budget,
    )  # fmt: skip
    flag_rate = float(np.mean(risk >= chosen.threshold))
    return OperatingPoint(
        threshold=chosen.threshold,
        rule=ALERT_BUDGET,
        target=budget,
        achieved=chosen.alerts_per_100_patient_days,
        flag_rate=flag_rate,
        n_rows=n_rows,
    )


def threshold_for_sensitivity(risk: Any, y: Any, *, target: float) -> OperatingPoint:
    """The highest threshold that flags at least `target` of the positive rows.

    Sensitivity here is row-level: the fraction of rows with y == 1 whose risk is >=
    the threshold. Ties at the threshold are all flagged, so the achieved value can
    exceed the target.
    """
    if not (0.0 < target <= 1.0):
        raise ModelError(f"target sensitivity must be in (0, 1] (got {target!r})")
    risk = _as_risk(risk)
    y = np.asarray(y)
    if y.shape != risk.shape:
        raise ModelError(f"y has {len(y)} values but risk has {len(risk)}")
    positive_risk = np.sort(risk[y == 1])[::-1]
    n_pos = len(positive_risk)
    if n_pos == 0:
        raise ModelError(f"cannot choose a threshold for sensitivity: none of the {len(risk)} rows is positive")
    needed = max(1, math.ceil(target * n_pos - 1e-9))
    threshold = float(positive_risk[needed - 1])
    return OperatingPoint(
        threshold=threshold,
        rule=SENSITIVITY,
        target=float(target),
        achieved=float(np.mean(positive_risk >= threshold)),
        flag_rate=float(np.mean(risk >= threshold)),
        n_rows=len(risk),
    )


UTILITY = "utility"
SEPTIC_WEIGHTS = (1.0, 0.5)
"""The prevalences (relative to the calibration patients') the utility threshold must hold at.

The threshold that maximises the utility where the model was calibrated flags far too much
at a site where sepsis is rarer: on set A, one chosen on the medical ICU (10.8 % of stays
septic) flagged half the surgical ICU's hours (4.1 %) and scored -0.46. So the threshold
maximises the worse of the utility at the calibration patients' prevalence and at half of it:
internally it gives up about 0.03 of utility; at the other unit it kept 0.19 (bench/transport.py)."""


def threshold_for_utility(
    risk: Any, utilities: RowUtilities, *, septic_weights: Sequence[float] = SEPTIC_WEIGHTS
) -> OperatingPoint:
    """The threshold that maximises the PhysioNet 2019 utility on these rows, robustly to prevalence.

    utilities: the rows' utilities (riskcast.utility.row_utilities). The utility is additive
    over rows, so one pass down the sorted risks gives it at every threshold t (the sum of
    what flagging adds, row by row, over the rows with risk >= t); ties in risk are flagged
    together. It is computed as the rows are and with septic stays weighted by each of
    `septic_weights` (a site where sepsis is that much rarer or commoner), each normalised
    by its own best, and the threshold maximises the worst of them (see SEPTIC_WEIGHTS;
    pass (1.0,) for the plain maximum). `achieved` is the normalised utility at the
    threshold on these rows as they are (0 for no alarms, 1 for the best alarms); when no
    threshold earns anything, the threshold sits just above the highest risk (no flags).
    """
    risk = _as_risk(risk)
    if utilities.gain.shape != risk.shape:
        raise ModelError(f"utilities cover {len(utilities.gain)} rows but risk has {len(risk)}")
    if not utilities.span > 0:
        raise ModelError("cannot choose a threshold for utility: the best and the no-alarm utilities are equal "
                         "(no positive rows among these patients)")
    order = np.argsort(-risk, kind="stable")
    ordered = risk[order]
    curve = np.cumsum(utilities.gain[order]) / utilities.span
    curves = [curve]
    for weight in septic_weights:
        if weight != 1.0:
            site = utilities.reweighted(weight)
            curves.append(np.cumsum(site.gain[order]) / site.span)
    objective = np.minimum.reduce(curves)
    # Only cut between distinct risks: the last row of each run of equal risk.
    ends = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    best = int(ends[np.argmax(objective[ends])])
    if objective[best] <= 0:
        threshold, achieved, flag_rate = float(np.nextafter(ordered[0], np.inf)), 0.0, 0.0
    else:
        threshold = float(ordered[best])
        achieved = float(curve[best])
        flag_rate = float(np.mean(risk >= threshold))
    return OperatingPoint(threshold=threshold, rule=UTILITY, target=None, achieved=achieved, flag_rate=flag_rate,
                          n_rows=len(risk))
