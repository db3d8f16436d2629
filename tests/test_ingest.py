"""Ingest of canonical CSV and Parquet folders into a lake: good rows go on, bad rows are
quarantined and counted by rule, the same files twice are a no-op, and files that cannot be
ingested at all say which file and column is wrong."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from riskcast.contracts import UTC_DATETIME
from riskcast.errors import ContractError, IngestError
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths

NOW = datetime(2024, 2, 1, 12, 0, tzinfo=timezone.utc)

PATIENTS_CSV = """patient_id,birth_year,age,sex,race_ethnicity,site
P1,1950,,F,group-a,site-a
P2,,61,male,,site-a
"""
ENCOUNTERS_CSV = """encounter_id,patient_id,admit_time,discharge_time,ward,site
E1,P1,2024-01-10T08:00:00Z,2024-01-12T10:00:00Z,ward-1,site-a
E2,P2,2024-01-11T09:30:00Z,,ward-2,site-a
"""
OBSERVATIONS_CSV = """encounter_id,charttime,variable,value,unit,source
E1,2024-01-10T09:00:00Z,heart_rate,88,bpm,monitor
E1,2024-01-10T09:00:00Z,temperature,100.4,°F,monitor
E1,2024-01-10T10:00:00Z,creatinine,1.1,mg/dL,lab
E2,2024-01-11T10:00:00Z,avpu,A,,nurse
E2,2024-01-11T10:00:00Z,8867-4,102,/min,monitor
"""
OUTCOMES_CSV = """encounter_id,event_time,event_type
E2,2024-01-11T18:00:00Z,icu_transfer
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    return write(
        tmp_path / "feed",
        {
            "patients.csv": PATIENTS_CSV,
            "encounters.csv": ENCOUNTERS_CSV,
            "observations.csv": OBSERVATIONS_CSV,
            "outcomes.csv": OUTCOMES_CSV,
        },
    )


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


def test_a_csv_folder_lands_in_the_lake_in_canonical_units(csv_folder, lake):
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.rows_read == {"patients": 2, "encounters": 2, "observations": 5, "outcomes": 1}
    assert summary.accepted == {"patients": 2, "encounters": 2, "observations": 5, "outcomes": 1}
    assert summary.quarantined == {}
    assert quarantine.height == 0
    obs = lake.scan("observations").collect().sort("encounter_id", "charttime", "variable")
    assert obs.select("encounter_id", "variable", "value", "unit").rows() == [
        ("E1", "heart_rate", 88.0, "/min"),
        ("E1", "temperature", pytest.approx(38.0), "Cel"),
        ("E1", "creatinine", pytest.approx(1.1 * 88.42), "umol/L"),
        ("E2", "avpu", 0.0, "{score}"),
        ("E2", "heart_rate", 102.0, "/min"),
    ]
    assert obs["charttime"].dtype == UTC_DATETIME
    assert set(obs["batch_id"]) == {summary.batch_id}
    assert lake.scan("patients").collect().sort("patient_id")["sex"].to_list() == ["female", "male"]


