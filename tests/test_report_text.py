"""The report pages' numbers in words (riskcast.dashboards.components.report_text)."""

from __future__ import annotations

import math

from riskcast.dashboards.components.report_text import (
    feature_text,
    interval_text,
    metric_text,
    number_text,
    percent_text,
    threshold_text,
)


def test_a_missing_number_is_a_dash_never_zero() -> None:
    assert [number_text(v) for v in (None, math.nan, math.inf)] == ["–", "–", "–"]
    assert interval_text(None, 0.1, 0.2) == "–" and percent_text(None) == "–" and threshold_text(math.nan) == "–"


def test_a_value_with_its_interval_uses_a_real_minus_and_drops_a_missing_interval() -> None:
    assert interval_text(-0.0213, -0.05, 0.01, 3) == "−0.021 (−0.050–0.010)"
    assert interval_text(0.83, None, 0.9) == "0.83"


def test_each_metric_has_its_own_decimals() -> None:
    assert metric_text("sensitivity", 0.5, 0.4, 0.6) == "0.50 (0.40–0.60)"
    assert metric_text("alerts_per_100_patient_days", 12.345, 10.0, 14.0) == "12.3 (10.0–14.0)"


def test_small_shares_and_thresholds_keep_a_significant_digit() -> None:
    assert percent_text(0.004) == "0.4%" and percent_text(0.123) == "12%" and percent_text(0.1234, digits=1) == "12.3%"
    assert threshold_text(0.0042) == "0.42%" and threshold_text(0.125) == "12.5%"


def test_features_and_pairs_are_named_in_words() -> None:
    assert feature_text("race_ethnicity & sex") == "Race and ethnicity & Sex"
    assert feature_text("bed") == "bed"
