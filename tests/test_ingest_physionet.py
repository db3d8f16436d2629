"""Reading PhysioNet 2019 sepsis-challenge files: one patient and stay per .psv, hourly wide
rows turned into long observations in the units they were recorded in, sepsis onset from the
(already shifted) label, provenance down to the line, and the contract validators accepting
what comes out. Bad lines are quarantined, never fatal; unreadable sources say which file."""

from __future__ import annotations

import io
import math
import tarfile
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskcast.catalog import load_catalog
from riskcast.contracts import (
    UTC_DATETIME,
    validate_encounters,
    validate_observations,
    validate_outcomes,
    validate_patients,
)
from riskcast.errors import IngestError
from riskcast.ingest.physionet import CLINICAL_COLUMNS, EXPECTED_COLUMNS, looks_like_physionet, read_physionet
from riskcast.ingest.rejects import REJECTED
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths

ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
HEADER = "|".join(EXPECTED_COLUMNS)
REAL_ARCHIVE = Path(__file__).resolve().parents[1] / "../shared/data/physionet2019/training_setA.tar.gz"


def psv_line(**values: float | str) -> str:
    """One hourly row: every column NaN unless given."""
    return "|".join(str(values.get(column, "NaN")) for column in EXPECTED_COLUMNS)


def psv(*rows: dict[str, float | str]) -> str:
    return "\n".join([HEADER, *(psv_line(**row) for row in rows)]) + "\n"


STAY = {"Age": 70.5, "Gender": 1, "Unit1": 1, "Unit2": 0, "HospAdmTime": -2.5}
# p000010: a man in the MICU who becomes septic; SepsisLabel is 1 from ICULOS 3 (line 4) on.
SEPTIC = psv(
    {**STAY, "HR": 88, "O2Sat": 97, "Temp": 37.2, "ICULOS": 1, "SepsisLabel": 0},
    {**STAY, "HR": 95, "Creatinine": 1.2, "Lactate": 2.0, "FiO2": 0.4, "ICULOS": 2, "SepsisLabel": 0},
    {**STAY, "HR": 110, "SBP": 92, "ICULOS": 3, "SepsisLabel": 1},
    {**STAY, "ICULOS": 4, "SepsisLabel": 1},
)
# p000002: a woman in the SICU who does not.
NOT_SEPTIC = psv(
    {"Age": 45.25, "Gender": 0, "Unit1": 0, "Unit2": 1, "HR": 72, "Resp": 16, "ICULOS": 1, "SepsisLabel": 0},
    {"Age": 45.25, "Gender": 0, "Unit1": 0, "Unit2": 1, "Glucose": 180, "ICULOS": 2, "SepsisLabel": 0},
)


def write_folder(root: Path, files: dict[str, str], name: str = "training_setA") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path, {"p000010.psv": SEPTIC, "p000002.psv": NOT_SEPTIC})


def write_archive(path: Path, files: dict[str, str], *, top: str = "training_setA") -> Path:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in files.items():
                archive.writestr(f"{top}/{name}", text)
        return path
    mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(path, mode) as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def observations_of(frames: dict[str, pl.DataFrame], encounter_id: str) -> pl.DataFrame:
    return frames["observations"].filter(pl.col("encounter_id") == encounter_id)


# ---------------------------------------------------------------- mapping


def test_each_file_is_one_patient_named_by_its_stem_with_age_and_sex(folder: Path) -> None:
    patients = read_physionet(folder)["patients"]
    assert patients.select("patient_id", "age", "sex", "birth_year", "race_ethnicity").rows() == [
        ("p000002", 45.25, "female", None, None),
        ("p000010", 70.5, "male", None, None),
    ]


def test_site_comes_from_the_folder_name_unless_given(folder: Path) -> None:
    assert read_physionet(folder)["encounters"]["site"].unique().to_list() == ["physionet-A"]
    assert read_physionet(folder, site="icu-east")["patients"]["site"].unique().to_list() == ["icu-east"]


