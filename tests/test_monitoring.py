"""What the monitor judges, on small frames: feed freshness, drift (PSI) and the alert rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from riskcast import monitoring
from riskcast.catalog import load_catalog

NOW = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
UTC_US = pl.Datetime("us", "UTC")


def freshness_frames() -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Wards A and B with admitted patients and charted vitals and labs, C admitted and silent,
    D with its only patient discharged a day ago."""
    encounters = pl.DataFrame({
        "encounter_id": ["E1", "E2", "E3", "E4"],
        "admit_time": [NOW - timedelta(days=3)] * 4,
        "discharge_time": [None, None, None, NOW - timedelta(days=1)],
        "ward": ["A", "B", "C", "D"],
    }, schema_overrides={"admit_time": UTC_US, "discharge_time": UTC_US})  # fmt: skip
    observations = pl.DataFrame({
        "encounter_id": ["E1", "E1", "E2", "E2", "E4"],
        "charttime": [NOW - timedelta(hours=20), NOW - timedelta(hours=30), NOW - timedelta(hours=1),
                      NOW - timedelta(hours=40), NOW - timedelta(hours=30)],
        "variable": ["heart_rate", "lactate", "heart_rate", "lactate", "heart_rate"],
        "value": [80.0, 1.0, 82.0, 1.1, 70.0],
    }, schema_overrides={"charttime": UTC_US})  # fmt: skip
    return observations.lazy(), encounters.lazy()


# --- feed freshness ---------------------------------------------------------------------------


def test_feed_freshness_flags_stale_and_silent_wards_with_admitted_patients() -> None:
    observations, encounters = freshness_frames()
    frame = monitoring.feed_freshness(observations, encounters, at=NOW, catalog=load_catalog(), lookback_hours=72)
    rows = {(r["ward"], r["variable"]): r for r in frame.iter_rows(named=True)}
    assert set(rows) == {("A", "heart_rate"), ("A", "lactate"), ("B", "heart_rate"), ("B", "lactate"), ("C", "*")}
    assert rows[("A", "heart_rate")]["stale"] and rows[("A", "heart_rate")]["hours_since"] == pytest.approx(20.0)
    assert not rows[("B", "heart_rate")]["stale"] and not rows[("B", "lactate")]["essential"]
    assert rows[("A", "lactate")]["stale"] and rows[("A", "lactate")]["stale_after_hours"] == 24
    assert rows[("C", "*")]["stale"] and rows[("C", "*")]["last_charttime"] is None
    assert rows[("C", "*")]["label"] == monitoring.SILENT_LABEL and rows[("A", "heart_rate")]["label"] == "Heart rate"
    assert frame.schema == pl.Schema(monitoring.FRESHNESS_SCHEMA)


def test_feed_freshness_lists_the_silent_ward_first_then_by_the_share_of_the_stale_interval_used() -> None:
    observations, encounters = freshness_frames()
    frame = monitoring.feed_freshness(observations, encounters, at=NOW, catalog=load_catalog(), lookback_hours=72)
    assert frame.select("ward", "variable").rows() == [
        ("C", "*"), ("A", "heart_rate"), ("B", "lactate"), ("A", "lactate"), ("B", "heart_rate"),
    ]  # fmt: skip


def test_a_feed_that_delivered_only_before_the_lookback_window_is_no_feed_of_the_ward() -> None:
    observations, encounters = freshness_frames()
    frame = monitoring.feed_freshness(observations, encounters, at=NOW, catalog=load_catalog(), lookback_hours=24)
    assert frame.filter(pl.col("ward") == "A")["variable"].to_list() == ["heart_rate"]
    assert frame.filter(pl.col("ward") == "B")["variable"].to_list() == ["heart_rate"]


def test_feed_freshness_ignores_observations_charted_after_at() -> None:
    observations, encounters = freshness_frames()
    later = pl.concat([observations.collect(), pl.DataFrame(
        {"encounter_id": ["E1"], "charttime": [NOW + timedelta(hours=1)], "variable": ["heart_rate"], "value": [90.0]},
        schema_overrides={"charttime": UTC_US},
    )]).lazy()  # fmt: skip
    frame = monitoring.feed_freshness(later, encounters, at=NOW, catalog=load_catalog())
    assert frame.filter(pl.col("ward") == "A", pl.col("variable") == "heart_rate")["hours_since"].to_list() == [20.0]


def test_a_lookback_that_is_not_positive_is_refused() -> None:
    observations, encounters = freshness_frames()
    with pytest.raises(ValueError, match="lookback_hours must be positive, got 0"):
        monitoring.feed_freshness(observations, encounters, at=NOW, catalog=load_catalog(), lookback_hours=0)


