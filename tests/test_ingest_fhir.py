"""FHIR R4 in: a bulk export (NDJSON, gzip or not) or a Bundle becomes patients, stays,
observations and outcomes; lines that are not resources, and references to patients that
are not there, are quarantined with file and line; unused resources and codes are counted."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskcast.ingest import discover
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
DEMO = Path(__file__).resolve().parents[1] / "../shared/data/mimic-iv-demo/fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MIMIC_CHART = "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-chartevents-d-items"


def patient(pid: str = "p1", **extra) -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-04-10", **extra}


def location(lid: str, name: str) -> dict:
    return {"resourceType": "Location", "id": lid, "name": name, "status": "active"}


def encounter(eid: str = "e1", pid: str = "p1", start: str = "2024-01-10T08:00:00+00:00", end: str = "2024-01-12T08:00:00+00:00",
              wards: tuple[tuple[str, str], ...] = (("w1", "2024-01-10T08:00:00+00:00"),), **extra) -> dict:
    return {
        "resourceType": "Encounter", "id": eid, "status": "finished", "class": {"code": "IMP"},
        "subject": {"reference": f"Patient/{pid}"}, "period": {"start": start, "end": end},
        "location": [{"location": {"reference": f"Location/{lid}"}, "period": {"start": when}} for lid, when in wards],
        **extra,
    }


def observation(oid: str, code: str, value, unit: str = "/min", *, system: str = LOINC, eid: str | None = "e1", pid: str = "p1",
                when: str = "2024-01-10T09:00:00+00:00", **extra) -> dict:
    resource = {
        "resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}, **extra,
    }
    if eid is not None:
        resource["encounter"] = {"reference": f"Encounter/{eid}"}
    return resource


def write_export(folder: Path, files: dict[str, list]) -> Path:
    """A bulk export folder; a file ending in .gz is gzipped; str lines are written as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
        data = text.encode()
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return folder


def basic_export(folder: Path, observations: list) -> Path:
    return write_export(folder, {
        "Patient.ndjson": [patient()],
        "Location.ndjson": [location("w1", "Ward 4B"), location("icu", "Medical Intensive Care Unit (MICU)")],
        "Encounter.ndjson": [encounter()],
        "Observation.ndjson.gz": observations,
    })


def ingest(path: Path, tmp_path: Path, **options):
    lake = Lake(tmp_path / "lake")
    summary, quarantine = ingest_paths([path], lake=lake, now=NOW, **options)
    return lake, summary, quarantine


def skipped(summary, rule: str) -> dict[str, int]:
    return {row["family"]: row["rows"] for row in summary.skipped if row["rule"] == rule}


def test_a_bulk_export_folder_is_one_fhir_source(tmp_path):
    folder = basic_export(tmp_path / "export", [observation("o1", "8867-4", 88)])
    sources = discover([folder]).sources
    assert [(s.format, s.path) for s in sources] == [("fhir", folder)]


def test_patients_stays_and_observations_in_canonical_units(tmp_path):
    folder = basic_export(tmp_path / "export", [
        observation("o1", "8867-4", 88),
        observation("o2", "8310-5", 100.4, "[degF]"),
        observation("o3", "220045", 91, "bpm", system=MIMIC_CHART, when="2024-01-10T10:00:00+00:00"),
        {**observation("o4", "85354-9", None), "valueQuantity": None, "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 120, "code": "mm[Hg]", "system": UCUM}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 80, "code": "mm[Hg]", "system": UCUM}},
        ]},
    ])
    lake, summary, quarantine = ingest(folder, tmp_path)
    assert quarantine.height == 0
    assert lake.scan("patients").collect().select("patient_id", "sex", "birth_year").rows() == [("p1", "female", 1950)]
    assert lake.scan("encounters").collect().select("encounter_id", "ward").rows() == [("e1", "Ward 4B")]
    observed = {(v, t.hour): x for v, t, x in lake.scan("observations").collect().select("variable", "charttime", "value").rows()}
    assert observed[("heart_rate", 9)] == 88 and observed[("heart_rate", 10)] == 91  # LOINC, then a MIMIC item id
    assert observed[("temperature", 9)] == pytest.approx(38.0)
    assert (observed[("sbp", 9)], observed[("dbp", 9)]) == (120, 80)  # the panel's components


def test_lines_that_are_not_resources_are_quarantined_with_their_line(tmp_path):
    folder = basic_export(tmp_path / "export", [
        observation("o1", "8867-4", 88),
        "{this is not json",
        observation("o3", "8867-4", "eighty", when="2024-01-10T10:00:00+00:00"),  # a decimal must be a number
        observation("o4", "8867-4", 90, when="2024-01-10T11:00:00+00:00"),
    ])
    lake, _, quarantine = ingest(folder, tmp_path)
    assert lake.scan("observations").collect()["value"].to_list() == [88, 90]
    rows = quarantine.sort("source_line").select("source_file", "source_line", "rule").rows()
    assert rows == [("export/Observation.ndjson.gz", 2, "malformed_resource"), ("export/Observation.ndjson.gz", 3, "malformed_resource")]