def test_ward_is_micu_sicu_or_unknown_from_the_unit_flags(tmp_path: Path) -> None:
    no_unit = psv({"Age": 60, "Gender": 1, "HR": 80, "ICULOS": 1, "SepsisLabel": 0})
    folder = write_folder(tmp_path, {"p000010.psv": SEPTIC, "p000002.psv": NOT_SEPTIC, "p000003.psv": no_unit})
    encounters = read_physionet(folder)["encounters"]
    assert dict(encounters.select("encounter_id", "ward").rows()) == {
        "p000002": "SICU",
        "p000003": "ICU-unknown",
        "p000010": "MICU",
    }


def test_admit_time_is_the_anchor_plus_the_id_in_hours_and_discharge_the_last_hour(folder: Path) -> None:
    encounters = read_physionet(folder)["encounters"]
    septic = encounters.filter(pl.col("encounter_id") == "p000010").row(0, named=True)
    assert septic["patient_id"] == "p000010"
    assert septic["admit_time"] == ANCHOR + timedelta(hours=10)
    assert septic["discharge_time"] == ANCHOR + timedelta(hours=10 + 4)
    assert encounters.schema["admit_time"] == UTC_DATETIME
    assert encounters.schema["discharge_time"] == UTC_DATETIME


def test_charttime_is_admit_time_plus_iculos_hours(folder: Path) -> None:
    heart_rate = observations_of(read_physionet(folder), "p000010").filter(pl.col("variable") == "heart_rate")
    assert heart_rate.select("charttime", "value").rows() == [
        (ANCHOR + timedelta(hours=11), 88.0),
        (ANCHOR + timedelta(hours=12), 95.0),
        (ANCHOR + timedelta(hours=13), 110.0),
    ]


def test_every_recorded_value_is_one_observation_and_nan_is_skipped(folder: Path) -> None:
    observations = observations_of(read_physionet(folder), "p000010")
    assert observations.select("variable", "value").rows() == [
        ("heart_rate", 88.0),
        ("spo2", 97.0),
        ("temperature", 37.2),
        ("heart_rate", 95.0),
        ("fio2", 0.4),
        ("creatinine", 1.2),
        ("lactate", 2.0),
        ("heart_rate", 110.0),
        ("sbp", 92.0),
    ]


def test_units_are_as_recorded_in_the_challenge_data(folder: Path) -> None:
    observations = read_physionet(folder)["observations"]
    units = dict(observations.select("variable", "unit").unique().rows())
    assert units == {
        "heart_rate": "/min",
        "spo2": "%",
        "temperature": "Cel",
        "fio2": "1",
        "creatinine": "mg/dL",
        "lactate": "mmol/L",
        "sbp": "mm[Hg]",
        "resp_rate": "/min",
        "glucose": "mg/dL",
    }
    assert observations["source"].unique().to_list() == ["physionet2019"]
    assert observations.schema["value"] == pl.Float64
    assert observations.schema["charttime"] == UTC_DATETIME


def test_every_mapped_column_is_a_catalogue_variable_whose_unit_converts() -> None:
    catalog = load_catalog()
    for column, (variable, unit) in CLINICAL_COLUMNS.items():
        entry = catalog[variable]
        recorded = catalog.canonical_unit(unit)
        assert recorded == entry.unit or recorded in entry.conversions, f"{column}: {unit} -> {variable}"


def test_source_line_counts_the_header_as_line_one(folder: Path) -> None:
    observations = observations_of(read_physionet(folder), "p000010")
    lines = dict(observations.filter(pl.col("variable").is_in(["spo2", "creatinine", "sbp"])).select("variable", "_source_line").rows())
    assert lines == {"spo2": 2, "creatinine": 3, "sbp": 4}
    assert observations["_source_file"].unique().to_list() == ["training_setA/p000010.psv"]


def test_sepsis_event_time_is_the_first_labelled_hour_plus_six_hours(folder: Path) -> None:
    outcomes = read_physionet(folder)["outcomes"]
    assert outcomes.select("encounter_id", "event_type", "event_time", "_source_line").rows() == [
        ("p000010", "sepsis", ANCHOR + timedelta(hours=10 + 3 + 6), 4)
    ]
    assert outcomes.schema["event_time"] == UTC_DATETIME


