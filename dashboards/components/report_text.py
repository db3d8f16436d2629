"""The model and fairness reports' numbers as words: values with their 95% intervals,
percentages, risk thresholds and the sensitive features by name. Formatting only, shared by
the report pages and their figures (components/report_figures.py); a missing or non-finite
value is "–", never 0.
"""

from __future__ import annotations

import math

SUPPRESSED = "suppressed"
"""What a suppressed group shows in place of each number."""
FEATURE_NAMES = {"sex": "Sex", "age_band": "Age band", "race_ethnicity": "Race and ethnicity", "site": "Site", "ward": "Ward"}
METRIC_DIGITS = {"alerts_per_100_patient_days": 1, "measurements_per_day": 1, "calibration_in_the_large": 3}
"""Decimals of the fairness metrics that are not shown with two."""


def finite(value: float | None) -> bool:
    """Whether ``value`` is a number to show (not None, NaN or infinite)."""
    return value is not None and math.isfinite(value)


def number_text(value: float | None, digits: int = 2) -> str:
    """"0.83", with a real minus sign: "−0.02"."""
    return f"{value:.{digits}f}".replace("-", "−") if finite(value) else "–"


def interval_text(value: float | None, low: float | None, high: float | None, digits: int = 2) -> str:
    """"0.83 (0.79–0.87)"; the value alone when the interval is missing."""
    if not finite(value):
        return "–"
    if not (finite(low) and finite(high)):
        return number_text(value, digits)
    return f"{number_text(value, digits)} ({number_text(low, digits)}–{number_text(high, digits)})"


def percent_text(value: float | None, *, digits: int = 0) -> str:
    """A share as a percentage: "12%"; one decimal under 1% ("0.4%") when no decimals are asked for."""
    if not finite(value):
        return "–"
    assert value is not None
    percent = value * 100.0
    if 0 < percent < 1 and digits == 0:
        return f"{percent:.1f}%"
    return f"{percent:.{digits}f}%"


def threshold_text(value: float | None) -> str:
    """A risk threshold as a percentage: "12.5%", "0.42%" under 1%."""
    if not finite(value):
        return "–"
    assert value is not None
    return f"{value * 100:.2g}%" if value < 0.01 else f"{value * 100:.1f}%"


def metric_text(metric: str, value: float | None, low: float | None, high: float | None) -> str:
    """A fairness metric with its interval, at the metric's decimals (METRIC_DIGITS, else two)."""
    return interval_text(value, low, high, METRIC_DIGITS.get(metric, 2))


def feature_text(feature: str) -> str:
    """A sensitive feature, or a pair "a & b", by name: "Race and ethnicity & Sex"."""
    return " & ".join(FEATURE_NAMES.get(part, part) for part in feature.split(" & "))