def test_a_parquet_folder_is_ingested_like_csv(tmp_path, lake):
    folder = tmp_path / "parquet-feed"
    folder.mkdir()
    pl.DataFrame(
        {"patient_id": ["P1"], "birth_year": [1950], "sex": ["female"], "site": ["site-a"]}
    ).write_parquet(folder / "patients.parquet")
    pl.DataFrame(
        {
            "encounter_id": ["E1"],
            "patient_id": ["P1"],
            "admit_time": [datetime(2024, 1, 10, 8, tzinfo=timezone.utc)],
            "discharge_time": pl.Series([None], dtype=UTC_DATETIME),
            "ward": ["ward-1"],
            "site": ["site-a"],
        }
    ).write_parquet(folder / "encounters.parquet")
    pl.DataFrame(
        {
            "encounter_id": ["E1", "E1", "E1"],
            "charttime": [datetime(2024, 1, 10, 9, tzinfo=timezone.utc)] * 3,
            "variable": ["heart_rate", "fio2", "sbp"],
            "value": [88.0, 40.0, 900.0],
            "unit": ["/min", "%", "mm[Hg]"],
        }
    ).write_parquet(folder / "observations.parquet")
    summary, quarantine = ingest_paths([folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 2
    assert summary.quarantined == {"observations": {"out_of_range": 1}}
    # Parquet rows are numbered from 1.
    assert quarantine.select("source_file", "source_line").row(0) == ("observations.parquet", 3)
    values = dict(lake.scan("observations").select("variable", "value").collect().rows())
    assert values == {"heart_rate": 88.0, "fio2": pytest.approx(0.4)}


def test_a_single_file_can_be_ingested(csv_folder, lake):
    ingest_paths([csv_folder / "encounters.csv"], lake=lake, now=NOW)
    summary, _ = ingest_paths([csv_folder / "observations.csv"], lake=lake, now=datetime(2024, 2, 1, 13, tzinfo=timezone.utc))
    assert summary.accepted["observations"] == 5


def test_ingesting_the_same_files_again_is_a_no_op(csv_folder, lake):
    first, _ = ingest_paths([csv_folder], lake=lake, now=NOW)
    before = lake.scan("observations").collect()
    again, quarantine = ingest_paths([csv_folder], lake=lake, now=datetime(2024, 2, 2, tzinfo=timezone.utc))
    assert again.batch_id is None
    assert again.already_ingested
    assert {s["status"] for s in again.sources} == {"already ingested"}
    assert {s["batch_id"] for s in again.sources} == {first.batch_id}
    assert quarantine.height == 0
    assert lake.committed_batch_ids() == [first.batch_id]
    assert lake.scan("observations").collect().equals(before)


def test_the_same_content_under_another_name_is_a_no_op(csv_folder, lake, tmp_path):
    ingest_paths([csv_folder], lake=lake, now=NOW)
    copy = write(tmp_path / "copy", {"observations-2024-01.csv": OBSERVATIONS_CSV})
    again, _ = ingest_paths([copy], lake=lake, now=NOW)
    assert again.already_ingested
    assert len(lake.committed_batch_ids()) == 1


def test_good_rows_go_on_while_bad_rows_are_quarantined_and_counted_by_rule(csv_folder, lake):
    bad = OBSERVATIONS_CSV + (
        "E1,2024-01-10T11:00:00Z,heart_rate,950,bpm,monitor\n"  # line 7: out_of_range
        "E1,2024-01-10T11:00:00Z,sbp,120,,monitor\n"  # line 8: missing_unit
        "E1,2024-01-10T12:00:00Z,heart_rate,,bpm,monitor\n"  # line 9: missing_required
        "E1,not a time,heart_rate,80,bpm,monitor\n"  # line 10: unparseable_time
        "E7,2024-01-10T12:00:00Z,heart_rate,80,bpm,monitor\n"  # line 11: unknown_encounter
        "E1,2024-01-20T12:00:00Z,heart_rate,80,bpm,monitor\n"  # line 12: outside_encounter
        "E1,2024-01-10T13:00:00Z,heart_rate,951,bpm,monitor\n"  # line 13: out_of_range
    )
    (csv_folder / "observations.csv").write_text(bad, encoding="utf-8")
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 5
    assert summary.quarantined == {
        "observations": {
            "missing_required": 1,
            "missing_unit": 1,
            "out_of_range": 2,
            "outside_encounter": 1,
            "unknown_encounter": 1,
            "unparseable_time": 1,
        }
    }
    assert summary.total_quarantined == 7
    assert quarantine["source_line"].to_list() == list(range(7, 14))
    assert set(quarantine["source_file"]) == {"observations.csv"}
    assert set(quarantine["batch_id"]) == {summary.batch_id}
    assert lake.scan("observations").collect().height == 5
    assert lake.scan_quarantine().collect().height == 7


def test_summary_examples_name_file_line_and_rule_but_not_values(csv_folder, lake):
    (csv_folder / "observations.csv").write_text(
        OBSERVATIONS_CSV + "E1,2024-01-10T11:00:00Z,heart_rate,950.5,bpm,monitor\n", encoding="utf-8"
    )
    summary, _ = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.examples == [
        "observations.csv line 7: out_of_range: value outside the plausible range 20.0–300.0 /min for 'heart_rate'"
    ]
    assert "950" not in str(summary.to_dict())


def test_an_outcome_for_an_unknown_encounter_is_quarantined(csv_folder, lake):
    (csv_folder / "outcomes.csv").write_text(OUTCOMES_CSV + "E404,2024-01-11T18:00:00Z,death\n", encoding="utf-8")
    summary, _ = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.quarantined == {"outcomes": {"unknown_encounter": 1}}


def test_observations_of_encounters_from_an_earlier_batch_are_accepted(csv_folder, lake, tmp_path):
    ingest_paths([csv_folder], lake=lake, now=NOW)
    later = write(tmp_path / "later", {"observations.csv": "encounter_id,charttime,variable,value,unit\nE2,2024-01-12T10:00:00Z,heart_rate,91,/min\n"})
    summary, _ = ingest_paths([later], lake=lake, now=datetime(2024, 2, 1, 13, tzinfo=timezone.utc))
    assert summary.accepted["observations"] == 1
    assert summary.quarantined == {}


def test_a_measurement_already_in_the_lake_is_a_duplicate(csv_folder, lake, tmp_path):
    ingest_paths([csv_folder], lake=lake, now=NOW)
    resent = write(
        tmp_path / "resent",
        {"observations.csv": "encounter_id,charttime,variable,value,unit\nE1,2024-01-10T09:00:00Z,8867-4,89,/min\n"},
    )
    summary, quarantine = ingest_paths([resent], lake=lake, now=datetime(2024, 2, 1, 13, tzinfo=timezone.utc))
    assert summary.quarantined == {"observations": {"duplicate": 1}}
    assert quarantine["detail"].to_list() == ["already in the lake from an earlier batch"]
    assert lake.scan("observations").collect().filter(pl.col("variable") == "heart_rate").height == 2


def test_a_later_feed_adds_the_discharge_even_within_the_same_second(csv_folder, lake, tmp_path):
    ingest_paths([csv_folder], lake=lake, now=NOW)
    update = write(
        tmp_path / "update",
        {"encounters.csv": "encounter_id,patient_id,admit_time,discharge_time,ward,site\n"
         "E2,P2,2024-01-11T09:30:00Z,2024-01-13T09:30:00Z,ward-2,site-a\n"},
    )  # fmt: skip
    ingest_paths([update], lake=lake, now=NOW)
    encounters = dict(lake.scan("encounters").select("encounter_id", "discharge_time").collect().rows())
    assert encounters["E2"] == datetime(2024, 1, 13, 9, 30, tzinfo=timezone.utc)


def test_naive_times_are_read_in_the_source_time_zone(tmp_path, lake):
    folder = write(
        tmp_path / "london",
        {"encounters.csv": "encounter_id,patient_id,admit_time,discharge_time,ward,site\n"
         "E1,P1,2024-07-01 09:00,2024-07-02 09:00,ward-1,site-a\n"},
    )  # fmt: skip
    ingest_paths([folder], lake=lake, now=NOW, source_timezone="Europe/London")
    row = lake.scan("encounters").select("admit_time", "discharge_time").collect().row(0)
    assert row == (datetime(2024, 7, 1, 8, tzinfo=timezone.utc), datetime(2024, 7, 2, 8, tzinfo=timezone.utc))


def test_a_file_named_for_no_table_is_an_ingest_error(tmp_path, lake):
    path = write(tmp_path / "feed", {"vitals.csv": OBSERVATIONS_CSV}) / "vitals.csv"
    with pytest.raises(
        IngestError,
        match=r"^vitals\.csv: cannot tell which table this file holds; name it after one of "
        r"patients, encounters, observations, outcomes with a \.csv or \.parquet suffix$",
    ):
        ingest_paths([path], lake=lake, now=NOW)


def test_a_folder_without_table_files_is_an_ingest_error(tmp_path, lake):
    folder = write(tmp_path / "feed", {"vitals.csv": OBSERVATIONS_CSV, "notes.txt": "hello"})
    with pytest.raises(IngestError, match=r"feed: no table files found; expected files named patients\.csv"):
        ingest_paths([folder], lake=lake, now=NOW)


def test_a_missing_path_is_an_ingest_error(tmp_path, lake):
    with pytest.raises(IngestError, match=r"nowhere: no such file or folder"):
        ingest_paths([tmp_path / "nowhere"], lake=lake, now=NOW)


def test_a_missing_required_column_names_the_file_and_column(csv_folder, lake):
    (csv_folder / "observations.csv").write_text(
        "encounter_id,variable,value,unit\nE1,heart_rate,88,bpm\n", encoding="utf-8"
    )
    with pytest.raises(
        ContractError,
        match=r"^observations\.csv: table 'observations' is missing required column\(s\) charttime; "
        r"expected columns: encounter_id, charttime, variable, value, unit, source$",
    ):
        ingest_paths([csv_folder], lake=lake, now=NOW)
    assert lake.is_empty()


def test_a_missing_column_in_one_of_two_files_names_that_file(tmp_path, lake):
    folder = write(
        tmp_path / "feed",
        {
            "encounters.csv": ENCOUNTERS_CSV,
            "observations-a.csv": OBSERVATIONS_CSV,
            "observations-b.csv": "encounter_id,charttime,value,unit\nE1,2024-01-10T09:00:00Z,88,bpm\n",
        },
    )
    with pytest.raises(ContractError, match=r"^observations-b\.csv: .* missing required column\(s\) variable;"):
        ingest_paths([folder], lake=lake, now=NOW)


def test_an_empty_file_is_an_ingest_error_naming_it(csv_folder, lake):
    (csv_folder / "observations.csv").write_text("", encoding="utf-8")
    with pytest.raises(
        IngestError, match=r"^observations\.csv: the file is empty; expected a header line naming the observations columns$"
    ):
        ingest_paths([csv_folder], lake=lake, now=NOW)


def test_files_with_a_header_and_no_rows_are_an_ingest_error(tmp_path, lake):
    folder = write(tmp_path / "feed", {"observations.csv": "encounter_id,charttime,variable,value,unit\n"})
    with pytest.raises(IngestError, match=r"^nothing could be read from .*feed: the files hold no rows$"):
        ingest_paths([folder], lake=lake, now=NOW)
    assert lake.is_empty()


def test_a_ragged_csv_line_is_an_ingest_error_naming_the_file(csv_folder, lake):
    (csv_folder / "observations.csv").write_text(
        OBSERVATIONS_CSV + "E1,2024-01-10T11:00:00Z,heart_rate,80,bpm,monitor,extra\n", encoding="utf-8"
    )
    with pytest.raises(IngestError, match=r"^observations\.csv: cannot be read as CSV"):
        ingest_paths([csv_folder], lake=lake, now=NOW)


def test_header_whitespace_and_windows_line_endings_are_tolerated(tmp_path, lake):
    folder = write(
        tmp_path / "feed",
        {
            "encounters.csv": ENCOUNTERS_CSV,
            "observations.csv": "encounter_id, charttime ,variable,value,unit\r\nE1,2024-01-10T09:00:00Z,heart_rate,88,bpm\r\n",
        },
    )
    summary, _ = ingest_paths([folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 1