def test_the_contract_validators_accept_every_row(folder: Path) -> None:
    frames = read_physionet(folder)
    patients = validate_patients(frames["patients"])
    encounters = validate_encounters(frames["encounters"])
    observations = validate_observations(frames["observations"], encounters=encounters.valid)
    outcomes = validate_outcomes(frames["outcomes"], known_encounters=encounters.valid)
    for validated, rows in [(patients, 2), (encounters, 2), (observations, 12), (outcomes, 1)]:
        assert validated.quarantined.height == 0, validated.quarantined.to_dicts()
        assert validated.valid.height == rows


def test_validated_values_are_in_canonical_units(folder: Path) -> None:
    frames = read_physionet(folder)
    encounters = validate_encounters(frames["encounters"]).valid
    valid = validate_observations(frames["observations"], encounters=encounters).valid
    canonical = dict(valid.filter(pl.col("encounter_id") == "p000010").select("variable", "value").rows())
    assert canonical["creatinine"] == pytest.approx(1.2 * 88.42)  # mg/dL -> umol/L
    assert canonical["lactate"] == pytest.approx(2.0)  # recorded in mmol/L already
    glucose = valid.filter(pl.col("variable") == "glucose")["value"].item()
    assert glucose == pytest.approx(180 * 0.0555)  # mg/dL -> mmol/L


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    heart_rates=st.lists(
        st.one_of(st.just(math.nan), st.integers(min_value=30, max_value=200).map(float)), min_size=1, max_size=8
    )
)
def test_one_observation_per_recorded_cell_for_any_pattern_of_gaps(tmp_path: Path, heart_rates: list[float]) -> None:
    rows = [{"HR": hr, "ICULOS": hour, "SepsisLabel": 0} for hour, hr in enumerate(heart_rates, start=1)]
    path = tmp_path / "p000001.psv"
    path.write_text(psv(*rows))
    observations = read_physionet(path)["observations"]
    recorded = [(hour + 2, hr) for hour, hr in enumerate(heart_rates) if not math.isnan(hr)]
    assert observations.select("_source_line", "value").rows() == recorded


# ---------------------------------------------------------------- sources


@pytest.mark.parametrize("archive_name", ["training_setA.tar.gz", "training_setA.tgz", "training_setA.tar", "training_setA.zip"])
def test_archives_read_like_the_folder_with_the_member_in_source_file(
    tmp_path: Path, folder: Path, archive_name: str
) -> None:
    archive = write_archive(tmp_path / archive_name, {"p000010.psv": SEPTIC, "p000002.psv": NOT_SEPTIC})
    from_archive = read_physionet(archive)
    from_folder = read_physionet(folder)
    for table in ("patients", "encounters", "observations", "outcomes"):
        assert from_archive[table].drop("_source_file").equals(from_folder[table].drop("_source_file")), table
    assert from_archive["outcomes"]["_source_file"].item() == f"{archive_name}:training_setA/p000010.psv"


def test_a_single_file_is_read_and_its_folder_names_the_site(folder: Path) -> None:
    frames = read_physionet(folder / "p000002.psv")
    assert frames["patients"]["patient_id"].to_list() == ["p000002"]
    assert frames["patients"]["site"].item() == "physionet-A"
    assert frames["observations"]["_source_file"].unique().to_list() == ["p000002.psv"]
    assert frames["outcomes"].height == 0


def test_folders_are_searched_recursively_in_name_order(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, {"p000010.psv": SEPTIC}, name="training_setB")
    (folder / "more").mkdir()
    (folder / "more" / "p000002.psv").write_text(NOT_SEPTIC)
    (folder / "notes.txt").write_text("not a psv")
    patients = read_physionet(folder)["patients"]
    assert patients.select("patient_id", "_source_file", "site").rows() == [
        ("p000002", "training_setB/more/p000002.psv", "physionet-B"),
        ("p000010", "training_setB/p000010.psv", "physionet-B"),
    ]