def test_a_reference_to_a_patient_not_in_the_export_is_quarantined(tmp_path):
    folder = write_export(tmp_path / "export", {
        "Patient.ndjson": [patient()], "Location.ndjson": [location("w1", "Ward 4B")],
        "Encounter.ndjson": [encounter(), encounter("e2", pid="ghost")],
        "Observation.ndjson": [observation("o1", "8867-4", 88, eid=None, pid="ghost")],
    })
    lake, _, quarantine = ingest(folder, tmp_path)
    assert lake.scan("encounters").collect()["encounter_id"].to_list() == ["e1"]
    assert sorted(quarantine.select("table", "rule").rows()) == [("encounters", "unknown_patient"), ("observations", "unknown_patient")]
    assert "ghost" not in " ".join(quarantine["detail"])


def test_an_observation_without_an_encounter_is_placed_in_the_stay_that_holds_it(tmp_path):
    folder = basic_export(tmp_path / "export", [
        observation("o1", "2160-0", 1.0, "mg/dL", eid=None, when="2024-01-11T06:00:00+00:00"),
        observation("o2", "2160-0", 1.2, "mg/dL", eid=None, when="2024-03-01T06:00:00+00:00"),  # an outpatient lab
    ])
    lake, summary, _ = ingest(folder, tmp_path)
    assert lake.scan("observations").collect().select("encounter_id", "variable").rows() == [("e1", "creatinine")]
    assert skipped(summary, "outside_stays") == {"creatinine": 1}


def test_unused_resources_unmapped_codes_and_absent_values_are_counted(tmp_path):
    folder = basic_export(tmp_path / "export", [
        observation("o1", "8867-4", 88),
        observation("o2", "8302-2", 170, "cm"),  # body height: not in the catalogue
        {**observation("o3", "8867-4", None, when="2024-01-10T10:00:00+00:00"), "valueQuantity": None,
         "dataAbsentReason": {"coding": [{"code": "unknown"}]}},
    ])
    write_export(folder, {"Condition.ndjson": [{"resourceType": "Condition", "id": "c1"}] * 3})
    _, summary, quarantine = ingest(folder, tmp_path)
    assert quarantine.height == 0
    assert skipped(summary, "unused_resource") == {"Condition": 3}
    assert skipped(summary, "unmapped_code") == {"loinc.org": 1}
    assert skipped(summary, "data_absent") == {"heart_rate": 1}


def test_an_icu_stay_within_a_hospital_stay_is_an_icu_transfer_or_the_encounter(tmp_path):
    icu = encounter("icu1", start="2024-01-11T02:00:00+00:00", end="2024-01-11T20:00:00+00:00",
                    wards=(("icu", "2024-01-11T02:00:00+00:00"),), partOf={"reference": "Encounter/e1"})
    died = encounter("e1", hospitalization={"dischargeDisposition": {"coding": [{"code": "exp"}]}})
    files = {"Patient.ndjson": [patient()], "Location.ndjson": [location("w1", "Ward 4B"), location("icu", "Medical Intensive Care Unit (MICU)")],
             "Encounter.ndjson": [died, icu],
             "Observation.ndjson": [observation("o1", "8867-4", 120, eid="icu1", when="2024-01-11T03:00:00+00:00")]}
    lake, _, _ = ingest(write_export(tmp_path / "a", files), tmp_path / "a")
    assert sorted(lake.scan("outcomes").collect().select("encounter_id", "event_type").rows()) == [("e1", "death"), ("e1", "icu_transfer")]
    assert lake.scan("observations").collect()["encounter_id"].to_list() == ["e1"]  # the ICU stay counts towards its root
    lake, _, _ = ingest(write_export(tmp_path / "b", files), tmp_path / "b", encounters="icu")
    assert lake.scan("encounters").collect().select("encounter_id", "ward").rows() == [("icu1", "Medical Intensive Care Unit (MICU)")]
    assert lake.scan("observations").collect()["encounter_id"].to_list() == ["icu1"]


def test_a_bundle_with_urn_references_is_read_like_an_export(tmp_path):
    entries = [
        {"fullUrl": "urn:uuid:pat-1", "resource": {k: v for k, v in patient().items() if k != "id"}},
        {"fullUrl": "urn:uuid:enc-1", "resource": {**encounter(wards=()), "id": None, "subject": {"reference": "urn:uuid:pat-1"}}},
        {"fullUrl": "urn:uuid:obs-1", "resource": {**observation("o1", "8867-4", 77), "subject": {"reference": "urn:uuid:pat-1"},
                                                    "encounter": {"reference": "urn:uuid:enc-1"}}},
    ]
    entries[1]["resource"].pop("id")
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    assert [s.format for s in discover([path]).sources] == ["fhir"]
    lake, _, quarantine = ingest(path, tmp_path)
    assert quarantine.height == 0
    assert lake.scan("observations").collect().select("encounter_id", "value").rows() == [("enc-1", 77)]


