"""The same patients through two formats: the MIMIC-IV demo's heart rates read from MEDS and
from FHIR are the same values at the same instants (MEDS times are Boston local time, FHIR
times carry their offset)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
DEMO = Path(__file__).resolve().parents[1] / "../shared/data/mimic-iv-demo"
FEW = 5


def heart_rates(lake: Lake) -> pl.DataFrame:
    """patient_id, charttime, value of every accepted heart rate."""
    encounters = lake.scan("encounters").select("encounter_id", "patient_id")
    return (
        lake.scan("observations").filter(pl.col("variable") == "heart_rate")
        .join(encounters, on="encounter_id").select("patient_id", "charttime", "value").collect()
    )


@pytest.mark.realdata
@pytest.mark.slow
def test_a_patients_heart_rate_is_the_same_through_meds_and_fhir(tmp_path):
    if not (DEMO / "meds").exists() or not (DEMO / "fhir").exists():
        pytest.skip(f"the MIMIC-IV demo in MEDS and FHIR is not at {DEMO} (see ../shared/data/README.md)")
    meds_lake, fhir_lake = Lake(tmp_path / "meds"), Lake(tmp_path / "fhir")
    ingest_paths([DEMO / "meds"], lake=meds_lake, now=NOW, source_timezone="America/New_York")
    ingest_paths([DEMO / "fhir"], lake=fhir_lake, now=NOW, source_timezone="America/New_York")
    # FHIR names a patient by its resource id; its identifier is MIMIC's subject_id, MEDS's patient_id.
    with gzip.open(DEMO / "fhir/fhir/MimicPatient.ndjson.gz", "rt") as handle:
        subject_of = {r["id"]: r["identifier"][0]["value"] for r in map(json.loads, handle)}
    via_meds = heart_rates(meds_lake)
    via_fhir = heart_rates(fhir_lake).with_columns(pl.col("patient_id").replace_strict(subject_of))
    patients = sorted(set(via_meds["patient_id"]) & set(via_fhir["patient_id"]))[:FEW]
    assert len(patients) == FEW
    for patient in patients:
        a = via_meds.filter(pl.col("patient_id") == patient).sort("charttime")
        b = via_fhir.filter(pl.col("patient_id") == patient).sort("charttime")
        joined = a.join(b, on="charttime", how="inner", suffix="_fhir")
        # ICU charting is in both; FHIR also has emergency-department vitals, MEDS does not
        assert joined.height >= 0.95 * a.height > 0
        assert (joined["value"] == joined["value_fhir"]).all()