def test_limit_reads_only_the_first_files_in_name_order(tmp_path: Path) -> None:
    archive = write_archive(
        tmp_path / "training_setA.tar.gz", {"p000010.psv": SEPTIC, "p000002.psv": NOT_SEPTIC, "p000003.psv": NOT_SEPTIC}
    )
    assert read_physionet(archive, limit=2)["encounters"]["encounter_id"].to_list() == ["p000002", "p000003"]


def test_looks_like_physionet_recognises_files_folders_and_archives(tmp_path: Path, folder: Path) -> None:
    tar = write_archive(tmp_path / "a.tar.gz", {"p000001.psv": NOT_SEPTIC})
    zip_ = write_archive(tmp_path / "a.zip", {"p000001.psv": NOT_SEPTIC})
    empty_zip = write_archive(tmp_path / "b.zip", {"readme.txt": "hello"})
    csv = tmp_path / "observations.csv"
    csv.write_text("encounter_id\n")
    assert [looks_like_physionet(p) for p in (folder, folder / "p000002.psv", tar, zip_)] == [True] * 4
    assert [looks_like_physionet(p) for p in (empty_zip, csv, tmp_path / "missing.psv")] == [False] * 3


def test_columns_are_read_by_name_whatever_their_order(tmp_path: Path, folder: Path) -> None:
    reordered = list(reversed(EXPECTED_COLUMNS))
    rows = [{"HR": 72, "Resp": 16, "ICULOS": 1, "SepsisLabel": 0, "Gender": 0}, {"Glucose": 180, "ICULOS": 2, "SepsisLabel": 0}]
    text = "\n".join(["|".join(reordered), *("|".join(str(row.get(c, "NaN")) for c in reordered) for row in rows)])
    (folder / "p000001.psv").write_text(text + "\n")
    observations = read_physionet(folder)["observations"]
    assert observations["encounter_id"].unique(maintain_order=True).to_list() == ["p000001", "p000002", "p000010"]
    assert observations_of({"observations": observations}, "p000001").select("variable", "value", "_source_line").rows() == [
        ("heart_rate", 72.0, 2),
        ("resp_rate", 16.0, 2),
        ("glucose", 180.0, 3),
    ]


# ---------------------------------------------------------------- errors


def test_a_missing_path_raises_ingest_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"training_setZ\.tar\.gz: no such file or folder"):
        read_physionet(tmp_path / "training_setZ.tar.gz")


def test_an_archive_without_psv_files_raises_ingest_error(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "training_setA.zip", {"readme.txt": "hello"})
    with pytest.raises(IngestError, match=r"training_setA\.zip: no \.psv files found"):
        read_physionet(archive)


def test_a_header_without_challenge_columns_rejects_that_file_naming_the_columns(tmp_path: Path) -> None:
    header = "|".join(c for c in EXPECTED_COLUMNS if c not in ("ICULOS", "SepsisLabel"))
    folder = write_folder(tmp_path, {"p000010.psv": SEPTIC, "p000011.psv": header + "\n1|2\n"})
    frames = read_physionet(folder)
    assert frames["encounters"]["encounter_id"].to_list() == ["p000010"]
    row = frames[REJECTED].row(0, named=True)
    assert (row["table"], row["source_file"], row["source_line"], row["rule"]) == (
        "physionet", "training_setA/p000011.psv", 1, "missing_columns"
    )
    assert row["detail"].startswith("header (line 1) lacks column(s) ICULOS, SepsisLabel; a PhysioNet 2019 file has")


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "the file is empty; expected the challenge's header line"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "the file is not UTF-8 text (it holds NUL bytes)"),
        (b"\xff\xfe\xc3\x28HR|O2Sat\n", "the header (line 1) is not UTF-8 text"),
    ],
    ids=["empty", "binary", "not-utf-8"],
)
def test_an_empty_or_binary_psv_among_good_ones_is_quarantined_whole_and_the_rest_ingested(
    tmp_path: Path, content: bytes, detail: str
) -> None:
    folder = write_folder(tmp_path, {"p000010.psv": SEPTIC, "p000002.psv": NOT_SEPTIC})
    (folder / "p000003.psv").write_bytes(content)
    lake = Lake(tmp_path / "lake")
    summary, quarantine = ingest_paths([folder], lake=lake, now=NOW)
    assert summary.accepted == {"patients": 2, "encounters": 2, "observations": 12, "outcomes": 1}
    assert quarantine.select("table", "source_file", "source_line", "rule", "detail").rows() == [
        ("physionet", "training_setA/p000003.psv", 1, "unreadable_file", detail)
    ]
    assert summary.quarantined == {"physionet": {"unreadable_file": 1}}