def test_stale_feed_problems_name_the_ward_and_vital_but_not_an_unordered_lab() -> None:
    observations, encounters = freshness_frames()
    frame = monitoring.feed_freshness(observations, encounters, at=NOW + timedelta(hours=60), catalog=load_catalog(),
                                      lookback_hours=120)  # fmt: skip
    problems = monitoring.stale_feed_problems(frame)
    assert problems["A"] == "ward A: feed stale, last charted heart_rate 80.0 h (stale after 12 h)"
    assert problems["C"] == "ward C: no observations at all in the last 120 h"
    assert "lactate" not in problems["B"]
    everything = monitoring.stale_feed_problems(frame, essential_only=False)
    assert set(everything["B"].split(", ")) >= {"lactate 100.0 h (stale after 24 h)"}


# --- drift ------------------------------------------------------------------------------------


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 5000)
    edges = monitoring.quantile_edges(reference)
    same = monitoring.population_stability_index(monitoring.histogram(reference, edges),
                                                 monitoring.histogram(rng.normal(0, 1, 5000), edges))  # fmt: skip
    shifted = monitoring.population_stability_index(monitoring.histogram(reference, edges),
                                                    monitoring.histogram(rng.normal(1, 1, 5000), edges))  # fmt: skip
    assert same < 0.02 and shifted > 0.25


def test_psi_of_histograms_over_different_bins_is_refused() -> None:
    with pytest.raises(ValueError, match=r"same bins, got \(3,\) and \(2,\)"):
        monitoring.population_stability_index([1, 2, 3], [1, 2])


def test_score_reference_merges_bins_that_share_an_upper_edge() -> None:
    reliability = [
        {"bin": 0, "count": 50, "max_predicted": 0.01},
        {"bin": 3, "count": 30, "max_predicted": 0.05},
        {"bin": 4, "count": 10, "max_predicted": 0.05},
        {"bin": 9, "count": 10, "max_predicted": 0.9},
    ]
    edges, counts = monitoring.score_reference(reliability)
    assert edges.tolist() == [0.01, 0.05] and counts.tolist() == [50, 40, 10]
    assert monitoring.score_psi(reliability, np.array([0.005] * 50 + [0.03] * 40 + [0.5] * 10)) == pytest.approx(0.0)


def test_variable_drift_finds_the_shifted_variable_and_leaves_out_the_sparse_one() -> None:
    rng = np.random.default_rng(1)
    n = 400
    observations = pl.DataFrame({
        "window": ["reference"] * (2 * n) + ["current"] * (2 * n) + ["current"] * 5,
        "variable": (["heart_rate"] * n + ["resp_rate"] * n) * 2 + ["lactate"] * 5,
        "value": np.r_[rng.normal(80, 10, n), rng.normal(18, 3, n), rng.normal(100, 10, n), rng.normal(18, 3, n),
                       rng.normal(2, 1, 5)],
    }).lazy()  # fmt: skip
    drift = monitoring.variable_drift(observations, reference=pl.col("window") == "reference",
                                      current=pl.col("window") == "current")  # fmt: skip
    assert drift["variable"].to_list() == ["heart_rate", "resp_rate"]
    assert drift["psi"][0] > 0.25 > drift["psi"][1]
    assert drift.row(0, named=True)["n_reference"] == drift.row(0, named=True)["n_current"] == n


# --- alert rate -------------------------------------------------------------------------------


def test_alert_rate_check_flags_a_flood_and_a_silence_but_not_a_quiet_small_window() -> None:
    flood = monitoring.alert_rate_check(40, 10.0, 15.0)
    assert flood.problem.startswith("40 risk alerts in 10.0 patient-days: 400.0 per 100")
    assert monitoring.alert_rate_check(0, 100.0, 15.0).problem.startswith("0 risk alerts in 100.0 patient-days")
    assert monitoring.alert_rate_check(0, 10.0, 15.0).problem is None  # 1.5 alerts expected: silence is normal
    assert monitoring.alert_rate_check(2, 1.0, 15.0).problem is None  # too few patient-days to judge


def test_alert_rate_check_has_no_rate_without_exposure_and_none_without_a_promise() -> None:
    assert monitoring.alert_rate_check(3, 0.0, 15.0).to_dict() == {
        "alerts": 3, "patient_days": 0.0, "observed_per_100": None, "expected_per_100": 15.0, "problem": None,
    }  # fmt: skip
    unpromised = monitoring.alert_rate_check(40, 10.0, None)
    assert (unpromised.observed_per_100, unpromised.problem) == (400.0, None)
