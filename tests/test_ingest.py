"""Ingest of canonical CSV and Parquet folders into a lake: good rows go on, bad rows are
quarantined and counted by rule, the same files twice are a no-op, a file that cannot be read
is quarantined whole and a line that cannot be split alone (the others go on), columns outside
the contract are dropped, unrecognised files are listed, and nothing printed quotes a value."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from riskcast.cli import cli
from riskcast.config import Settings
from riskcast.contracts import UTC_DATETIME
from riskcast.errors import IngestError
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths
from riskcast.store import open_store
from riskcast.store.tables import quarantine as quarantine_table

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
    ingest_paths([csv_folder / "patients.csv"], lake=lake, now=NOW)
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
        {"patients.csv": PATIENTS_CSV, "encounters.csv": "encounter_id,patient_id,admit_time,discharge_time,ward,site\n"
         "E1,P1,2024-07-01 09:00,2024-07-02 09:00,ward-1,site-a\n"},
    )  # fmt: skip
    ingest_paths([folder], lake=lake, now=datetime(2024, 8, 1, tzinfo=timezone.utc), source_timezone="Europe/London")
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


def test_a_folder_without_table_files_is_an_ingest_error_listing_what_it_ignored(tmp_path, lake):
    folder = write(tmp_path / "feed", {"vitals.csv": OBSERVATIONS_CSV, "notes.txt": "hello"})
    with pytest.raises(
        IngestError,
        match=r"feed: no table files found; expected files named patients\.csv, .* \(or \.parquet\); "
        r"ignored: notes\.txt, vitals\.csv$",
    ):
        ingest_paths([folder], lake=lake, now=NOW)


def test_a_missing_path_is_an_ingest_error(tmp_path, lake):
    with pytest.raises(IngestError, match=r"nowhere: no such file or folder"):
        ingest_paths([tmp_path / "nowhere"], lake=lake, now=NOW)


def test_files_not_recognised_as_tables_are_listed_as_ignored(csv_folder, lake):
    for name in ("observations 2.csv", "obs.csv", "notes.txt", "sub/observations.csv"):
        (csv_folder / name).parent.mkdir(exist_ok=True)
        (csv_folder / name).write_text(OBSERVATIONS_CSV)
    summary, _ = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 5
    assert summary.ignored == [str(csv_folder / n) for n in ("notes.txt", "obs.csv", "observations 2.csv", "sub/observations.csv")]
    assert summary.to_dict()["ignored"] == summary.ignored


def test_a_file_missing_a_required_column_is_quarantined_whole_and_the_others_go_on(csv_folder, lake):
    (csv_folder / "outcomes.csv").write_text("encounter_id,event_type\nE2,icu_transfer\n", encoding="utf-8")
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted == {"patients": 2, "encounters": 2, "observations": 5, "outcomes": 0}
    assert summary.quarantined == {"outcomes": {"missing_columns": 1}}
    assert quarantine.select("source_file", "source_line", "rule", "detail").rows() == [
        ("outcomes.csv", 1, "missing_columns",
         "header (line 1) lacks column(s) event_time; expected columns: encounter_id, event_time, event_type")
    ]  # fmt: skip


def test_a_missing_column_in_one_of_two_files_quarantines_that_file_only(tmp_path, lake):
    folder = write(
        tmp_path / "feed",
        {
            "patients.csv": PATIENTS_CSV,
            "encounters.csv": ENCOUNTERS_CSV,
            "observations-a.csv": OBSERVATIONS_CSV,
            "observations-b.csv": "encounter_id,charttime,value,unit\nE1,2024-01-10T09:00:00Z,88,bpm\n",
        },
    )
    summary, quarantine = ingest_paths([folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 5
    assert quarantine.select("source_file", "rule").rows() == [("observations-b.csv", "missing_columns")]


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "the file is empty; expected a header line naming the observations columns"),
        (b"  \n\n", "the file is empty; expected a header line naming the observations columns"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "the file is not UTF-8 text (it holds NUL bytes); save it as UTF-8 CSV"),
        ("encounter_id,charttime".encode("utf-16"), "the file is not UTF-8 text (it holds NUL bytes); save it as UTF-8 CSV"),
        (b"\xff\xfe\xfa garbage \xc3\x28\n1,2,3\n", "the header (line 1) is not UTF-8 text; save the file as UTF-8 CSV"),
    ],
    ids=["empty", "blank", "binary", "utf-16", "not-utf-8"],
)
def test_an_empty_or_binary_file_is_quarantined_whole_and_the_other_files_go_on(csv_folder, lake, content, detail):
    (csv_folder / "observations-late.csv").write_bytes(content)
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted == {"patients": 2, "encounters": 2, "observations": 5, "outcomes": 1}
    assert quarantine.select("table", "source_file", "source_line", "rule", "detail").rows() == [
        ("observations", "observations-late.csv", 1, "unreadable_file", detail)
    ]
    assert [s["status"] for s in summary.sources if s["path"].endswith("observations-late.csv")] == ["unreadable"]


def test_an_unreadable_file_ingested_again_is_a_no_op(csv_folder, lake):
    (csv_folder / "observations-late.csv").write_bytes(b"\x00\x01")
    first, _ = ingest_paths([csv_folder], lake=lake, now=NOW)
    again, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert again.already_ingested and quarantine.height == 0
    assert lake.scan_quarantine().collect().height == 1
    late = [s for s in again.sources if s["path"].endswith("observations-late.csv")]
    assert late[0]["readable"] is False and late[0]["batch_id"] == first.batch_id


def test_a_parquet_file_that_cannot_be_read_is_quarantined_whole(csv_folder, lake):
    (csv_folder / "observations-late.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 5
    assert quarantine.select("source_file", "rule", "detail").rows() == [
        ("observations-late.parquet", "unreadable_file", "the file cannot be read as Parquet")
    ]


def test_a_parquet_birth_year_of_nan_inf_or_1e20_quarantines_the_row_not_the_batch(tmp_path, lake):
    folder = tmp_path / "parquet-feed"
    folder.mkdir()
    pl.DataFrame(
        {"patient_id": ["P1", "P2", "P3", "P4"], "birth_year": [float("nan"), float("inf"), 1e20, 1950.0],
         "sex": ["female"] * 4, "site": ["site-a"] * 4}
    ).write_parquet(folder / "patients.parquet")  # fmt: skip
    summary, quarantine = ingest_paths([folder], lake=lake, now=NOW)
    assert summary.accepted["patients"] == 1
    assert quarantine.select("source_line", "rule").rows() == [
        (1, "unparseable_value"), (2, "unparseable_value"), (3, "out_of_range")
    ]
    assert lake.scan("patients").collect()["birth_year"].to_list() == [1950]


def test_files_with_a_header_and_no_rows_are_an_ingest_error(tmp_path, lake):
    folder = write(tmp_path / "feed", {"observations.csv": "encounter_id,charttime,variable,value,unit\n"})
    with pytest.raises(IngestError, match=r"^nothing could be read from .*feed: the files hold no rows$"):
        ingest_paths([folder], lake=lake, now=NOW)
    assert lake.is_empty()


def test_a_ragged_line_is_quarantined_with_its_number_and_the_rows_around_it_go_on(csv_folder, lake):
    (csv_folder / "observations.csv").write_text(
        OBSERVATIONS_CSV
        + "E1,2024-01-10T11:00:00Z,heart_rate,80,bpm,monitor,extra\n"  # line 7: a field too many
        + "E1,2024-01-10T12:00:00Z,heart_rate,81\n"  # line 8: too few
        + "E1,2024-01-10T13:00:00Z,heart_rate,82,bpm,monitor\n",  # line 9: fine
        encoding="utf-8",
    )
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 6
    assert quarantine.select("source_line", "rule", "detail", "record").rows() == [
        (7, "malformed_line", "line has 7 fields; the header has 6", "{}"),
        (8, "malformed_line", "line has 4 fields; the header has 6", "{}"),
    ]


def test_a_semicolon_line_with_decimal_commas_is_quarantined_and_the_rest_go_on(csv_folder, lake):
    (csv_folder / "observations.csv").write_text(
        OBSERVATIONS_CSV + "E1;2024-01-10T11:00:00Z;temperature;37,5;Cel;monitor\n"
        "E1,2024-01-10T12:00:00Z,heart_rate,82,bpm,monitor\n", encoding="utf-8"
    )  # fmt: skip
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 6
    assert quarantine.select("source_line", "rule", "detail").rows() == [
        (7, "malformed_line", "line has 2 fields; the header has 6")
    ]


def test_a_semicolon_file_is_read_and_a_decimal_comma_is_not_a_number(csv_folder, lake):
    (csv_folder / "observations.csv").write_text(
        "encounter_id;charttime;variable;value;unit;source\n"
        "E1;2024-01-10T09:00:00Z;heart_rate;88;bpm;monitor\n"
        "E1;2024-01-10T09:00:00Z;temperature;37,5;Cel;monitor\n"
        "E1;2024-01-10T10:00:00Z;creatinine;1.1;mg/dL;lab\n",
        encoding="utf-8",
    )
    summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 2
    assert quarantine.select("source_line", "rule", "detail").rows() == [(3, "unparseable_value", "value is not a number")]


def test_quoted_fields_may_hold_the_delimiter_and_quotes(csv_folder, lake):
    (csv_folder / "encounters.csv").write_text(
        'encounter_id,patient_id,admit_time,discharge_time,ward,site\n'
        'E1,P1,2024-01-10T08:00:00Z,2024-01-12T10:00:00Z,"Ward 7, North",site-a\n'
        '"E2","P2","2024-01-11T09:30:00Z","","Ward ""B""","site-a"\n',
        encoding="utf-8",
    )
    summary, _ = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["encounters"] == 2 and summary.quarantined == {}
    wards = dict(lake.scan("encounters").select("encounter_id", "ward").collect().rows())
    assert wards == {"E1": "Ward 7, North", "E2": 'Ward "B"'}