def test_a_folder_of_only_unreadable_psv_files_commits_their_quarantine_and_accepts_nothing(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, {"p000003.psv": "", "p000004.psv": "HR|O2Sat\n80|97\n"})
    summary, quarantine = ingest_paths([folder], lake=Lake(tmp_path / "lake"), now=NOW)
    assert summary.total_accepted == 0 and summary.sources[0]["status"] == "unreadable"
    assert quarantine["rule"].to_list() == ["unreadable_file", "missing_columns"]
    assert summary.sources[0]["problems"][0] == (
        "training_setA/p000003.psv line 1: unreadable_file: the file is empty; expected the challenge's header line"
    )


def test_a_corrupt_archive_is_quarantined_whole_without_the_library_message(tmp_path: Path) -> None:
    archive = tmp_path / "training_setA.tar.gz"
    good = write_archive(tmp_path / "good.tar.gz", {"p000010.psv": SEPTIC})
    archive.write_bytes(good.read_bytes()[:60])  # cut short: gzip cannot finish it
    other = write_folder(tmp_path, {"p000002.psv": NOT_SEPTIC}, name="training_setB")
    summary, quarantine = ingest_paths([archive, other], lake=Lake(tmp_path / "lake"), now=NOW)
    assert summary.accepted["encounters"] == 1
    row = quarantine.row(0, named=True)
    assert (row["source_file"], row["source_line"], row["rule"]) == ("training_setA.tar.gz", None, "unreadable_file")
    assert row["detail"].startswith("cannot be read as a tar archive (")


def test_a_file_that_is_not_physionet_raises_ingest_error(tmp_path: Path) -> None:
    csv = tmp_path / "observations.csv"
    csv.write_text("encounter_id\n")
    with pytest.raises(IngestError, match=r"observations\.csv: not a PhysioNet 2019 source"):
        read_physionet(csv)


# ---------------------------------------------------------------- malformed lines


def validated_observations(frames: dict[str, pl.DataFrame]):
    encounters = validate_encounters(frames["encounters"]).valid
    return validate_observations(frames["observations"], encounters=encounters)


def test_text_in_a_value_cell_is_rejected_naming_its_column_and_the_rest_is_kept(tmp_path: Path) -> None:
    text = psv({"HR": 80, "ICULOS": 1, "SepsisLabel": 0}, {"HR": "eighty", "Resp": 18, "ICULOS": 2, "SepsisLabel": 0})
    frames = read_physionet(write_folder(tmp_path, {"p000005.psv": text}))
    assert frames[REJECTED].select("table", "source_file", "source_line", "rule", "detail", "record").rows() == [
        ("observations", "training_setA/p000005.psv", 3, "unparseable_value", "HR is not a number", "{}")
    ]
    validated = validated_observations(frames)
    assert validated.quarantined.height == 0
    assert validated.valid.select("variable", "value").rows() == [("heart_rate", 80.0), ("resp_rate", 18.0)]


