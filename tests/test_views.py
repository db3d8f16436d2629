"""The read models of riskcast.read_models over the small dashboard home (dashboard_home):
who is on the ward and how they are doing, one patient's scores and drivers, feed and
scoring freshness, quarantine and runs."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from dashboard_home import NOW, WARD_A, WARD_B, Home, engine, home, hour_plus  # noqa: F401 - fixtures
from riskcast import read_models
from riskcast.lake import Lake


def board(home: Home, engine: Any, **options: Any) -> pl.DataFrame:
    return read_models.ward_board(engine, model_version=home.version, now=NOW, lake=Lake(home.settings.lake_dir), **options)


def test_board_lists_only_patients_scored_in_the_latest_run(home, engine):
    assert sorted(board(home, engine)["encounter_id"]) == ["E1", "E2", "E3", "E4"]


def test_board_puts_alerts_needing_action_first_then_insufficient_data_then_by_risk(home, engine):
    assert board(home, engine)["encounter_id"].to_list() == ["E4", "E1", "E2", "E3"]


def test_stale_vitals_are_insufficient_not_low_risk(home, engine):
    row = board(home, engine).filter(pl.col("encounter_id") == "E2").row(0, named=True)
    assert row["status"] == "insufficient_data"
    assert row["risk"] is None and row["trend"] is None
    assert row["missing"] == "Respiratory rate, Oxygen saturation (SpO2)"


def test_trend_compares_the_latest_score_with_the_previous_hour(home, engine):
    rows = {r["encounter_id"]: r for r in board(home, engine).iter_rows(named=True)}
    assert rows["E1"]["trend"] == "rising" and rows["E1"]["risk_change"] == pytest.approx(0.20)
    assert rows["E3"]["trend"] == "steady"
    assert rows["E4"]["previous_risk"] == pytest.approx(0.50)


def test_board_of_one_ward_shows_neither_patients_nor_alerts_of_another(home, engine):
    ward_a = board(home, engine, wards=[WARD_A])
    assert set(ward_a["ward"]) == {WARD_A}
    assert "E4" not in ward_a["encounter_id"].to_list()


def test_board_shows_the_open_alert_and_top_drivers_in_words(home, engine):
    row = board(home, engine).filter(pl.col("encounter_id") == "E1").row(0, named=True)
    assert row["alert_kind"] == "risk" and row["alert_state"] == "new" and row["needs_action"]
    assert row["drivers"] == "Respiratory rate 28 /min, rising (+0.60); Heart rate 112 /min (+0.30)"


def test_last_observed_is_the_latest_essential_vital_and_its_age_now(home, engine):
    row = board(home, engine).filter(pl.col("encounter_id") == "E1").row(0, named=True)
    assert row["last_observed_at"] == hour_plus(-0.5)
    assert row["hours_since_observed"] == pytest.approx((NOW - hour_plus(-0.5)).total_seconds() / 3600)


def test_patient_header_has_the_latest_score_and_trend(home, engine):
    header = read_models.patient_header(engine, "E1", model_version=home.version)
    assert header is not None and header.ward == WARD_A and header.admitted
    assert header.risk == pytest.approx(0.45) and header.trend == "rising"
    assert read_models.patient_header(engine, "E5", model_version=home.version).admitted is False
    assert read_models.patient_header(engine, "nobody", model_version=home.version) is None


def test_driver_comparison_says_what_changed_since_24_hours_ago(home, engine):
    comparison = read_models.driver_comparison(engine, "E1", model_version=home.version, hours=24)
    assert comparison.then_at == hour_plus(-24) and comparison.risk_then == pytest.approx(0.05)
    changes = dict(comparison.changes.select("variable", "change").iter_rows())
    assert changes == {"resp_rate": "new", "heart_rate": "stronger", "creatinine": "gone"}


def test_alert_markers_sit_at_the_risk_of_the_hour_before_them(home, engine):
    markers = read_models.alert_markers(engine, "E1", model_version=home.version)
    raised = markers.filter(pl.col("action") == "raised").row(0, named=True)
    assert raised["actor"] == "riskcast" and raised["risk_at"] == pytest.approx(0.25)


def test_encounter_observations_keep_the_window_and_labels(home):
    frame = read_models.encounter_observations(Lake(home.settings.lake_dir), "E1", until=NOW, hours=24)
    assert frame.filter(pl.col("variable") == "resp_rate")["value"].to_list() == [24.0, 28.0]
    labs = read_models.latest_values(frame.filter(pl.col("kind") == "lab")).row(0, named=True)
    shown = (labs["label"], labs["last_value"], labs["previous_value"], labs["unit_display"])
    assert shown == ("Creatinine", 140.0, 90.0, "µmol/L")


def test_feed_freshness_flags_a_ward_feed_older_than_its_stale_interval(home):
    frame = read_models.feed_freshness(Lake(home.settings.lake_dir), now=NOW)
    by_key = {(r["ward"], r["variable"]): r for r in frame.iter_rows(named=True)}
    assert by_key[(WARD_A, "heart_rate")]["stale"] is False
    assert by_key[(WARD_A, "resp_rate")]["hours_since"] == pytest.approx(40 / 60)
    stale_limit = by_key[(WARD_B, "heart_rate")]["stale_after_hours"]
    late = read_models.feed_freshness(Lake(home.settings.lake_dir), now=hour_plus(stale_limit + 1))
    assert late.filter(pl.col("ward") == WARD_B, pl.col("variable") == "heart_rate")["stale"].to_list() == [True]


def test_quarantine_summary_counts_rows_per_table_and_rule(engine):
    summary = read_models.quarantine_summary(engine)
    assert summary.select("table_name", "rule", "rows").rows() == [
        ("observations", "out_of_range", 2),
        ("patients", "unparseable_value", 1),
    ]


def test_recent_runs_list_pipeline_runs_and_job_firings_newest_first(engine):
    runs = read_models.recent_runs(engine)
    assert runs.row(0, named=True)["source"] == "job"
    assert runs.row(0, named=True)["error"] == "IngestError: feed.csv"
    assert runs.filter(pl.col("source") == "run").height == 3


def test_scoring_freshness_is_stale_when_the_latest_hour_is_old(home, engine):
    assert read_models.scoring_freshness(engine, model_version=home.version, now=NOW).stale is False
    assert read_models.scoring_freshness(engine, model_version=home.version, now=hour_plus(5)).stale is True
