"""The point-in-time hourly feature matrix: values checked by hand on one small stay, the
grid's extent, and the leakage test (a matrix built later agrees, row for row, with one
built from the data as it stood at time T)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from riskcast.catalog import load_catalog
from riskcast.contracts import UTC_DATETIME
from riskcast.errors import FeatureError
from riskcast.features.build import META_COLUMNS, build_features, feature_columns
from riskcast.lake import LAKE_SCHEMAS

ENCOUNTER_SCHEMA = LAKE_SCHEMAS["encounters"]
PATIENT_SCHEMA = LAKE_SCHEMAS["patients"]
OBSERVATION_SCHEMA = {"encounter_id": pl.String, "charttime": UTC_DATETIME, "variable": pl.String, "value": pl.Float64}


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def encounters(*rows: tuple) -> pl.DataFrame:
    """(encounter_id, patient_id, admit_time, discharge_time) rows, on ward-1 at site-a."""
    return pl.DataFrame(
        [(*row, "ward-1", "site-a") for row in rows], schema=ENCOUNTER_SCHEMA, orient="row"
    )


def patients(*rows: tuple) -> pl.DataFrame:
    """(patient_id, birth_year, age, sex) rows."""
    return pl.DataFrame(
        [(*row, "group-a", "site-a") for row in rows], schema=PATIENT_SCHEMA, orient="row"
    )


def observations(*rows: tuple) -> pl.DataFrame:
    """(encounter_id, charttime, variable, value) rows in canonical units."""
    return pl.DataFrame(list(rows), schema=OBSERVATION_SCHEMA, orient="row")


ONE_STAY = encounters(("E1", "P1", utc(2024, 1, 10, 8, 20), utc(2024, 1, 10, 15, 30)))
ONE_PATIENT = patients(("P1", 1950, None, "male"))
# Heart rate at 08:30, 09:30, 10:00, 11:30 and 14:10; creatinine at 07:00, before admission.
# Given out of time order on purpose: "last" must mean latest charttime, not latest row.
ONE_STAY_OBSERVATIONS = observations(
    ("E1", utc(2024, 1, 10, 11, 30), "heart_rate", 110.0),
    ("E1", utc(2024, 1, 10, 9, 30), "heart_rate", 90.0),
    ("E1", utc(2024, 1, 10, 8, 30), "heart_rate", 80.0),
    ("E1", utc(2024, 1, 10, 14, 10), "heart_rate", 70.0),
    ("E1", utc(2024, 1, 10, 10, 0), "heart_rate", 100.0),
    ("E1", utc(2024, 1, 10, 7, 0), "creatinine", 88.0),
)


@pytest.fixture(scope="module")
def one_stay() -> pl.DataFrame:
    return build_features(ONE_STAY_OBSERVATIONS, ONE_STAY, ONE_PATIENT)


def row_at(frame: pl.DataFrame, hour: int, encounter_id: str = "E1") -> dict:
    rows = frame.filter((pl.col("encounter_id") == encounter_id) & (pl.col("time").dt.hour() == hour))
    assert rows.height == 1, rows
    return rows.row(0, named=True)


# ---------------------------------------------------------------------------- the grid


def test_grid_runs_from_the_first_whole_hour_after_admission_to_discharge(one_stay):
    assert one_stay["time"].to_list() == [utc(2024, 1, 10, h) for h in range(9, 16)]
    assert one_stay["time"].dtype == UTC_DATETIME


def test_admission_on_the_hour_starts_the_grid_at_that_hour():
    stay = encounters(("E1", "P1", utc(2024, 1, 10, 9), utc(2024, 1, 10, 11)))
    frame = build_features(observations(), stay, ONE_PATIENT)
    assert frame["time"].to_list() == [utc(2024, 1, 10, 9), utc(2024, 1, 10, 10), utc(2024, 1, 10, 11)]


def test_an_admitted_patient_runs_to_at():
    stay = encounters(("E1", "P1", utc(2024, 1, 10, 8, 20), None))
    frame = build_features(ONE_STAY_OBSERVATIONS, stay, ONE_PATIENT, at=utc(2024, 1, 10, 17, 45))
    assert frame["time"].to_list() == [utc(2024, 1, 10, h) for h in range(9, 18)]


def test_a_stay_discharged_after_at_ends_at_at():
    frame = build_features(ONE_STAY_OBSERVATIONS, ONE_STAY, ONE_PATIENT, at=utc(2024, 1, 10, 12))
    assert frame["time"].max() == utc(2024, 1, 10, 12)


def test_an_admitted_patient_runs_to_the_last_charttime_without_at():
    stay = encounters(("E1", "P1", utc(2024, 1, 10, 8, 20), None))
    frame = build_features(ONE_STAY_OBSERVATIONS, stay, ONE_PATIENT)
    assert frame["time"].max() == utc(2024, 1, 10, 14)


def test_a_discharged_stay_runs_to_discharge_even_after_the_last_charttime():
    frame = build_features(ONE_STAY_OBSERVATIONS.filter(pl.col("variable") == "creatinine"), ONE_STAY, ONE_PATIENT)
    assert frame["time"].max() == utc(2024, 1, 10, 15)


def test_encounters_admitted_after_at_have_no_rows():
    stays = encounters(
        ("E1", "P1", utc(2024, 1, 10, 8, 20), None), ("E2", "P1", utc(2024, 1, 10, 12, 5), None)
    )
    frame = build_features(observations(), stays, ONE_PATIENT, at=utc(2024, 1, 10, 12))
    assert frame["encounter_id"].unique().to_list() == ["E1"]


def test_encounter_ids_restrict_the_matrix():
    stays = encounters(
        ("E1", "P1", utc(2024, 1, 10, 8), None), ("E2", "P1", utc(2024, 1, 10, 8), None)
    )
    frame = build_features(observations(), stays, ONE_PATIENT, at=utc(2024, 1, 10, 10), encounter_ids=["E2"])
    assert frame["encounter_id"].unique().to_list() == ["E2"]


def test_a_naive_at_is_refused():
    with pytest.raises(FeatureError, match=r"`at` must be timezone-aware \(UTC\); got a naive datetime"):
        build_features(ONE_STAY_OBSERVATIONS, ONE_STAY, ONE_PATIENT, at=datetime(2024, 1, 10, 12))


def test_rows_are_sorted_by_encounter_and_time():
    stays = encounters(
        ("E2", "P1", utc(2024, 1, 10, 8), utc(2024, 1, 10, 12)),
        ("E1", "P1", utc(2024, 1, 10, 9), utc(2024, 1, 10, 11)),
        ("E3", "P1", utc(2024, 1, 10, 7), utc(2024, 1, 10, 10)),
    )
    frame = build_features(observations(), stays, ONE_PATIENT)
    assert frame.select("encounter_id", "time").rows() == sorted(frame.select("encounter_id", "time").rows())


# ---------------------------------------------------------------------------- values by hand


def test_last_value_is_the_latest_charttime_at_or_before_the_row(one_stay):
    # 14:10 is after 14:00, so the 14:00 row still shows 11:30's value.
    assert one_stay["heart_rate_last"].to_list() == [80.0, 100.0, 100.0, 110.0, 110.0, 110.0, 70.0]


def test_an_observation_on_the_hour_is_seen_by_that_hours_row(one_stay):
    assert row_at(one_stay, 10)["heart_rate_hours_since"] == 0.0


def test_hours_since_the_last_measurement(one_stay):
    # Last heart rate at 08:30, 10:00, 10:00, 11:30, 11:30, 11:30, 14:10.
    assert one_stay["heart_rate_hours_since"].to_list() == pytest.approx([0.5, 0.0, 1.0, 0.5, 1.5, 2.5, 50 / 60])


def test_count_in_24_hours(one_stay):
    assert one_stay["heart_rate_count_24h"].to_list() == [1.0, 3.0, 3.0, 4.0, 4.0, 4.0, 5.0]


def test_rolling_mean_min_max_std_over_6_hours(one_stay):
    # At 14:00 the window (08:00, 14:00] holds 80, 90, 100, 110; at 15:00 (09:00, 15:00]
    # holds 90, 100, 110, 70 (08:30 has left it).
    at_14, at_15 = row_at(one_stay, 14), row_at(one_stay, 15)
    assert at_14["heart_rate_mean_6h"] == pytest.approx(95.0)
    assert (at_14["heart_rate_min_6h"], at_14["heart_rate_max_6h"]) == (80.0, 110.0)
    assert at_14["heart_rate_std_6h"] == pytest.approx(np.std([80, 90, 100, 110], ddof=1))
    assert at_15["heart_rate_mean_6h"] == pytest.approx(92.5)
    assert (at_15["heart_rate_min_6h"], at_15["heart_rate_max_6h"]) == (70.0, 110.0)
    assert at_15["heart_rate_std_6h"] == pytest.approx(np.std([90, 100, 110, 70], ddof=1))


def test_std_needs_two_values(one_stay):
    assert row_at(one_stay, 9)["heart_rate_std_6h"] is None


def test_24_hour_window_keeps_what_the_6_hour_window_dropped(one_stay):
    at_15 = row_at(one_stay, 15)
    assert at_15["heart_rate_mean_24h"] == pytest.approx(90.0)
    assert (at_15["heart_rate_min_24h"], at_15["heart_rate_max_24h"]) == (70.0, 110.0)
    assert at_15["heart_rate_std_24h"] == pytest.approx(np.std([80, 90, 100, 110, 70], ddof=1))


def test_slope_is_in_units_per_hour(one_stay):
    # At 11:00: 80 at 08:30, 90 at 09:30, 100 at 10:00 -> least-squares slope 90/7 per hour.
    assert row_at(one_stay, 11)["heart_rate_slope_6h"] == pytest.approx(90 / 7)
    assert row_at(one_stay, 9)["heart_rate_slope_6h"] is None


def test_slope_of_a_steady_rise_is_its_rate():
    stay = encounters(("E1", "P1", utc(2024, 1, 10, 8), utc(2024, 1, 10, 14)))
    rise = observations(*[("E1", utc(2024, 1, 10, 8, 30) + timedelta(minutes=30 * i), "resp_rate", 12.0 + i) for i in range(8)])
    frame = build_features(rise, stay, ONE_PATIENT)
    assert row_at(frame, 12)["resp_rate_slope_6h"] == pytest.approx(2.0)


def test_change_is_last_minus_the_encounters_first_value(one_stay):
    assert one_stay["heart_rate_change"].to_list() == [0.0, 20.0, 20.0, 30.0, 30.0, 30.0, -10.0]


def test_observation_before_admission_counts_in_the_first_hour(one_stay):
    first = row_at(one_stay, 9)
    assert first["creatinine_last"] == 88.0
    assert first["creatinine_hours_since"] == 2.0
    assert first["creatinine_count_24h"] == 1.0


def test_labs_have_last_hours_since_and_count_but_no_windows(one_stay):
    assert {"creatinine_last", "creatinine_hours_since", "creatinine_count_24h"} <= set(one_stay.columns)
    assert not {"creatinine_mean_6h", "creatinine_slope_6h", "creatinine_change"} & set(one_stay.columns)


def test_every_catalogue_variable_has_its_columns_even_when_never_measured(one_stay):
    catalog = load_catalog()
    for name in catalog.vitals:
        for suffix in ("last", "hours_since", "count_24h", "mean_6h", "std_24h", "slope_6h", "change"):
            assert f"{name}_{suffix}" in one_stay.columns
    assert one_stay["gcs_last"].null_count() == one_stay.height
    assert one_stay["gcs_count_24h"].to_list() == [0.0] * one_stay.height


def test_counts_leave_the_24_hour_window():
    stay = encounters(("E1", "P1", utc(2024, 1, 10, 9), utc(2024, 1, 11, 12)))
    frame = build_features(observations(("E1", utc(2024, 1, 10, 9, 30), "lactate", 2.0)), stay, ONE_PATIENT)
    day_later = frame.filter(pl.col("time").is_in([utc(2024, 1, 11, 9), utc(2024, 1, 11, 10)]))
    assert day_later["lactate_count_24h"].to_list() == [1.0, 0.0]
    assert day_later["lactate_last"].to_list() == [2.0, 2.0]
    assert day_later["lactate_hours_since"].to_list() == [23.5, 24.5]


def test_news2_is_computed_from_the_last_values():
    stay = encounters(("E1", "P1", utc(2024, 1, 10, 8), utc(2024, 1, 10, 12)))
    at = utc(2024, 1, 10, 9, 15)  # first seen by the 10:00 row
    vitals = observations(
        ("E1", at, "resp_rate", 22.0),  # 2
        ("E1", at, "spo2", 95.0),  # 1
        ("E1", at, "sbp", 105.0),  # 1
        ("E1", at, "heart_rate", 95.0),  # 1
        ("E1", at, "avpu", 0.0),  # 0
        ("E1", at, "temperature", 38.5),  # 1
        ("E1", utc(2024, 1, 10, 10, 30), "o2_flow", 2.0),  # 2 from 11:00
    )
    frame = build_features(vitals, stay, ONE_PATIENT)
    assert frame["news2"].to_list() == [0, 0, 6, 8, 8]
    assert frame["news2_missing"].to_list() == [6, 6, 0, 0, 0]
    assert row_at(frame, 10)["news2_resp_rate"] == 2
    assert row_at(frame, 10)["shock_index"] == pytest.approx(95 / 105)


@pytest.mark.parametrize(
    ("birth_year", "age", "band"),
    [(1980, None, "18-44"), (1979, None, "45-64"), (None, 64.9, "45-64"), (None, 65.0, "65-79"), (1944, None, "80+")],
)
def test_age_band_from_age_or_birth_year(birth_year, age, band):
    frame = build_features(observations(), ONE_STAY, patients(("P1", birth_year, age, "female")))
    assert frame["age_band"].unique().to_list() == [band]
    assert frame["age"].unique().to_list() == [age if age is not None else 2024.0 - birth_year]


def test_meta_columns_and_demographics(one_stay):
    assert one_stay.columns[: len(META_COLUMNS)] == META_COLUMNS
    first = row_at(one_stay, 9)
    assert (first["patient_id"], first["site"], first["ward"], first["sex"], first["race_ethnicity"]) == (
        "P1", "site-a", "ward-1", "male", "group-a",
    )  # fmt: skip
    assert first["age_band"] == "65-79"
    assert first["sex_male"] == 1.0
    assert first["hours_since_admission"] == pytest.approx(40 / 60)


def test_feature_columns_leave_out_keys_and_meta(one_stay):
    features = feature_columns(one_stay)
    assert not set(features) & set(META_COLUMNS)
    assert {"heart_rate_last", "news2", "age", "sex_male", "hours_since_admission"} <= set(features)
    assert feature_columns(one_stay.lazy()) == features


# ---------------------------------------------------------------------------- leakage

COHORT_START = utc(2024, 3, 1)
COHORT_END = utc(2024, 3, 8)
# variable -> (low, high) in the canonical unit
COHORT_VARIABLES = {
    "heart_rate": (45, 140), "resp_rate": (8, 32), "sbp": (80, 180), "dbp": (40, 100), "temperature": (35.0, 39.5),
    "spo2": (85, 100), "o2_flow": (0, 6), "fio2": (0.21, 0.6), "avpu": (0, 4), "gcs": (3, 15), "lactate": (0.5, 6.0),
    "creatinine": (40, 400), "wbc": (2, 25), "potassium": (3.0, 6.0), "glucose": (3, 20), "paco2": (25, 60),
}  # fmt: skip


@cache
def cohort() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """~20 stays over a week with random vitals and labs: some discharged, some still in.

    Charttimes are minute-resolution and include times on the hour and before admission
    (emergency department labs); a few discharges fall exactly on the hour."""
    rng = np.random.default_rng(20240301)
    stays, rows = [], []
    for i in range(22):
        admit = COHORT_START + timedelta(minutes=int(rng.integers(0, 4 * 24 * 60)))
        if i % 5 == 0:
            admit = admit.replace(minute=0)
        length = timedelta(minutes=int(rng.integers(3 * 60, 3 * 24 * 60)))
        discharge = admit + length if i % 3 != 0 else None
        if discharge is not None and i % 4 == 0:
            discharge = discharge.replace(minute=0)
        stays.append((f"E{i:02d}", f"P{i % 14:02d}", admit, discharge))
        end = min(discharge or COHORT_END, COHORT_END)
        span_minutes = int((end - admit).total_seconds() // 60)
        for _ in range(int(rng.integers(1, 3) * span_minutes // 60)):
            variable = str(rng.choice(list(COHORT_VARIABLES)))
            low, high = COHORT_VARIABLES[variable]
            minute = int(rng.integers(-6 * 60, span_minutes))
            if rng.random() < 0.2:
                minute -= minute % 60
            value = float(rng.integers(low, high + 1)) if variable in ("avpu", "gcs") else round(float(rng.uniform(low, high)), 2)
            rows.append((f"E{i:02d}", admit + timedelta(minutes=minute), variable, value))
    obs = observations(*rows).unique(["encounter_id", "charttime", "variable"], keep="first", maintain_order=True)
    people = patients(
        *[(f"P{i:02d}", 1930 + 4 * i if i % 3 else None, 70.5 if i % 3 == 0 else None, ["female", "male", "other"][i % 3]) for i in range(14)]
    )
    return obs, encounters(*stays), people


@cache
def built_late() -> pl.DataFrame:
    """The matrix built a day after the cohort's last data."""
    obs, stays, people = cohort()
    return build_features(obs, stays, people, at=COHORT_END + timedelta(days=1))