SENTINEL = "ZQX-SENTINEL"


def test_an_unterminated_quote_quarantines_its_line_and_leaks_nothing(csv_folder, lake, caplog):
    lines = [f"E1,2024-01-10T{h:02d}:{m:02d}:00Z,heart_rate,{60 + m},bpm,{SENTINEL}-{h}-{m}" for h in range(10, 22) for m in range(60)]
    lines.insert(4, f'E1,2024-01-10T09:30:00Z,heart_rate,"{SENTINEL} never closed,bpm,monitor')
    (csv_folder / "observations.csv").write_text(
        "encounter_id,charttime,variable,value,unit,source\n" + "\n".join(lines) + "\n", encoding="utf-8"
    )
    with caplog.at_level(logging.DEBUG):
        summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == len(lines) - 1
    assert quarantine.select("source_line", "rule", "detail", "record").rows() == [
        (6, "malformed_line", "a quote on this line is not closed, or a quoted field is followed by text", "{}")
    ]
    assert SENTINEL not in json.dumps(summary.to_dict()) and SENTINEL not in caplog.text


def test_columns_outside_the_contract_are_dropped_from_the_lake_and_the_quarantine_with_a_warning(csv_folder, lake, tmp_path, caplog):
    (csv_folder / "observations.csv").write_text(
        "encounter_id,patient_name,charttime,variable,value,unit,nhs_number\n"
        "E1,Jane Doe,2024-01-10T09:00:00Z,heart_rate,88,bpm,943 476 5919\n"
        "E1,Jane Doe,2024-01-10T09:00:00Z,heart_rate,950,bpm,943 476 5919\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.INFO):
        summary, quarantine = ingest_paths([csv_folder], lake=lake, now=NOW)
    assert summary.warnings == ["observations.csv: dropped 2 column(s) outside the contract: patient_name, nhs_number"]
    assert "patient_name, nhs_number" in caplog.text
    for frame in [lake.scan(t).collect() for t in ("patients", "encounters", "observations", "outcomes")] + [
        lake.scan_quarantine().collect(), quarantine
    ]:
        text = frame.write_csv()
        assert "Jane Doe" not in text and "943 476 5919" not in text and "nhs_number" not in text
    settings = Settings(home=tmp_path / "home")
    result = CliRunner().invoke(cli, ["--home", str(settings.home), "ingest", str(csv_folder)], obj={})
    assert result.exit_code == 0, result.output
    engine = open_store(settings.database_url)
    with engine.connect() as connection:
        records = connection.execute(select(quarantine_table.c.record)).scalars().all()
    engine.dispose()
    assert records and not any("Jane Doe" in r or "943 476 5919" in r for r in records)
    assert "dropped 2 column(s) outside the contract: patient_name, nhs_number" in result.output


def run_cli(home: Path, *args: str):
    return CliRunner().invoke(cli, ["--home", str(home), *args], obj={})


def test_the_ingest_command_lists_ignored_files_and_quarantined_files_and_exits_0(csv_folder, tmp_path):
    (csv_folder / "notes.txt").write_text("hello")
    (csv_folder / "observations-late.csv").write_bytes(b"\x00binary")
    result = run_cli(tmp_path / "home", "ingest", str(csv_folder))
    assert result.exit_code == 0, result.stderr
    assert "ignored (not recognised as a table): " + str(csv_folder / "notes.txt") in result.stdout
    assert "quarantined observations.unreadable_file: 1" in result.stdout
    data = json.loads(run_cli(tmp_path / "home2", "--json", "ingest", str(csv_folder)).stdout)
    assert data["ignored"] == [str(csv_folder / "notes.txt")]
    assert data["quarantined"]["observations"] == {"unreadable_file": 1}


def test_the_ingest_command_exits_non_zero_when_nothing_was_recognised(tmp_path):
    folder = write(tmp_path / "feed", {"obs.csv": OBSERVATIONS_CSV, "notes.txt": "hello"})
    result = run_cli(tmp_path / "home", "ingest", str(folder))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "ignored: notes.txt, obs.csv" in result.stderr


def test_control_characters_in_file_names_are_escaped_in_quarantine_output(csv_folder, tmp_path):
    forged = "observations-x\n  outcomes.csv line 2: duplicate: forged\x1b[2J.csv"
    (csv_folder / forged).write_text(
        "encounter_id,charttime,variable,value,unit\nE1,2024-01-10T11:00:00Z,heart_rate,950,bpm\n", encoding="utf-8"
    )
    home = tmp_path / "home"
    ingested = run_cli(home, "ingest", str(csv_folder))
    assert ingested.exit_code == 0, ingested.stderr
    result = run_cli(home, "quarantine")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert not any(line.lstrip().startswith("outcomes.csv") for line in lines + ingested.stdout.splitlines())
    assert "\x1b" not in result.stdout + ingested.stdout
    assert r"observations-x\n  outcomes.csv line 2: duplicate: forged\x1b[2J.csv line 2: out_of_range" in result.stdout


def test_header_whitespace_and_windows_line_endings_are_tolerated(tmp_path, lake):
    folder = write(
        tmp_path / "feed",
        {
            "patients.csv": PATIENTS_CSV,
            "encounters.csv": ENCOUNTERS_CSV,
            "observations.csv": "encounter_id, charttime ,variable,value,unit\r\nE1,2024-01-10T09:00:00Z,heart_rate,88,bpm\r\n",
        },
    )
    summary, _ = ingest_paths([folder], lake=lake, now=NOW)
    assert summary.accepted["observations"] == 1


def test_an_error_naming_a_file_with_a_newline_stays_on_one_line(tmp_path):
    result = run_cli(tmp_path / "home", "ingest", str(tmp_path / "missing\nerror: forged.csv"))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("missing\\nerror: forged.csv: no such file or folder\n")