def test_the_resources_these_tests_build_are_valid_fhir_r4():
    r4 = pytest.importorskip("fhir.resources.R4B", reason="fhir.resources is in the test extra")
    from fhir.resources.R4B.encounter import Encounter
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient

    assert r4 is not None
    Patient.model_validate(patient())
    Encounter.model_validate(encounter())
    Observation.model_validate(observation("o1", "8867-4", 88))


@pytest.mark.realdata
def test_a_sample_of_the_mimic_fhir_export_is_valid_fhir_r4():
    pytest.importorskip("fhir.resources.R4B", reason="fhir.resources is in the test extra")
    from fhir.resources.R4B.encounter import Encounter
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient

    files = {"fhir/MimicPatient.ndjson.gz": Patient, "fhir/MimicEncounterICU.ndjson.gz": Encounter,
             "fhir/MimicObservationVitalSignsED.ndjson.gz": Observation,
             "reconstructed/MimicObservationChartevents.vitals.ndjson.gz": Observation}
    if not (DEMO / "fhir").exists():
        pytest.skip(f"MIMIC-IV demo on FHIR not found at {DEMO} (see ../shared/data/README.md)")
    for name, model in files.items():
        with gzip.open(DEMO / name, "rt") as handle:
            for _, line in zip(range(20), handle, strict=False):
                model.model_validate_json(line)


# ---------------------------------------------------------------- properties

LINE = st.sampled_from([
    ("good", lambda i: observation(f"o{i}", "8867-4", 80)),
    ("good", lambda i: observation(f"o{i}", "220277", 97, "%", system=MIMIC_CHART)),
    ("bad", lambda i: observation(f"o{i}", "8867-4", 80, "furlongs")),  # unknown unit: the contract's quarantine
    ("bad", lambda i: observation(f"o{i}", "8867-4", 900)),  # out of range
    ("malformed", lambda i: '{"resourceType": "Observation", "id": '),
    ("malformed", lambda i: observation(f"o{i}", "8867-4", [80])),
    ("unmapped", lambda i: observation(f"o{i}", "29463-7", 70, "kg")),
])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, min_size=1, max_size=10))
def test_every_line_is_accepted_quarantined_with_a_reason_or_counted(tmp_path_factory, draws):
    folder = tmp_path_factory.mktemp("fhir")
    lines = []
    for i, (_, make) in enumerate(draws):
        line = make(i)
        if isinstance(line, dict):
            line["effectiveDateTime"] = f"2024-01-10T09:{i:02d}:00+00:00"  # distinct times: no duplicates
        lines.append(line)
    lake, summary, quarantine = ingest(basic_export(folder / "export", lines), folder)
    expected = {kind: sum(1 for k, _ in draws if k == kind) for kind in ("good", "bad", "malformed", "unmapped")}
    assert lake.scan("observations").collect().height == expected["good"]
    assert (quarantine["rule"] == "malformed_resource").sum() == expected["malformed"]
    assert quarantine.filter(pl.col("rule") != "malformed_resource").height == expected["bad"]
    assert sum(skipped(summary, "unmapped_code").values()) == expected["unmapped"]
    malformed_lines = sorted(quarantine.filter(pl.col("rule") == "malformed_resource")["source_line"])
    assert malformed_lines == [i + 1 for i, (k, _) in enumerate(draws) if k == "malformed"]


# ---------------------------------------------------------------- the MIMIC-IV demo


@pytest.mark.realdata
@pytest.mark.slow
def test_the_mimic_iv_demo_on_fhir_ingests_its_vitals_and_labs(tmp_path):
    if not DEMO.exists():
        pytest.skip(f"MIMIC-IV demo on FHIR not found at {DEMO} (see ../shared/data/README.md)")
    lake, summary, quarantine = ingest(DEMO, tmp_path, source_timezone="America/New_York")
    assert summary.accepted["observations"] >= 50_000
    assert summary.accepted["patients"] == 100
    assert skipped(summary, "unused_resource")["MedicationAdministration"] == 56_535
    assert set(quarantine["rule"]) <= {"duplicate", "outside_encounter", "out_of_range", "unparseable_value", "missing_required"}
    wards = set(lake.scan("encounters").collect()["ward"])
    assert "Medical Intensive Care Unit (MICU)" in wards or "Medicine" in wards