def test_a_line_with_the_wrong_number_of_fields_is_quarantined_and_the_others_are_read(tmp_path: Path) -> None:
    good_first = psv_line(HR=80, ICULOS=1, SepsisLabel=0)
    short = "|".join(psv_line(HR=81, ICULOS=2, SepsisLabel=1).split("|")[:-1])
    long = psv_line(HR=82, ICULOS=3, SepsisLabel=1) + "|1"
    good_last = psv_line(HR=83, ICULOS=4, SepsisLabel=0)
    text = "\n".join([HEADER, good_first, short, long, good_last]) + "\n"
    frames = read_physionet(write_folder(tmp_path, {"p000005.psv": text}))
    assert frames[REJECTED].select("source_line", "rule", "detail").rows() == [
        (3, "malformed_line", "line has 40 fields; the header has 41"),
        (4, "malformed_line", "line has 42 fields; the header has 41"),
    ]
    validated = validated_observations(frames)
    assert validated.quarantined.height == 0
    assert validated.valid.select("value", "source_line").rows() == [(80.0, 2), (83.0, 5)]
    assert frames["outcomes"].height == 0  # the labels on the malformed lines are not used
    assert frames["encounters"]["discharge_time"].item() == ANCHOR + timedelta(hours=5 + 4)


def test_text_in_iculos_quarantines_the_line(tmp_path: Path) -> None:
    text = psv({"HR": 80, "ICULOS": 1, "SepsisLabel": 0}, {"HR": 90, "ICULOS": "two", "SepsisLabel": 0})
    frames = read_physionet(write_folder(tmp_path, {"p000005.psv": text}))
    assert frames[REJECTED].select("source_line", "rule", "detail").rows() == [
        (3, "unparseable_value", "ICULOS is not a number; the line has no time, so none of it is read")
    ]
    validated = validated_observations(frames)
    assert validated.quarantined.height == 0  # its heart rate, which has no time, is not read
    assert validated.valid.select("value").to_series().to_list() == [80.0]


def test_text_in_another_stay_column_is_rejected_and_the_line_goes_on(tmp_path: Path) -> None:
    text = psv({"HR": 80, "ICULOS": 1, "SepsisLabel": 0}, {"HR": 90, "Age": "old", "ICULOS": 2, "SepsisLabel": 0})
    frames = read_physionet(write_folder(tmp_path, {"p000005.psv": text}))
    assert frames[REJECTED].select("source_line", "rule", "detail").rows() == [(3, "unparseable_value", "Age is not a number")]
    assert validated_observations(frames).valid["value"].to_list() == [80.0, 90.0]


def test_windows_line_endings_blank_lines_and_blanks_around_values_keep_line_numbers(tmp_path: Path) -> None:
    lines = [HEADER, psv_line(HR=" 80", ICULOS=1, SepsisLabel=0), "", psv_line(HR=90, ICULOS=2, SepsisLabel=0)]
    path = tmp_path / "training_setA" / "p000005.psv"
    path.parent.mkdir()
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    observations = read_physionet(path)["observations"]
    assert observations.select("value", "_source_line").rows() == [(80.0, 2), (90.0, 4)]


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_training_set_a_reads_and_validates() -> None:
    if not REAL_ARCHIVE.exists():
        pytest.skip(f"PhysioNet 2019 training set A not found at {REAL_ARCHIVE} (see ../shared/data/README.md)")
    frames = read_physionet(REAL_ARCHIVE, limit=1000)  # a subset keeps the suite quick
    patients = validate_patients(frames["patients"])
    encounters = validate_encounters(frames["encounters"])
    observations = validate_observations(frames["observations"], encounters=encounters.valid)
    outcomes = validate_outcomes(frames["outcomes"], known_encounters=encounters.valid)
    assert patients.valid.height == encounters.valid.height == 1000
    assert patients.valid["patient_id"][0] == "p000001"
    assert set(encounters.valid["site"]) == {"physionet-A"}
    assert outcomes.quarantined.height == 0 and 0 < outcomes.valid.height < 1000
    # The challenge data hold a few implausible values (FiO2 above 1, a respiratory rate of 1):
    # those, and nothing else, are quarantined.
    assert set(observations.counts_by_rule) <= {"out_of_range"}
    assert observations.quarantined.height < 0.001 * observations.valid.height
    lactate = observations.valid.filter(pl.col("variable") == "lactate")["value"]
    assert 0.5 < lactate.median() < 4  # mmol/L, as recorded
