"""riskcast.synth: the synthetic cohort, checked with the real contracts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from riskcast.catalog import TABLES, load_contract
from riskcast.contracts import (
    Validated,
    validate_encounters,
    validate_observations,
    validate_outcomes,
    validate_patients,
)
from riskcast.errors import ConfigError
from riskcast.synth import DEFAULT_NOW, PULSE_OX_AFFECTED_GROUP, generate_cohort, write_cohort, write_synthetic_cohort

N = 400
SEED = 7


def with_provenance(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """What an ingest adapter adds: the file and line each row came from."""
    return frame.with_columns(
        pl.lit(f"{name}.parquet").alias("_source_file"), pl.int_range(2, frame.height + 2).alias("_source_line")
    )


def validate_all(tables: dict[str, pl.DataFrame]) -> dict[str, Validated]:
    encounters = validate_encounters(with_provenance(tables["encounters"], "encounters"))
    return {
        "patients": validate_patients(with_provenance(tables["patients"], "patients")),
        "encounters": encounters,
        "observations": validate_observations(
            with_provenance(tables["observations"], "observations"), encounters=encounters.valid
        ),
        "outcomes": validate_outcomes(with_provenance(tables["outcomes"], "outcomes"), known_encounters=encounters.valid),
    }


@pytest.fixture(scope="module")
def clean() -> dict[str, pl.DataFrame]:
    return generate_cohort(N, seed=SEED, malformed_rate=0)


@pytest.fixture(scope="module")
def clean_valid(clean: dict[str, pl.DataFrame]) -> dict[str, Validated]:
    return validate_all(clean)


@pytest.fixture(scope="module")
def malformed() -> dict[str, pl.DataFrame]:
    return generate_cohort(N, seed=SEED, malformed_rate=0.02)


@pytest.fixture(scope="module")
def unbiased() -> dict[str, pl.DataFrame]:
    return generate_cohort(N, seed=SEED, malformed_rate=0, pulse_ox_bias=False)


def encounters_of_group(tables: dict[str, pl.DataFrame], group: str) -> pl.Series:
    patients = tables["patients"].filter(pl.col("race_ethnicity") == group)["patient_id"]
    return tables["encounters"].filter(pl.col("patient_id").is_in(patients.implode()))["encounter_id"]


def spo2_values(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return tables["observations"].filter(pl.col("variable") == "spo2").with_columns(pl.col("value").cast(pl.Float64))


# ------------------------------------------------------------------ shape and determinism


def test_tables_have_exactly_the_contract_columns_as_text(clean: dict[str, pl.DataFrame]) -> None:
    assert list(clean) == list(TABLES)
    for table, frame in clean.items():
        assert frame.columns == load_contract(table).column_names, table
        assert all(dtype == pl.String for dtype in frame.dtypes), table
        assert frame.height > 0, table


def test_times_are_iso_8601_utc_with_z(clean: dict[str, pl.DataFrame]) -> None:
    pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
    assert clean["observations"]["charttime"].str.contains(pattern).all()
    assert clean["encounters"]["admit_time"].str.contains(pattern).all()
    assert clean["outcomes"]["event_time"].str.contains(pattern).all()


def test_same_seed_gives_the_same_cohort_and_another_seed_does_not(clean: dict[str, pl.DataFrame]) -> None:
    again = generate_cohort(N, seed=SEED, malformed_rate=0)
    other = generate_cohort(N, seed=SEED + 1, malformed_rate=0)
    assert all(clean[t].equals(again[t]) for t in TABLES)
    assert not clean["observations"].equals(other["observations"])


def test_malformed_rows_leave_the_clean_rows_unchanged(
    clean: dict[str, pl.DataFrame], malformed: dict[str, pl.DataFrame]
) -> None:
    for table in TABLES:
        assert malformed[table].height > clean[table].height, table
        kept = malformed[table].join(clean[table], on=clean[table].columns, how="semi", nulls_equal=True)
        assert kept.unique().height == clean[table].height, table


# ------------------------------------------------------------------ contracts


def test_clean_cohort_passes_every_contract(clean_valid: dict[str, Validated]) -> None:
    for table, validated in clean_valid.items():
        assert validated.quarantined.height == 0, (table, validated.counts_by_rule)


def test_malformed_observations_are_all_quarantined_under_several_rules(
    clean: dict[str, pl.DataFrame], malformed: dict[str, pl.DataFrame], clean_valid: dict[str, Validated]
) -> None:
    planted = malformed["observations"].height - clean["observations"].height
    result = validate_all(malformed)["observations"]
    assert abs(result.quarantined.height - planted) <= max(2, planted // 50)
    assert {"unknown_unit", "out_of_range", "duplicate", "unparseable_time", "unknown_variable", "unparseable_value"} <= set(
        result.counts_by_rule
    )
    assert result.valid.drop("source_line").equals(clean_valid["observations"].valid.drop("source_line"))


def test_malformed_rows_in_the_other_tables_are_quarantined(
    clean: dict[str, pl.DataFrame], malformed: dict[str, pl.DataFrame]
) -> None:
    results = validate_all(malformed)
    for table in ("patients", "encounters", "outcomes"):
        planted = malformed[table].height - clean[table].height
        assert results[table].quarantined.height == planted, (table, results[table].counts_by_rule)


def test_values_sent_in_other_units_come_back_canonical(clean: dict[str, pl.DataFrame], clean_valid: dict[str, Validated]) -> None:
    units = clean["observations"].group_by("variable").agg(pl.col("unit").unique())
    sent = dict(units.rows())
    assert {"Cel", "degF"} <= set(sent["temperature"])
    assert {"umol/L", "mg/dL"} <= set(sent["creatinine"])
    assert {"mmol/L", "mg/dL"} <= set(sent["glucose"])
    valid = clean_valid["observations"].valid.join(
        clean_valid["encounters"].valid.select("encounter_id", "site"), on="encounter_id"
    )
    medians = valid.group_by("variable", "site").agg(pl.col("value").median()).pivot(on="site", index="variable", values="value")
    by_variable = {row[0]: row[1:] for row in medians.rows()}
    for variable, low, high in [("temperature", 36.3, 37.3), ("creatinine", 60, 130), ("glucose", 4.5, 8.5)]:
        assert all(low < median < high for median in by_variable[variable]), (variable, by_variable[variable])


def test_avpu_is_sent_as_acvpu_letters(clean: dict[str, pl.DataFrame]) -> None:
    letters = set(clean["observations"].filter(pl.col("variable") == "avpu")["value"].unique())
    assert letters <= {"A", "C", "V", "P", "U"}
    assert {"A", "C"} <= letters


# ------------------------------------------------------------------ realism


def test_deterioration_rate_is_between_5_and_10_percent(clean: dict[str, pl.DataFrame]) -> None:
    outcomes = clean["outcomes"]
    rate = outcomes["encounter_id"].n_unique() / clean["encounters"].height
    assert 0.05 <= rate <= 0.10
    assert set(outcomes["event_type"]) == {"icu_transfer", "death", "rapid_response"}


def test_icu_transfer_and_death_end_the_stay_but_rapid_response_does_not(clean: dict[str, pl.DataFrame]) -> None:
    events = clean["outcomes"].join(clean["encounters"], on="encounter_id")
    ending = events.filter(pl.col("event_type").is_in(["icu_transfer", "death"]))
    assert (ending["event_time"] == ending["discharge_time"]).all()
    rapid = events.filter(pl.col("event_type") == "rapid_response", pl.col("discharge_time").is_not_null())
    assert (rapid["event_time"] < rapid["discharge_time"]).all()


def test_admitted_encounters_have_no_discharge_and_data_up_to_now(clean_valid: dict[str, Validated]) -> None:
    encounters = clean_valid["encounters"].valid
    admitted = encounters.filter(pl.col("discharge_time").is_null())
    assert admitted.height == round(0.15 * N)
    observations = clean_valid["observations"].valid
    assert observations["charttime"].max() <= DEFAULT_NOW
    latest = observations.join(admitted, on="encounter_id", how="semi")["charttime"].max()
    assert latest >= DEFAULT_NOW - timedelta(hours=2)
    assert (encounters["admit_time"] >= DEFAULT_NOW - timedelta(days=61)).all()
    assert encounters.filter(pl.col("discharge_time").is_not_null())["discharge_time"].max() <= DEFAULT_NOW


def test_now_moves_the_whole_cohort() -> None:
    now = datetime(2030, 6, 1, 8, 30, tzinfo=timezone.utc)
    tables = generate_cohort(50, seed=1, now=now, malformed_rate=0)
    latest = pl.Series(tables["observations"]["charttime"]).str.to_datetime(time_zone="UTC").max()
    assert now - timedelta(hours=3) <= latest <= now


def test_stays_of_one_patient_never_overlap(clean_valid: dict[str, Validated]) -> None:
    encounters = clean_valid["encounters"].valid.sort("patient_id", "admit_time")
    previous_end = pl.col("discharge_time").shift(1).over("patient_id")
    overlapping = encounters.filter(previous_end.is_not_null() & (pl.col("admit_time") < previous_end))
    assert overlapping.height == 0
    assert encounters["patient_id"].n_unique() < encounters.height  # some patients come back


def test_encounters_spread_over_sites_and_wards(clean: dict[str, pl.DataFrame]) -> None:
    encounters = clean["encounters"]
    assert set(encounters["site"]) == {"north", "south"}
    assert (encounters["ward"].str.split("-").list.first() == encounters["site"]).all()
    assert encounters["ward"].n_unique() >= 8


def test_vitals_are_measured_more_often_before_a_deterioration(clean_valid: dict[str, Validated]) -> None:
    heart_rate = clean_valid["observations"].valid.filter(pl.col("variable") == "heart_rate")
    events = clean_valid["outcomes"].valid.group_by("encounter_id").agg(pl.col("event_time").min())
    before = heart_rate.join(events, on="encounter_id").filter(
        (pl.col("charttime") <= pl.col("event_time")) & (pl.col("charttime") > pl.col("event_time") - timedelta(hours=6))
    )
    per_six_hours_before = before.group_by("encounter_id").len()["len"].mean()
    stays = clean_valid["encounters"].valid.filter(pl.col("discharge_time").is_not_null())
    hours = ((stays["discharge_time"] - stays["admit_time"]).dt.total_seconds() / 3600).sum()
    per_six_hours_overall = heart_rate.join(stays, on="encounter_id", how="semi").height / hours * 6
    assert per_six_hours_before > 1.5 * per_six_hours_overall


def test_heart_rate_and_respiratory_rate_rise_before_a_deterioration(clean_valid: dict[str, Validated]) -> None:
    observations = clean_valid["observations"].valid
    events = clean_valid["outcomes"].valid.group_by("encounter_id").agg(pl.col("event_time").min())
    near = observations.join(events, on="encounter_id").filter(
        (pl.col("charttime") <= pl.col("event_time")) & (pl.col("charttime") > pl.col("event_time") - timedelta(hours=3))
    )
    quiet = observations.join(events, on="encounter_id", how="anti")
    for variable in ("heart_rate", "resp_rate", "lactate"):
        assert near.filter(pl.col("variable") == variable)["value"].median() > quiet.filter(pl.col("variable") == variable)["value"].median(), variable
    assert near.filter(pl.col("variable") == "sbp")["value"].median() < quiet.filter(pl.col("variable") == "sbp")["value"].median()


# ------------------------------------------------------------------ the planted pulse-oximetry bias


def test_pulse_ox_bias_raises_spo2_readings_of_the_affected_group_only(
    clean: dict[str, pl.DataFrame], unbiased: dict[str, pl.DataFrame]
) -> None:
    affected = encounters_of_group(clean, PULSE_OX_AFFECTED_GROUP).implode()
    for table in ("patients", "encounters", "outcomes"):
        assert clean[table].equals(unbiased[table])
    unaffected_biased = clean["observations"].filter(~pl.col("encounter_id").is_in(affected))
    unaffected_plain = unbiased["observations"].filter(~pl.col("encounter_id").is_in(affected))
    assert unaffected_biased.equals(unaffected_plain)
    paired = (
        spo2_values(clean)
        .filter(pl.col("encounter_id").is_in(affected))
        .join(spo2_values(unbiased), on=["encounter_id", "charttime"], suffix="_unbiased")
    )
    assert paired.height > 500
    assert (paired["value"] - paired["value_unbiased"]).mean() > 1.0


def test_without_the_bias_spo2_is_alike_across_groups(
    clean: dict[str, pl.DataFrame], unbiased: dict[str, pl.DataFrame]
) -> None:
    def mean_gap(tables: dict[str, pl.DataFrame]) -> float:
        affected = encounters_of_group(tables, PULSE_OX_AFFECTED_GROUP).implode()
        spo2 = spo2_values(tables).with_columns(pl.col("encounter_id").is_in(affected).alias("affected"))
        means = dict(spo2.group_by("affected").agg(pl.col("value").mean()).rows())
        return means[True] - means[False]

    assert mean_gap(clean) > 1.0
    assert abs(mean_gap(unbiased)) < 0.6


# ------------------------------------------------------------------ files and arguments


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_cohort_round_trips(clean: dict[str, pl.DataFrame], tmp_path: Path, fmt: str) -> None:
    small = {table: frame.head(200) for table, frame in clean.items()}
    paths = write_cohort(small, tmp_path / "cohort", fmt=fmt)
    assert [p.name for p in paths] == [f"{table}.{fmt}" for table in TABLES]
    assert sorted(p.name for p in (tmp_path / "cohort").iterdir()) == sorted(p.name for p in paths)
    for table, path in zip(TABLES, paths):
        back = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)
        assert back.equals(small[table]), table


# ------------------------------------------------------------------ blocks of encounters


BLOCK = 150  # a cohort of N = 400 in three blocks


@pytest.fixture(scope="module")
def in_blocks() -> dict[str, pl.DataFrame]:
    return generate_cohort(N, seed=SEED, malformed_rate=0.02, block_encounters=BLOCK)


def test_a_cohort_in_blocks_has_the_same_people_stays_and_outcomes(clean: dict[str, pl.DataFrame]) -> None:
    clean_blocks = generate_cohort(N, seed=SEED, malformed_rate=0, block_encounters=BLOCK)
    for table in ("patients", "encounters", "outcomes"):
        assert clean_blocks[table].equals(clean[table]), table
    # Each block's vitals and labs come from its own random streams: other draws, as many rows.
    assert not clean_blocks["observations"].equals(clean["observations"])
    assert abs(clean_blocks["observations"].height / clean["observations"].height - 1) < 0.02


def test_malformed_rows_of_a_cohort_in_blocks_leave_its_clean_rows_unchanged(in_blocks: dict[str, pl.DataFrame]) -> None:
    clean_blocks = generate_cohort(N, seed=SEED, malformed_rate=0, block_encounters=BLOCK)
    for table in TABLES:
        assert in_blocks[table].height > clean_blocks[table].height, table
        kept = in_blocks[table].join(clean_blocks[table], on=clean_blocks[table].columns, how="semi", nulls_equal=True)
        assert kept.unique().height == clean_blocks[table].height, table


def test_a_cohort_in_blocks_is_deterministic_and_passes_the_contracts_when_clean() -> None:
    clean_blocks = generate_cohort(N, seed=SEED, malformed_rate=0, block_encounters=BLOCK)
    again = generate_cohort(N, seed=SEED, malformed_rate=0, block_encounters=BLOCK)
    assert all(clean_blocks[t].equals(again[t]) for t in TABLES)
    observations = clean_blocks["observations"]
    assert observations.select("encounter_id", "charttime").equals(observations.select("encounter_id", "charttime").sort("encounter_id", "charttime"))
    for table, validated in validate_all(clean_blocks).items():
        assert validated.quarantined.height == 0, (table, validated.counts_by_rule)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_synthetic_cohort_writes_what_generate_cohort_returns(
    in_blocks: dict[str, pl.DataFrame], tmp_path: Path, fmt: str
) -> None:
    written = write_synthetic_cohort(N, tmp_path / "cohort", fmt=fmt, seed=SEED, malformed_rate=0.02, block_encounters=BLOCK)
    assert [p.name for p in written.paths] == [f"{table}.{fmt}" for table in TABLES]
    assert sorted(p.name for p in (tmp_path / "cohort").iterdir()) == sorted(p.name for p in written.paths)
    assert written.rows == {table: frame.height for table, frame in in_blocks.items()}
    for table, path in zip(TABLES, written.paths):
        back = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)
        assert back.equals(in_blocks[table]), table


def test_write_cohort_rejects_an_unknown_format(clean: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown cohort format 'xlsx'; choose one of parquet, csv"):
        write_cohort(clean, tmp_path, fmt="xlsx")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_encounters": 0}, "n_encounters must be a positive whole number"),
        ({"n_encounters": 10, "now": datetime(2026, 1, 1)}, "now must be timezone-aware"),
        ({"n_encounters": 10, "malformed_rate": 0.9}, "malformed_rate must be between 0 and 0.5"),
        ({"n_encounters": 10, "admitted_fraction": 1.5}, "admitted_fraction must be between 0 and 1"),
        ({"n_encounters": 10, "sites": ("north", "north")}, "sites must be distinct"),
        ({"n_encounters": 10, "block_encounters": 0}, "block_encounters must be a positive whole number"),
    ],
)
def test_bad_arguments_raise_config_error(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_cohort(**arguments)
