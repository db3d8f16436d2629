"""The data contracts: every rule quarantines with its name, file, line and a detail that
never shows the patient's value; units convert to the catalogue's; times end up in UTC.

Source frames are built as an adapter would hand them over: text columns plus the
provenance columns `_source_file` and `_source_line` (the header is line 1)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskcast.contracts import (
    QUARANTINE_SCHEMA,
    UTC_DATETIME,
    parse_datetime,
    validate,
    validate_encounters,
    validate_observations,
    validate_outcomes,
    validate_patients,
)
from riskcast.errors import ContractError

OBSERVATION_COLUMNS = ["encounter_id", "charttime", "variable", "value", "unit"]
ENCOUNTER_COLUMNS = ["encounter_id", "patient_id", "admit_time", "discharge_time", "ward", "site"]
PATIENT_COLUMNS = ["patient_id", "birth_year", "age", "sex", "race_ethnicity", "site"]
OUTCOME_COLUMNS = ["encounter_id", "event_time", "event_type"]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def source_frame(columns: list[str], rows: list[tuple[str | None, ...]], file: str) -> pl.DataFrame:
    """A text frame as the CSV adapter reads it: one row per line, the header on line 1."""
    frame = pl.DataFrame(rows, schema={c: pl.String for c in columns}, orient="row")
    return frame.with_columns(
        pl.lit(file).alias("_source_file"),
        pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias("_source_line"),
    )


def observations(*rows: tuple[str | None, ...]) -> pl.DataFrame:
    return source_frame(OBSERVATION_COLUMNS, list(rows), "observations.csv")


def encounters(*rows: tuple[str | None, ...]) -> pl.DataFrame:
    return source_frame(ENCOUNTER_COLUMNS, list(rows), "encounters.csv")


def patients(*rows: tuple[str | None, ...]) -> pl.DataFrame:
    return source_frame(PATIENT_COLUMNS, list(rows), "patients.csv")


def outcomes(*rows: tuple[str | None, ...]) -> pl.DataFrame:
    return source_frame(OUTCOME_COLUMNS, list(rows), "outcomes.csv")


def only_quarantined(result) -> dict:
    """The one quarantined row of a result, after checking that nothing else came out."""
    assert result.valid.height == 0, result.valid
    assert result.quarantined.height == 1, result.quarantined
    return result.quarantined.row(0, named=True)


KNOWN_ENCOUNTERS = pl.DataFrame(
    {
        "encounter_id": ["E1", "E2"],
        "admit_time": [utc(2024, 1, 10, 8), utc(2024, 1, 10, 8)],
        "discharge_time": [utc(2024, 1, 12, 8), None],
    },
    schema={"encounter_id": pl.String, "admit_time": UTC_DATETIME, "discharge_time": UTC_DATETIME},
)


# ---------------------------------------------------------------------------- rules


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "-inf", "1e20", "1e400"])
def test_a_birth_year_that_is_not_a_finite_year_is_quarantined_not_a_crash(text):
    result = validate_patients(patients(("P1", text, None, "F", None, "site-a"), ("P2", "1950", None, "M", None, "site-a")))
    assert result.valid["patient_id"].to_list() == ["P2"]
    row = result.quarantined.row(0, named=True)
    assert row["rule"] in ("unparseable_value", "out_of_range") and row["source_line"] == 2
    assert text not in row["detail"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e20, 1950.7])
def test_a_typed_float_birth_year_that_is_not_a_whole_year_is_quarantined(value):
    frame = pl.DataFrame(
        {"patient_id": ["P1", "P2"], "birth_year": [value, 1950.0], "sex": ["F", "M"], "site": ["s", "s"],
         "_source_file": ["patients.parquet"] * 2, "_source_line": [1, 2]}
    )  # fmt: skip
    result = validate_patients(frame)
    assert result.valid["patient_id"].to_list() == ["P2"] and result.valid["birth_year"].to_list() == [1950]
    assert result.quarantined["rule"].to_list()[0] in ("unparseable_value", "out_of_range")


def test_a_fractional_birth_year_is_not_a_whole_number():
    row = only_quarantined(validate_patients(patients(("P1", "1950.7", None, "F", None, "site-a"))))
    assert (row["rule"], row["detail"]) == ("unparseable_value", "birth_year is not a whole number")


def test_an_age_or_value_that_is_not_finite_is_not_a_number():
    assert only_quarantined(validate_patients(patients(("P1", None, "inf", "F", None, "s"))))["rule"] == "unparseable_value"
    row = only_quarantined(validate_observations(observations(("E1", "2024-01-10T10:00", "heart_rate", "NaN", "/min"))))
    assert (row["rule"], row["detail"]) == ("unparseable_value", "value is not a number")


NOW = utc(2024, 1, 11, 12)


def test_a_time_later_than_the_ingest_clock_is_in_the_future():
    result = validate_observations(
        observations(
            ("E2", "2024-01-11T12:05", "heart_rate", "71", "/min"),  # within the 5 min a clock may run fast
            ("E2", "2030-01-01T00:00", "heart_rate", "72", "/min"),
        ),
        encounters=KNOWN_ENCOUNTERS,
        now=NOW,
    )
    assert result.valid["source_line"].to_list() == [2]
    row = result.quarantined.row(0, named=True)
    assert (row["rule"], row["detail"], row["source_line"]) == (
        "in_the_future", "charttime is later than the time of ingest", 3
    )


def test_outcomes_and_admissions_in_the_future_are_quarantined():
    result = validate_outcomes(outcomes(("E2", "2030-01-01T00:00", "death")), known_encounters=KNOWN_ENCOUNTERS, now=NOW)
    assert only_quarantined(result)["rule"] == "in_the_future"
    result = validate_encounters(encounters(("E3", "P1", "2030-01-01T00:00", None, "w", "s")), now=NOW)
    assert only_quarantined(result)["rule"] == "in_the_future"


def test_an_outcome_outside_its_encounter_is_quarantined():
    # E1: admitted 2024-01-10 08:00, discharged 2024-01-12 08:00; an event may lie up to 6 h after.
    result = validate_outcomes(
        outcomes(
            ("E1", "2024-01-10T07:59", "death"),  # before admission: out
            ("E1", "2024-01-11T10:00", "icu_transfer"),  # in
            ("E1", "2024-01-12T14:00", "death"),  # 6 h after discharge: in
            ("E1", "2024-01-12T14:01", "rapid_response"),  # just over: out
            ("E2", "2024-03-01T00:00", "sepsis"),  # still admitted: in
        ),
        known_encounters=KNOWN_ENCOUNTERS,
    )
    assert result.valid["source_line"].to_list() == [3, 4, 6]
    assert result.quarantined.select("source_line", "rule").rows() == [(2, "outside_encounter"), (5, "outside_encounter")]
    assert set(result.quarantined["detail"]) == {"event_time is outside the encounter's admission window"}


KNOWN_PATIENTS = pl.DataFrame({"patient_id": ["P1"]})


def test_an_encounter_for_an_unknown_patient_is_quarantined():
    result = validate_encounters(
        encounters(("E1", "P1", "2024-01-10T08:00", None, "w", "s"), ("E2", "P9", "2024-01-10T08:00", None, "w", "s")),
        known_patients=KNOWN_PATIENTS,
    )
    assert result.valid["encounter_id"].to_list() == ["E1"]
    row = result.quarantined.row(0, named=True)
    assert (row["rule"], row["detail"]) == ("unknown_patient", "patient_id is not in the patients table")


def test_a_corrected_encounter_that_would_leave_accepted_observations_outside_it_is_quarantined():
    # Observations of E1 already accepted from 2024-01-10 09:00 to 2024-01-12 07:00.
    spans = pl.DataFrame(
        {"encounter_id": ["E1"], "first_charttime": [utc(2024, 1, 10, 9)], "last_charttime": [utc(2024, 1, 12, 7)]},
        schema={"encounter_id": pl.String, "first_charttime": UTC_DATETIME, "last_charttime": UTC_DATETIME},
    )
    result = validate_encounters(
        encounters(
            ("E1", "P1", "2024-01-10T08:00", "2024-01-11T00:00", "w", "s"),  # discharge now 31 h too early
            ("E1", "P1", "2024-01-11T10:00", "2024-01-13T00:00", "w", "s"),  # admission now 25 h too late
            ("E1", "P1", "2024-01-10T08:00", "2024-01-12T05:00", "w", "s"),  # within the 2 h allowance: fine
        ),
        accepted_observations=spans,
    )
    assert result.valid["source_line"].to_list() == [4]
    assert result.quarantined.select("source_line", "rule").rows() == [
        (2, "leaves_observations_outside"), (3, "leaves_observations_outside")
    ]
    assert set(result.quarantined["detail"]) == {
        "the corrected admit_time or discharge_time would leave observations already accepted outside the "
        "encounter's window; correct those observations, or send times that cover them"
    }


def test_the_quarantine_record_keeps_only_contract_columns():
    frame = observations(("E1", "2024-01-10T10:00", "heart_rate", "987", "bpm")).with_columns(
        pl.lit("Jane Doe").alias("patient_name"), pl.lit("943 476 5919").alias("nhs_number")
    )
    record = only_quarantined(validate_observations(frame))["record"]
    assert "Jane Doe" not in record and "943 476 5919" not in record and "nhs_number" not in record


def test_empty_required_field_is_quarantined_as_missing_required():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "heart_rate", "", "/min")))
    row = only_quarantined(result)
    assert row["rule"] == "missing_required"
    assert row["detail"] == "value is empty"
    assert (row["table"], row["source_file"], row["source_line"]) == ("observations", "observations.csv", 2)


def test_blank_text_counts_as_empty():
    result = validate_observations(observations(("   ", "2024-01-10T10:00", "heart_rate", "71", "/min")))
    row = only_quarantined(result)
    assert (row["rule"], row["detail"]) == ("missing_required", "encounter_id is empty")


def test_garbled_time_is_quarantined_as_unparseable_time_without_the_text():
    result = validate_observations(observations(("E1", "10/01/2024 25:61", "heart_rate", "71", "/min")))
    row = only_quarantined(result)
    assert row["rule"] == "unparseable_time"
    assert row["detail"] == "charttime is not an ISO 8601 time"
    assert "25:61" not in row["detail"]


def test_non_numeric_value_is_quarantined_as_unparseable_value_without_the_text():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "heart_rate", "7l.5", "/min")))
    row = only_quarantined(result)
    assert (row["rule"], row["detail"]) == ("unparseable_value", "value is not a number")
    assert "7l.5" not in row["detail"]


def test_unknown_ordinal_code_is_unparseable_value():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "avpu", "Z", None)))
    assert only_quarantined(result)["rule"] == "unparseable_value"


def test_sex_outside_the_allowed_list_is_not_allowed():
    result = validate_patients(patients(("P1", "1950", None, "X", None, "site-a")))
    row = only_quarantined(result)
    assert row["rule"] == "not_allowed"
    assert row["detail"] == "sex must be one of female, male, other, unknown"
    assert row["source_file"] == "patients.csv"


def test_event_type_outside_the_allowed_list_is_not_allowed():
    result = validate_outcomes(outcomes(("E1", "2024-01-11T10:00", "fell_over")))
    row = only_quarantined(result)
    assert row["rule"] == "not_allowed"
    assert row["detail"].startswith("event_type must be one of icu_transfer, death")
    assert "fell_over" not in row["detail"]


def test_age_outside_its_range_is_out_of_range_without_the_age():
    result = validate_patients(patients(("P1", None, "131.5", "female", None, "site-a")))
    row = only_quarantined(result)
    assert (row["rule"], row["detail"]) == ("out_of_range", "age is outside 0–120")
    assert "131.5" not in row["detail"]


def test_implausible_observation_is_out_of_range_naming_range_unit_and_variable_not_value():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "heart_rate", "987.25", "bpm")))
    row = only_quarantined(result)
    assert row["rule"] == "out_of_range"
    assert row["detail"] == "value outside the plausible range 20.0–300.0 /min for 'heart_rate'"
    assert "987" not in row["detail"]


def test_range_is_checked_in_the_canonical_unit():
    # 113 degF is 45 degC, the top of the plausible range; 114 degF is above it.
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00", "temperature", "113", "[degF]"),
            ("E1", "2024-01-10T11:00", "temperature", "114", "[degF]"),
        )
    )
    assert result.valid["value"].to_list() == [pytest.approx(45.0)]
    assert result.quarantined["source_line"].to_list() == [3]
    assert result.quarantined["rule"].to_list() == ["out_of_range"]


def test_unknown_variable_is_quarantined_without_echoing_the_text():
    # The cell could hold anything a person typed: the detail never repeats it.
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "blood_colour", "3", None)))
    row = only_quarantined(result)
    assert (row["rule"], row["detail"]) == (
        "unknown_variable", "variable is neither a catalogue name nor one of its LOINC codes"
    )


def test_a_unit_riskcast_does_not_know_is_not_echoed():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "temperature", "37.2", "Mrs Smith")))
    row = only_quarantined(result)
    assert row["rule"] == "unknown_unit"
    assert row["detail"] == "unit is not a unit riskcast knows for variable 'temperature' (expected Cel or [degF])"


def test_unit_not_valid_for_the_variable_is_unknown_unit_listing_the_expected_units():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "temperature", "37.2", "mmHg")))
    row = only_quarantined(result)
    assert row["rule"] == "unknown_unit"
    assert row["detail"] == "unit 'mm[Hg]' is not valid for variable 'temperature' (expected Cel or [degF])"
    assert "37.2" not in row["detail"]


def test_empty_unit_where_the_unit_matters_is_missing_unit():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "fio2", "40", None)))
    row = only_quarantined(result)
    assert row["rule"] == "missing_unit"
    assert row["detail"] == "unit is empty for variable 'fio2' (expected 1 or %)"


def test_empty_unit_of_a_dimensionless_score_is_the_canonical_unit():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "gcs", "14", "")))
    assert result.quarantined.height == 0
    assert result.valid.select("variable", "value", "unit").row(0) == ("gcs", 14.0, "{score}")


def test_repeat_within_a_batch_is_a_duplicate_and_the_first_row_is_kept():
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00", "heart_rate", "71", "/min"),
            ("E1", "2024-01-10T10:00:00Z", "heart_rate", "75", "bpm"),
        )
    )
    assert result.valid["value"].to_list() == [71.0]
    row = result.quarantined.row(0, named=True)
    assert (row["rule"], row["source_line"]) == ("duplicate", 3)
    assert row["detail"] == "the same encounter, charttime and variable appears earlier in this batch"


def test_loinc_code_and_name_of_the_same_variable_are_duplicates():
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00", "heart_rate", "71", "/min"),
            ("E1", "2024-01-10T10:00", "8867-4", "71", "/min"),
        )
    )
    assert result.quarantined["rule"].to_list() == ["duplicate"]


def test_a_bad_row_does_not_make_its_good_twin_a_duplicate():
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00", "heart_rate", "9999", "/min"),
            ("E1", "2024-01-10T10:00", "heart_rate", "71", "/min"),
        )
    )
    assert result.valid["source_line"].to_list() == [3]
    assert result.quarantined["rule"].to_list() == ["out_of_range"]


def test_key_already_in_the_lake_is_a_duplicate():
    existing = pl.DataFrame(
        {"encounter_id": ["E1"], "charttime": [utc(2024, 1, 10, 10)], "variable": ["heart_rate"]},
        schema={"encounter_id": pl.String, "charttime": UTC_DATETIME, "variable": pl.String},
    )
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00", "8867-4", "71", "/min"),
            ("E1", "2024-01-10T11:00", "heart_rate", "72", "/min"),
        ),
        existing_keys=existing,
    )
    assert result.valid["source_line"].to_list() == [3]
    row = result.quarantined.row(0, named=True)
    assert (row["rule"], row["detail"], row["source_line"]) == (
        "duplicate",
        "already in the lake from an earlier batch",
        2,
    )


def test_patient_repeated_in_a_batch_keeps_the_last_row():
    result = validate_patients(
        patients(("P1", "1950", None, "F", None, "site-a"), ("P1", "1951", None, "F", None, "site-a"))
    )
    assert result.valid.select("birth_year", "sex").row(0) == (1951, "female")
    row = result.quarantined.row(0, named=True)
    assert (row["rule"], row["source_line"]) == ("duplicate", 2)
    assert row["detail"] == "patient_id appears again later in this batch"


def test_sex_aliases_map_to_the_contract_values():
    result = validate_patients(
        patients(*[(f"P{i}", None, "50", sex, None, "s") for i, sex in enumerate(["F", "m", "0", "1", "U", "O"])])
    )
    assert result.valid["sex"].to_list() == ["female", "male", "female", "male", "unknown", "other"]


def test_observation_of_an_unknown_encounter_is_unknown_encounter():
    result = validate_observations(
        observations(("E9", "2024-01-10T10:00", "heart_rate", "71", "/min")), encounters=KNOWN_ENCOUNTERS
    )
    row = only_quarantined(result)
    assert (row["rule"], row["detail"]) == ("unknown_encounter", "encounter_id is not in the encounters table")


def test_outcome_of_an_unknown_encounter_is_unknown_encounter():
    result = validate_outcomes(outcomes(("E9", "2024-01-11T10:00", "death")), known_encounters=KNOWN_ENCOUNTERS)
    row = only_quarantined(result)
    assert (row["rule"], row["source_file"]) == ("unknown_encounter", "outcomes.csv")


def test_observation_window_allows_24_h_before_admission_and_2_h_after_discharge():
    # E1: admitted 2024-01-10 08:00, discharged 2024-01-12 08:00 (UTC).
    result = validate_observations(
        observations(
            ("E1", "2024-01-09T08:00", "lactate", "2.0", "mmol/L"),  # 24 h before: in
            ("E1", "2024-01-09T07:59", "lactate", "2.1", "mmol/L"),  # just over: out
            ("E1", "2024-01-12T10:00", "lactate", "2.2", "mmol/L"),  # 2 h after: in
            ("E1", "2024-01-12T10:01", "lactate", "2.3", "mmol/L"),  # just over: out
            ("E2", "2024-03-01T00:00", "lactate", "2.4", "mmol/L"),  # still admitted: in
        ),
        encounters=KNOWN_ENCOUNTERS,
    )
    assert result.valid["source_line"].to_list() == [2, 4, 6]
    assert result.quarantined["source_line"].to_list() == [3, 5]
    assert set(result.quarantined["rule"]) == {"outside_encounter"}
    assert set(result.quarantined["detail"]) == {"charttime is outside the encounter's admission window"}


def test_discharge_before_admission_is_quarantined():
    result = validate_encounters(encounters(("E1", "P1", "2024-01-10T08:00", "2024-01-10T07:59", "ward-1", "site-a")))
    row = only_quarantined(result)
    assert (row["rule"], row["detail"]) == ("discharge_before_admit", "discharge_time is before admit_time")
    assert row["source_file"] == "encounters.csv"


def test_first_rule_broken_wins():
    # Empty encounter_id, garbled time and unknown variable: missing_required is reported.
    result = validate_observations(observations((None, "garbled", "nonsense", "x", "y")))
    assert only_quarantined(result)["rule"] == "missing_required"


def test_quarantine_keeps_the_raw_row_as_json():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "heart_rate", "987", "bpm")))
    record = only_quarantined(result)["record"]
    assert pl.Series([record]).str.json_decode().to_list()[0] == {
        "encounter_id": "E1",
        "charttime": "2024-01-10T10:00",
        "variable": "heart_rate",
        "value": "987",
        "unit": "bpm",
    }


def test_quarantine_has_the_documented_columns():
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "heart_rate", "987", "bpm")))
    assert result.quarantined.schema == pl.Schema(QUARANTINE_SCHEMA)


def test_counts_by_rule():
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00", "heart_rate", "987", "bpm"),
            ("E1", "2024-01-10T11:00", "heart_rate", "988", "bpm"),
            ("E1", "2024-01-10T12:00", "heart_rate", "", "bpm"),
            ("E1", "2024-01-10T13:00", "heart_rate", "70", "bpm"),
        )
    )
    assert result.counts_by_rule == {"out_of_range": 2, "missing_required": 1}


def test_missing_required_column_raises_naming_the_source_and_column():
    frame = observations(("E1", "2024-01-10T10:00", "heart_rate", "71", "/min")).drop("charttime")
    with pytest.raises(ContractError, match=r"^obs-feed\.csv: table 'observations' is missing required column\(s\) charttime;"):
        validate_observations(frame, source="obs-feed.csv")


def test_missing_optional_column_is_fine():
    frame = encounters(("E1", "P1", "2024-01-10T08:00", None, "ward-1", "site-a")).drop("discharge_time")
    result = validate_encounters(frame)
    assert result.valid.height == 1
    assert result.valid["discharge_time"].dtype == UTC_DATETIME


def test_unknown_table_is_a_contract_error():
    with pytest.raises(ContractError, match="unknown table 'vitals'; the canonical tables are patients, encounters"):
        validate("vitals", pl.DataFrame())


# ---------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("variable", "unit", "value", "name", "expected", "canonical_unit"),
    [
        ("temperature", "°F", "98.6", "temperature", 37.0, "Cel"),
        ("temperature", "degF", "212", "temperature", None, "Cel"),  # 100 degC: out of range
        ("temperature", "C", "37.5", "temperature", 37.5, "Cel"),
        ("creatinine", "mg/dL", "1.0", "creatinine", 88.42, "umol/L"),
        ("creatinine", "µmol/L", "90", "creatinine", 90.0, "umol/L"),
        ("glucose", "mg/dl", "90", "glucose", 90 * 0.0555, "mmol/L"),
        ("fio2", "%", "40", "fio2", 0.40, "1"),
        ("fio2", "1", "0.28", "fio2", 0.28, "1"),
        ("8867-4", "/min", "71", "heart_rate", 71.0, "/min"),
        ("sbp", "mmHg", "120", "sbp", 120.0, "mm[Hg]"),
        ("sbp", "kPa", "16", "sbp", 16 * 7.50062, "mm[Hg]"),
        ("heart_rate", "bpm", "88", "heart_rate", 88.0, "/min"),
        ("resp_rate", "breaths/min", "18", "resp_rate", 18.0, "/min"),
        ("haemoglobin", "g/dl", "12.5", "haemoglobin", 125.0, "g/L"),
        ("wbc", "K/uL", "7.2", "wbc", 7.2, "10*9/L"),
        ("spo2", "1", "0.97", "spo2", 97.0, "%"),
    ],
)
def test_values_are_converted_to_the_canonical_unit(variable, unit, value, name, expected, canonical_unit):
    result = validate_observations(observations(("E1", "2024-01-10T10:00", variable, value, unit)))
    if expected is None:
        assert only_quarantined(result)["rule"] == "out_of_range"
        return
    assert result.quarantined.height == 0, result.quarantined
    row = result.valid.row(0, named=True)
    assert row["variable"] == name
    assert row["value"] == pytest.approx(expected)
    assert row["unit"] == canonical_unit


@pytest.mark.parametrize(("letter", "code"), [("A", 0.0), ("C", 1.0), ("V", 2.0), ("P", 3.0), ("U", 4.0)])
def test_acvpu_letters_become_their_codes(letter, code):
    result = validate_observations(observations(("E1", "2024-01-10T10:00", "avpu", letter, None)))
    assert result.valid.select("variable", "value", "unit").row(0) == ("avpu", code, "{score}")


def test_numeric_text_is_read_with_surrounding_spaces_and_exponents():
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00", "heart_rate", " 71 ", "/min"),
            ("E1", "2024-01-10T11:00", "heart_rate", "7.2e1", "/min"),
            ("E1", "2024-01-10T12:00", "heart_rate", "+73", " bpm "),
        )
    )
    assert result.valid["value"].to_list() == [71.0, 72.0, 73.0]


def test_typed_parquet_columns_are_accepted():
    frame = pl.DataFrame(
        {
            "encounter_id": ["E1"],
            "charttime": [utc(2024, 1, 10, 10)],
            "variable": ["heart_rate"],
            "value": [71.0],
            "unit": ["/min"],
            "_source_file": ["observations.parquet"],
            "_source_line": [1],
        }
    )
    result = validate_observations(frame)
    assert result.valid.select("charttime", "value").row(0) == (utc(2024, 1, 10, 10), 71.0)


# ---------------------------------------------------------------------------- time zones


def test_offsets_are_converted_to_utc():
    result = validate_observations(
        observations(
            ("E1", "2024-01-10T10:00:00+01:00", "heart_rate", "71", "/min"),
            ("E1", "2024-01-10T10:00:00.250-05:30", "resp_rate", "16", "/min"),
            ("E1", "2024-01-10 10:00:00Z", "sbp", "120", "mmHg"),
            ("E1", "2024-01-10T10:00+0200", "spo2", "97", "%"),
        )
    )
    assert result.valid["charttime"].to_list() == [
        utc(2024, 1, 10, 9),
        utc(2024, 1, 10, 15, 30, 0, 250_000),
        utc(2024, 1, 10, 10),
        utc(2024, 1, 10, 8),
    ]


def test_naive_times_are_read_in_the_source_time_zone_across_a_dst_change():
    # Europe/London moves from GMT (UTC+0) to BST (UTC+1) at 01:00 on 2024-03-31.
    result = validate_observations(
        observations(
            ("E1", "2024-03-30T12:00", "heart_rate", "71", "/min"),
            ("E1", "2024-03-31T12:00", "heart_rate", "72", "/min"),
            ("E1", "2024-03-31T12:00+00:00", "resp_rate", "16", "/min"),
        ),
        source_timezone="Europe/London",
    )
    assert result.valid["charttime"].to_list() == [
        utc(2024, 3, 30, 12),
        utc(2024, 3, 31, 11),
        utc(2024, 3, 31, 12),
    ]
    assert result.valid["charttime"].dtype == UTC_DATETIME


def test_local_time_skipped_by_the_clock_change_is_said_not_to_exist_in_the_zone():
    result = validate_observations(
        observations(("E1", "2024-03-31T01:30", "heart_rate", "71", "/min")), source_timezone="Europe/London"
    )
    row = only_quarantined(result)
    assert (row["rule"], row["detail"]) == (
        "nonexistent_time",
        "charttime does not exist in Europe/London (the clocks skipped it); give an offset or a time that exists",
    )


def test_a_typed_naive_time_skipped_by_the_clock_change_is_said_not_to_exist():
    frame = pl.DataFrame(
        {"encounter_id": ["E1"], "patient_id": ["P1"], "admit_time": [datetime(2024, 3, 31, 1, 30)],
         "ward": ["w"], "site": ["s"], "_source_file": ["encounters.parquet"], "_source_line": [1]}
    )  # fmt: skip
    row = only_quarantined(validate_encounters(frame, source_timezone="Europe/London"))
    assert row["rule"] == "nonexistent_time"


def test_repeated_local_hour_is_read_as_the_earlier_instant():
    # 01:30 happens twice on 2024-10-27 in London: first in BST (00:30 UTC), then in GMT.
    result = validate_observations(
        observations(("E1", "2024-10-27T01:30", "heart_rate", "71", "/min")), source_timezone="Europe/London"
    )
    assert result.valid["charttime"].to_list() == [utc(2024, 10, 27, 0, 30)]


def test_encounter_times_use_the_source_time_zone():
    result = validate_encounters(
        encounters(("E1", "P1", "2024-07-01T09:00", "2024-07-03 17:30", "ward-1", "site-a")),
        source_timezone="Europe/London",
    )
    assert result.valid.select("admit_time", "discharge_time").row(0) == (utc(2024, 7, 1, 8), utc(2024, 7, 3, 16, 30))


def test_naive_typed_datetimes_are_read_in_the_source_time_zone():
    frame = pl.DataFrame(
        {
            "encounter_id": ["E1"],
            "charttime": [datetime(2024, 7, 1, 9, 0)],
            "variable": ["heart_rate"],
            "value": [71.0],
            "unit": ["/min"],
            "_source_file": ["observations.parquet"],
            "_source_line": [1],
        }
    )
    result = validate_observations(frame, source_timezone="Europe/London")
    assert result.valid["charttime"].to_list() == [utc(2024, 7, 1, 8)]


FIXED_OFFSETS = st.integers(min_value=-12 * 4, max_value=14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q)))


@settings(max_examples=50, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1), timezones=FIXED_OFFSETS))
def test_parse_datetime_reads_isoformat_with_any_offset(moment):
    parsed = pl.select(parse_datetime(pl.lit(moment.isoformat()))).item()
    assert parsed == moment.astimezone(timezone.utc)


@settings(max_examples=50, deadline=None)
@given(local=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 1, 1)))
def test_parse_datetime_reads_naive_times_as_london_time(local):
    london = ZoneInfo("Europe/London")
    earlier = local.replace(tzinfo=london, fold=0)
    exists = earlier.astimezone(timezone.utc).astimezone(london).replace(tzinfo=None) == local
    parsed = pl.select(parse_datetime(pl.lit(local.isoformat()), source_timezone="Europe/London")).item()
    assert parsed == (earlier.astimezone(timezone.utc) if exists else None)


# ---------------------------------------------------------------------------- properties

# (variable, unit, value text, value in the canonical unit)
GOOD_MEASUREMENTS = [
    ("heart_rate", "bpm", "72", 72.0),
    ("8867-4", "/min", " 80 ", 80.0),
    ("resp_rate", "/min", "18", 18.0),
    ("sbp", "mmHg", "120", 120.0),
    ("sbp", "kPa", "16", 16 * 7.50062),
    ("temperature", "°F", "98.6", 37.0),
    ("temperature", "Cel", "37.2", 37.2),
    ("spo2", "%", "97", 97.0),
    ("fio2", "%", "40", 0.4),
    ("fio2", "1", "0.35", 0.35),
    ("avpu", None, "V", 2.0),
    ("avpu", "", "A", 0.0),
    ("gcs", None, "15", 15.0),
    ("creatinine", "mg/dL", "1.2", 1.2 * 88.42),
    ("glucose", "mg/dl", "90", 90 * 0.0555),
    ("lactate", "mmol/L", "2.5", 2.5),
    ("ph", None, "7.35", 7.35),
]
# (variable, unit, value text) whose value is implausible in the canonical unit
OUT_OF_RANGE = [
    ("heart_rate", "bpm", "1000"),
    ("temperature", "°F", "200"),
    ("spo2", "%", "150"),
    ("fio2", "%", "150"),
    ("creatinine", "mg/dL", "100"),
    ("ph", None, "9.1"),
]
UNKNOWN_UNITS = [("heart_rate", "mmol/L"), ("temperature", "K"), ("creatinine", "furlongs"), ("fio2", "L/min")]
UNKNOWN_VARIABLES = ["blood_type", "8867-5", "heartrate", "HEART_RATE"]
GARBLED_TIMES = ["yesterday", "2024-13-01T10:00", "2024-02-30T10:00", "10:00", "2024-01-01T25:00", "01/02/2024"]
UNPARSEABLE_VALUES = ["abc", "1,5", "--", "12..5", "n/a"]
REQUIRED_FIELDS = ["encounter_id", "charttime", "variable", "value"]
TIME_STYLES = ["{d}T{t}Z", "{d}T{t}+00:00", "{d} {t}", "{d}T{t}"]


@st.composite
def observation_row(draw, index: int) -> tuple[dict[str, str | None], str | None, float | None]:
    """A source row (keyed apart from every other row by `index`), the rule it breaks, and
    for a good row the value expected in the canonical unit."""
    moment = datetime(2024, 1, 10, 8) + timedelta(minutes=index)
    time_text = draw(st.sampled_from(TIME_STYLES)).format(d=f"{moment:%Y-%m-%d}", t=f"{moment:%H:%M:%S}")
    variable, unit, value, expected = draw(st.sampled_from(GOOD_MEASUREMENTS))
    row = {"encounter_id": "E1", "charttime": time_text, "variable": variable, "value": value, "unit": unit}
    defect = draw(
        st.sampled_from(
            ["none", "none", "out_of_range", "unknown_unit", "unknown_variable", "unparseable_time",
             "unparseable_value", "missing_required", "missing_unit"]
        )
    )  # fmt: skip
    if defect == "none":
        return row, None, expected
    if defect == "out_of_range":
        row["variable"], row["unit"], row["value"] = draw(st.sampled_from(OUT_OF_RANGE))
    elif defect == "unknown_unit":
        row["variable"], row["unit"] = draw(st.sampled_from(UNKNOWN_UNITS))
        row["value"] = "1"
    elif defect == "unknown_variable":
        row["variable"] = draw(st.sampled_from(UNKNOWN_VARIABLES))
    elif defect == "unparseable_time":
        row["charttime"] = draw(
            st.one_of(st.sampled_from(GARBLED_TIMES), st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1))
        )
    elif defect == "unparseable_value":
        row["value"] = draw(st.sampled_from(UNPARSEABLE_VALUES))
    elif defect == "missing_required":
        row[draw(st.sampled_from(REQUIRED_FIELDS))] = draw(st.sampled_from([None, "", "  "]))
    elif defect == "missing_unit":
        row["variable"], row["unit"] = draw(st.sampled_from(["sbp", "temperature", "creatinine", "fio2"])), None
        row["value"] = "50"
    return row, defect, None


@st.composite
def observation_batches(draw):
    size = draw(st.integers(min_value=1, max_value=40))
    return [draw(observation_row(i)) for i in range(size)]


def frame_of(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    return source_frame(OBSERVATION_COLUMNS, [tuple(r[c] for c in OBSERVATION_COLUMNS) for r in rows], "obs.csv")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=observation_batches())
def test_every_row_comes_out_exactly_once(batch):
    result = validate_observations(frame_of([row for row, _, _ in batch]))
    lines = result.valid["source_line"].to_list() + result.quarantined["source_line"].to_list()
    assert result.valid.height + result.quarantined.height == len(batch)
    assert sorted(lines) == list(range(2, len(batch) + 2))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=observation_batches())
def test_every_planted_bad_row_is_quarantined_with_its_rule(batch):
    result = validate_observations(frame_of([row for row, _, _ in batch]))
    rules = dict(zip(result.quarantined["source_line"].to_list(), result.quarantined["rule"].to_list()))
    details = result.quarantined["detail"].to_list()
    for line, (row, defect, _) in enumerate(batch, start=2):
        if defect is not None:
            assert rules.get(line) == defect, (row, rules.get(line))
    assert all(detail for detail in details)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=observation_batches())
def test_every_good_row_is_kept_with_its_converted_value(batch):
    result = validate_observations(frame_of([row for row, _, _ in batch]))
    kept = dict(zip(result.valid["source_line"].to_list(), result.valid["value"].to_list()))
    expected = {line: value for line, (_, defect, value) in enumerate(batch, start=2) if defect is None}
    assert kept.keys() == expected.keys()
    for line, value in expected.items():
        assert kept[line] == pytest.approx(value), line


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=observation_batches(), data=st.data())
def test_a_repeated_good_row_is_quarantined_as_duplicate(batch, data):
    good = [i for i, (_, defect, _) in enumerate(batch) if defect is None]
    if not good:
        return
    original = data.draw(st.sampled_from(good))
    rows = [row for row, _, _ in batch] + [batch[original][0]]
    result = validate_observations(frame_of(rows))
    repeat_line = len(rows) + 1
    assert result.quarantined.filter(pl.col("source_line") == repeat_line)["rule"].to_list() == ["duplicate"]
    assert original + 2 in result.valid["source_line"].to_list()
