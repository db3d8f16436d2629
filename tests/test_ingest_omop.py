"""OMOP CDM in, from a folder of CSV/Parquet tables or a database URL: persons, visits (wards
from care sites), measurements through LOINC concepts and UCUM units, deaths; unmapped
measurements are counted, failing ones quarantined with table and line."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from riskcast.ingest import discover
from riskcast.ingest.omop import read_omop, redacted_url
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
DATA = Path(__file__).resolve().parents[1] / "../shared/data"
SYNTHEA = DATA / "omop-synthea27nj"
MIMIC = DATA / "mimic-iv-demo/omop/1_omop_data_csv"

PERSON = "person_id,gender_concept_id,year_of_birth,race_source_value\n1,8532,1950,white\n2,8507,1960,\n"
VISITS = """visit_occurrence_id,person_id,visit_concept_id,visit_start_datetime,visit_end_datetime,care_site_id,discharged_to_concept_id
10,1,9201,2024-01-10 08:00:00,2024-01-12 08:00:00,,4216643
20,2,9201,2024-02-01 08:00:00,2024-02-03 08:00:00,5,
"""
DETAILS = """visit_detail_id,person_id,visit_detail_concept_id,visit_detail_start_datetime,visit_detail_end_datetime,care_site_id,visit_occurrence_id
100,1,9201,2024-01-10 08:00:00,2024-01-11 02:00:00,5,10
101,1,32037,2024-01-11 02:00:00,2024-01-12 08:00:00,6,10
"""
CARE_SITES = "care_site_id,care_site_name\n5,Ward 4B\n6,Medical Intensive Care Unit (MICU)\n"
CONCEPTS = """concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,standard_concept,concept_code
3027018,Heart rate,Measurement,LOINC,Clinical Observation,S,8867-4
3016723,Creatinine,Measurement,LOINC,Lab Test,S,2160-0
3036277,Body height,Measurement,LOINC,Clinical Observation,S,8302-2
8541,per minute,Unit,UCUM,Unit,S,/min
8840,milligram per deciliter,Unit,UCUM,Unit,S,mg/dL
8582,centimeter,Unit,UCUM,Unit,S,cm
"""
MEASUREMENT_HEADER = ("measurement_id,person_id,measurement_concept_id,measurement_datetime,value_as_number,unit_concept_id,"
                      "unit_source_value,visit_occurrence_id,visit_detail_id,measurement_source_value\n")
MEASUREMENTS = MEASUREMENT_HEADER + """1,1,3027018,2024-01-10 09:00:00,88,8541,,10,100,
2,1,3016723,2024-01-11 06:00:00,1.0,8840,,10,101,
3,1,3036277,2024-01-10 09:00:00,170,8582,,10,100,
4,1,0,2024-01-10 10:00:00,91,,/min,10,100,8867-4
5,2,3016723,2024-02-01 09:00:00,,8840,,20,,
"""
DEATH = "person_id,death_date,death_datetime\n1,2024-01-12,2024-01-12 07:00:00\n"


def write_cdm(folder: Path, **overrides: str) -> Path:
    tables = {"person": PERSON, "visit_occurrence": VISITS, "visit_detail": DETAILS, "care_site": CARE_SITES,
              "concept": CONCEPTS, "measurement": MEASUREMENTS, "death": DEATH, **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (folder / f"{name.upper()}.csv").write_text(text)
    return folder


def ingest(path, tmp_path: Path, **options):
    lake = Lake(tmp_path / "lake")
    summary, quarantine = ingest_paths([path], lake=lake, now=NOW, **options)
    return lake, summary, quarantine


def skipped(summary, rule: str) -> dict[str, int]:
    return {row["family"]: row["rows"] for row in summary.skipped if row["rule"] == rule}


def test_an_omop_folder_is_recognised_by_its_tables(tmp_path):
    assert [s.format for s in discover([write_cdm(tmp_path / "cdm")]).sources] == ["omop"]


def test_persons_visits_measurements_and_deaths_become_canonical_rows(tmp_path):
    lake, summary, quarantine = ingest(write_cdm(tmp_path / "cdm"), tmp_path)
    assert lake.scan("patients").collect().sort("patient_id").select("patient_id", "sex", "birth_year").rows() == [
        ("1", "female", 1950), ("2", "male", 1960)]
    wards = dict(lake.scan("encounters").collect().select("encounter_id", "ward").rows())
    assert wards == {"10": "Medical Intensive Care Unit (MICU)", "20": "Ward 4B"}  # last visit_detail's, else the visit's
    observed = lake.scan("observations").collect().sort("charttime").select("variable", "value").rows()
    assert observed == [("heart_rate", 88.0), ("heart_rate", 91.0), ("creatinine", pytest.approx(88.42))]
    outcomes = sorted(lake.scan("outcomes").collect().select("event_type", "event_time").rows())
    assert outcomes == [("death", datetime(2024, 1, 12, 7, tzinfo=timezone.utc)),
                        ("icu_transfer", datetime(2024, 1, 11, 2, tzinfo=timezone.utc))]
    assert skipped(summary, "unmapped_code") == {"LOINC": 1}  # body height
    assert skipped(summary, "same_death_twice") == {"death": 1}  # the death table and the discharge to death
    # the creatinine without a value is a measurement that fails: quarantined with its line
    assert quarantine.select("source_file", "source_line", "rule").rows() == [("MEASUREMENT.csv", 6, "missing_required")]


def test_icu_visit_details_can_be_the_encounters(tmp_path):
    lake, _, _ = ingest(write_cdm(tmp_path / "cdm"), tmp_path, encounters="icu")
    assert lake.scan("encounters").collect().select("encounter_id", "ward").rows() == [("101", "Medical Intensive Care Unit (MICU)")]
    # measurements of the ward before, within the observation window (24 h) of the ICU stay, count towards it
    assert sorted(lake.scan("observations").collect()["variable"]) == ["creatinine", "heart_rate", "heart_rate"]
    assert lake.scan("outcomes").collect()["event_type"].to_list() == ["death"]


def test_a_visit_of_a_person_not_in_the_person_table_is_quarantined(tmp_path):
    visits = VISITS + "30,99,9201,2024-03-01 08:00:00,2024-03-02 08:00:00,,\n"
    lake, _, quarantine = ingest(write_cdm(tmp_path / "cdm", visit_occurrence=visits), tmp_path)
    assert "30" not in lake.scan("encounters").collect()["encounter_id"].to_list()
    assert quarantine.filter(pl.col("rule") == "unknown_patient").select("table", "source_line").rows() == [("encounters", 4)]


def test_a_database_url_is_read_through_sqlalchemy(tmp_path):
    folder = write_cdm(tmp_path / "cdm")
    url = f"sqlite:///{tmp_path / 'cdm.db'}"
    engine = create_engine(url)
    for path in folder.iterdir():
        pl.read_csv(path, infer_schema=False).to_pandas().to_sql(path.stem.lower(), engine, index=False)
    engine.dispose()
    from_folder = read_omop(folder)
    from_database = read_omop(url)
    provenance = ["_source_file", "_source_line"]
    assert from_database["observations"].drop(provenance).equals(from_folder["observations"].drop(provenance))
    assert from_database["observations"]["_source_file"][0].endswith("#measurement")  # the table; lines count rows from 1
    assert from_database["observations"]["_source_line"].to_list() == [x - 1 for x in from_folder["observations"]["_source_line"]]
    lake, summary, _ = ingest(url, tmp_path)
    assert summary.sources[0]["format"] == "omop" and lake.scan("observations").collect().height == 3
    again, _ = ingest_paths([url], lake=lake, now=NOW)
    assert again.already_ingested


def test_a_password_in_a_database_url_is_never_shown():
    assert "secret" not in redacted_url("postgresql://riskcast:secret@db.internal/omop")


# ---------------------------------------------------------------- properties

MEASUREMENT_ROW = st.sampled_from([
    ("good", "3027018,{t},80,8541,,10,100,"),
    ("good", "0,{t},80,,/min,10,100,8867-4"),
    ("bad", "3027018,{t},900,8541,,10,100,"),  # out of range
    ("bad", "3027018,{t},80,,furlongs,10,100,"),  # unknown unit
    ("bad", "3027018,{t},eighty,8541,,10,100,"),  # not a number
    ("unmapped", "3036277,{t},170,8582,,10,100,"),
    ("unmapped", "0,{t},1,,,10,100,"),
])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MEASUREMENT_ROW, min_size=1, max_size=10))
def test_every_measurement_is_accepted_quarantined_with_a_reason_or_counted(tmp_path_factory, draws):
    folder = tmp_path_factory.mktemp("omop")
    rows = [f"{i},1," + row.format(t=f"2024-01-10 09:{i:02d}:00") for i, (_, row) in enumerate(draws)]
    lake, summary, quarantine = ingest(write_cdm(folder / "cdm", measurement=MEASUREMENT_HEADER + "\n".join(rows) + "\n"), folder)
    expected = {kind: sum(1 for k, _ in draws if k == kind) for kind in ("good", "bad", "unmapped")}
    assert lake.scan("observations").collect().height == expected["good"]
    assert quarantine.filter(pl.col("table") == "observations").height == expected["bad"]
    assert sorted(quarantine["source_line"]) == [i + 2 for i, (k, _) in enumerate(draws) if k == "bad"]
    assert sum(skipped(summary, "unmapped_code").values()) == expected["unmapped"]


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_the_synthea_sample_gives_its_measurements(tmp_path):
    if not SYNTHEA.exists():
        pytest.skip(f"the Synthea OMOP sample is not at {SYNTHEA} (see ../shared/data/README.md)")
    _, summary, _ = ingest(SYNTHEA, tmp_path)
    assert summary.accepted["observations"] >= 1_000
    assert summary.accepted["patients"] == 28 and summary.accepted["encounters"] == 1_791


@pytest.mark.realdata
def test_the_mimic_omop_folder_gives_persons_visits_wards_and_deaths(tmp_path):
    if not MIMIC.exists():
        pytest.skip(f"MIMIC-IV demo in OMOP not found at {MIMIC} (see ../shared/data/README.md)")
    lake, summary, quarantine = ingest(MIMIC, tmp_path)
    assert summary.accepted["patients"] == 100 and summary.accepted["encounters"] == 852
    # two outcomes fall outside the visit they name (the rule: at most 6 h after discharge)
    assert quarantine.select("table", "rule").unique().rows() == [("outcomes", "outside_encounter")]
    wards = set(lake.scan("encounters").collect()["ward"])
    assert "Medical Intensive Care Unit (MICU)" in wards or "Medicine" in wards
    outcomes = lake.scan("outcomes").collect()
    assert (outcomes["event_type"] == "death").sum() == 15


@pytest.mark.realdata
@pytest.mark.postgres
@pytest.mark.slow
def test_the_synthea_sample_reads_back_from_postgresql(tmp_path, postgres_admin_url):
    if not SYNTHEA.exists():
        pytest.skip(f"the Synthea OMOP sample is not at {SYNTHEA} (see ../shared/data/README.md)")
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432/test (tried users postgres and root)")
    schema = f"riskcast_omop_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_admin_url}?options=-csearch_path%3D{schema}"
    try:
        loader = create_engine(url, poolclass=NullPool)
        for table in ("PERSON", "VISIT_OCCURRENCE", "VISIT_DETAIL", "CARE_SITE", "MEASUREMENT", "DEATH", "CONCEPT", "CDM_SOURCE"):
            pl.read_csv(SYNTHEA / f"{table}.csv", infer_schema=False).to_pandas().to_sql(table.lower(), loader, index=False)
        loader.dispose()
        _, from_folder, _ = ingest(SYNTHEA, tmp_path / "folder")
        _, from_database, _ = ingest(url, tmp_path / "database")
        assert from_database.accepted == from_folder.accepted
        assert from_database.accepted["observations"] >= 1_000
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