def as_it_stood_at(moment: datetime) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The data as a system running at `moment` would have had it."""
    obs, stays, people = cohort()
    return (
        obs.filter(pl.col("charttime") <= moment),
        stays.filter(pl.col("admit_time") <= moment).with_columns(
            pl.when(pl.col("discharge_time") <= moment).then(pl.col("discharge_time")).alias("discharge_time")
        ),
        people,
    )


def assert_no_leakage(moment: datetime) -> pl.DataFrame:
    """Rows up to `moment` built then equal rows built later: the same rows, the same nulls,
    the same values to 1e-9 relative (polars' rolling sums may differ in the last bits from
    run to run; a leak changes values far more, see test_the_leakage_check_can_fail)."""
    then = build_features(*as_it_stood_at(moment), at=moment)
    later = built_late().filter(pl.col("time") <= moment)
    assert_frame_equal(then, later, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    return then


def test_cohort_is_varied_enough_for_the_leakage_test():
    obs, stays, _ = cohort()
    assert stays.height >= 20
    assert stays["discharge_time"].null_count() >= 5
    assert obs["variable"].n_unique() == len(COHORT_VARIABLES)
    assert obs.join(stays, on="encounter_id").filter(pl.col("charttime") < pl.col("admit_time")).height > 10
    assert obs.filter(pl.col("charttime").dt.minute() == 0).height > 50


@pytest.mark.parametrize(
    "moment",
    [
        utc(2024, 3, 2, 6, 0),
        utc(2024, 3, 3, 14, 37),
        utc(2024, 3, 4, 23, 59, 59),
        utc(2024, 3, 6, 1, 0),
        utc(2024, 3, 7, 12, 30),
    ],
)
def test_rows_up_to_t_are_identical_when_built_from_the_data_as_it_stood_at_t(moment):
    then = assert_no_leakage(moment)
    # Not vacuous: several stays have rows, with measured values and some still admitted.
    assert then["encounter_id"].n_unique() >= 5
    assert then["heart_rate_last"].null_count() < then.height / 2
    assert then["creatinine_last"].null_count() < then.height / 2
    assert then["heart_rate_slope_6h"].null_count() < then.height


def test_no_leakage_at_an_observation_time_and_at_a_discharge_time():
    obs, stays, _ = cohort()
    for moment in [obs["charttime"].sort()[obs.height // 2], stays["discharge_time"].drop_nulls().sort()[2]]:
        assert_no_leakage(moment)


@settings(max_examples=15, deadline=None)
@given(minutes=st.integers(min_value=0, max_value=7 * 24 * 60))
def test_no_leakage_at_any_time(minutes):
    assert_no_leakage(COHORT_START + timedelta(minutes=minutes))


def test_changing_the_future_does_not_change_the_past():
    moment = utc(2024, 3, 4, 10, 30)
    obs, stays, people = cohort()
    rng = np.random.default_rng(7)
    future = pl.col("charttime") > moment
    altered_obs = pl.concat(
        [
            obs.with_columns(pl.when(future).then(pl.col("value") * 1.5 + 1).otherwise(pl.col("value")).alias("value")),
            # extra measurements after T, some within the same clock hour as T
            observations(*[(f"E{i:02d}", moment + timedelta(minutes=int(m)), "heart_rate", 150.0) for i, m in zip(range(22), rng.integers(1, 600, 22))]),
        ]
    ).unique(["encounter_id", "charttime", "variable"], keep="first")
    altered_stays = stays.with_columns(
        pl.when(pl.col("discharge_time") > moment).then(pl.col("discharge_time") + timedelta(hours=5)).otherwise(pl.col("discharge_time")).alias("discharge_time")
    )
    late = COHORT_END + timedelta(days=1)
    original = build_features(obs, stays, people, at=late).filter(pl.col("time") <= moment)
    altered = build_features(altered_obs, altered_stays, people, at=late).filter(pl.col("time") <= moment)
    assert_frame_equal(original, altered, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_the_leakage_check_can_fail():
    # Sanity check of the harness: an observation moved back in time does change the past.
    moment = utc(2024, 3, 4, 10, 30)
    obs, stays, people = cohort()
    late = COHORT_END + timedelta(days=1)
    moved = obs.with_columns(
        pl.when(pl.col("charttime") > moment).then(pl.col("charttime") - timedelta(hours=3)).otherwise(pl.col("charttime")).alias("charttime")
    ).unique(["encounter_id", "charttime", "variable"], keep="first")
    original = build_features(obs, stays, people, at=late).filter(pl.col("time") <= moment)
    changed = build_features(moved, stays, people, at=late).filter(pl.col("time") <= moment)
    with pytest.raises(AssertionError):
        assert_frame_equal(original, changed, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_leakage_cohort_values_are_finite():
    frame = built_late()
    numeric = [c for c, t in frame.schema.items() if t == pl.Float64]
    nan_or_inf = frame.select(pl.sum_horizontal([pl.col(c).is_infinite() | pl.col(c).is_nan() for c in numeric]).sum()).item()
    assert nan_or_inf == 0
    assert not math.isnan(frame["heart_rate_mean_24h"].mean())


# --------------------------------------------------------------------------- latest_features


def _lake_tables_from_synth(n_encounters: int, seed: int) -> dict[str, pl.DataFrame]:
    from riskcast.contracts import validate_encounters, validate_observations, validate_patients
    from riskcast.synth import generate_cohort

    raw = generate_cohort(n_encounters, seed=seed, malformed_rate=0.0)

    def sourced(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.lit("x").alias("_source_file"), pl.int_range(2, frame.height + 2).alias("_source_line"))

    encounters = validate_encounters(sourced(raw["encounters"])).valid
    return {
        "patients": validate_patients(sourced(raw["patients"])).valid,
        "encounters": encounters,
        "observations": validate_observations(sourced(raw["observations"]), encounters=encounters).valid,
    }


@pytest.mark.parametrize("at", ["2026-01-15T12:00:00+00:00", "2026-01-02T07:00:00+00:00", "2025-11-20T03:00:00+00:00"])
def test_latest_features_equal_the_full_build_at_that_hour(at: str) -> None:
    from riskcast.features.build import latest_features

    tables = _lake_tables_from_synth(150, seed=5)
    when = datetime.fromisoformat(at)
    full = build_features(tables["observations"], tables["encounters"], tables["patients"], at=when).filter(
        pl.col("time") == when
    )
    latest = latest_features(tables["observations"], tables["encounters"], tables["patients"], at=when)
    assert latest.height == full.height
    assert_frame_equal(
        latest.sort("encounter_id"), full.sort("encounter_id"), check_exact=False, rel_tol=1e-9, abs_tol=1e-9
    )


# --------------------------------------------------------------------------- feature families

from riskcast.features.families import DEFAULT_FAMILIES, FAMILIES, family_of, parse_families  # noqa: E402


@pytest.mark.parametrize("family", FAMILIES)
def test_switching_a_family_off_removes_exactly_its_columns(family):
    everything = build_features(ONE_STAY_OBSERVATIONS, ONE_STAY, ONE_PATIENT, families=FAMILIES)
    without = build_features(ONE_STAY_OBSERVATIONS, ONE_STAY, ONE_PATIENT,
                             families=[f for f in FAMILIES if f != family])
    removed = set(everything.columns) - set(without.columns)
    assert removed and removed == {c for c in feature_columns(everything) if family_of(c) == family}
    assert set(without.columns) <= set(everything.columns)
    kept = [c for c in without.columns]
    assert_frame_equal(without, everything.select(kept))


def test_every_feature_column_has_one_family_and_every_family_has_columns():
    frame = build_features(ONE_STAY_OBSERVATIONS, ONE_STAY, ONE_PATIENT, families=FAMILIES)
    families = {family_of(c) for c in feature_columns(frame)}
    assert families == set(FAMILIES)


def test_family_choices_read_like_the_command_line():
    assert parse_families("all") == FAMILIES
    assert parse_families("default") == DEFAULT_FAMILIES
    assert "process" not in parse_families("default,-process")
    assert parse_families("values,clocks") == ("values", "clocks")
    with pytest.raises(FeatureError, match="unknown feature family 'vibes'"):
        parse_families("values,vibes")


def test_the_baseline_families_by_hand(one_stay):
    frame = build_features(ONE_STAY_OBSERVATIONS, ONE_STAY, ONE_PATIENT, families=FAMILIES)
    # heart rate 80 (08:30, first hour 09:00), 90 (09:30), 100 (10:00), 110 (11:30), 70 (14:10)
    at_12 = row_at(frame, 12)
    assert at_12["heart_rate_delta"] == pytest.approx(10.0)  # 110 - 100
    assert at_12["heart_rate_from_mean"] == pytest.approx(110 - 95.0)
    assert (at_12["heart_rate_min_stay"], at_12["heart_rate_max_stay"]) == (80.0, 110.0)
    assert at_12["heart_rate_count_stay"] == 4.0
    # the stay's first 6 hourly rows (09:00..14:00) hold 80, 90, 100, 110; 14:10's 70 falls in
    # the 15:00 row, after the baseline: 70 - 95
    assert row_at(frame, 15)["heart_rate_from_baseline"] == pytest.approx(70 - 95.0)
    assert row_at(frame, 11)["heart_rate_measured"] == 0.0 and row_at(frame, 12)["heart_rate_measured"] == 1.0
    # creatinine (a lab) has a change from its last value only once measured twice
    assert row_at(frame, 12)["creatinine_delta"] is None


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_keeps_the_point_in_time_property(family):
    obs, stays, people = cohort()
    late = build_features(obs, stays, people, at=COHORT_END + timedelta(days=1), families=[family])
    for moment in (utc(2024, 3, 3, 14, 37), utc(2024, 3, 6, 1, 0)):
        then = build_features(*as_it_stood_at(moment), at=moment, families=[family])
        assert_frame_equal(then, late.filter(pl.col("time") <= moment), check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
        assert then.width > len(META_COLUMNS)
