"""MEDS out: the lake exported as a valid MEDS dataset with label files, and a round trip
(export, then ingest the export into a fresh lake) that keeps every accepted value."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import meds
import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from riskcast.cli import cli
from riskcast.errors import LakeError
from riskcast.lake import Lake
from riskcast.pipeline.export import export_meds, subject_ids
from riskcast.pipeline.ingest import ingest_paths
from riskcast.synth import generate_cohort, write_cohort

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    folder = tmp_path_factory.mktemp("cohort")
    write_cohort(generate_cohort(40, seed=3, malformed_rate=0.0), folder / "feed")
    lake = Lake(folder / "lake")
    ingest_paths([folder / "feed"], lake=lake, now=NOW)
    return lake


@pytest.fixture(scope="module")
def exported(lake, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "meds"
    export_meds(lake, out, now=NOW, outcome="deterioration", horizon_hours=12)
    return out


def table(lake: Lake, name: str) -> pl.DataFrame:
    return lake.scan(name).drop("batch_id").collect()


def test_a_round_trip_through_meds_keeps_every_accepted_value(lake, exported, tmp_path):
    again = Lake(tmp_path / "again")
    summary, quarantine = ingest_paths([exported], lake=again, now=NOW)
    assert summary.sources[0]["format"] == "meds" and quarantine.height == 0
    patients = ["patient_id", "birth_year", "age", "sex", "race_ethnicity", "site"]
    assert table(again, "patients").select(patients).sort("patient_id").equals(table(lake, "patients").select(patients).sort("patient_id"))
    stays = ["encounter_id", "patient_id", "admit_time", "discharge_time", "ward", "site"]
    assert table(again, "encounters").select(stays).sort("encounter_id").equals(table(lake, "encounters").select(stays).sort("encounter_id"))
    events = ["encounter_id", "event_time", "event_type"]
    assert table(again, "outcomes").select(events).sort(events).equals(table(lake, "outcomes").select(events).sort(events))
    key = ["encounter_id", "charttime", "variable"]
    before = table(lake, "observations").sort(key)
    after = table(again, "observations").sort(key)
    assert after.select(key).equals(before.select(key)) and (after["unit"] == before["unit"]).all()
    # MEDS stores float32: values come back to its precision
    assert ((after["value"] - before["value"]).abs() <= 1e-6 * before["value"].abs() + 1e-6).all()


def test_the_export_is_valid_meds(exported):
    shards = sorted((exported / "data").rglob("*.parquet"))
    assert {p.parent.name for p in shards} <= {"train", "tuning", "held_out"}
    for shard in shards:
        data = pq.read_table(shard)
        meds.DataSchema.validate(data)
        frame = pl.from_arrow(data)
        # each subject contiguous and in time order, static events first
        assert frame.select("subject_id", "time").equals(frame.select("subject_id", "time").sort("subject_id", "time", nulls_last=False))
    meds.CodeMetadataSchema.validate(pq.read_table(exported / "metadata" / "codes.parquet"))
    meds.SubjectSplitSchema.validate(pq.read_table(exported / "metadata" / "subject_splits.parquet"))
    labels = pq.read_table(exported / "labels" / "deterioration_12h" / "0.parquet")
    meds.LabelSchema.validate(labels)
    assert pl.from_arrow(labels)["boolean_value"].sum() > 0
    metadata = json.loads((exported / "metadata" / "dataset.json").read_text())
    assert metadata["meds_version"] == meds.__version__ and "patient_id" in metadata["raw_source_id_columns"]
    codes = pl.read_parquet(exported / "metadata" / "codes.parquet")
    heart_rate = codes.filter(pl.col("code") == "VITAL//heart_rate").row(0, named=True)
    assert heart_rate["parent_codes"] == ["LOINC/8867-4"]


def test_patient_ids_that_are_not_numbers_get_stable_64_bit_subject_ids():
    first = subject_ids(pl.Series(["p-b", "p-a", "p-c"]))
    assert first.equals(subject_ids(pl.Series(["p-c", "p-a", "p-b"])))
    assert first["subject_id"].min() >= 0 and first["subject_id"].n_unique() == 3
    assert subject_ids(pl.Series(["10", "7"]))["subject_id"].to_list() == [10, 7]


def test_export_refuses_a_folder_that_is_not_empty(lake, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(LakeError, match="exists and is not empty"):
        export_meds(lake, tmp_path / "out", now=NOW)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_export_from_the_command_line(tmp_path):
    home = tmp_path / "home"
    write_cohort(generate_cohort(8, seed=1, malformed_rate=0.0), tmp_path / "feed")
    runner = CliRunner()
    assert runner.invoke(cli, ["--home", str(home), "ingest", str(tmp_path / "feed")], obj={}).exit_code == 0
    result = runner.invoke(cli, ["--home", str(home), "--json", "export", "--format", "meds", "--out", str(tmp_path / "meds")], obj={})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["format"] == "meds" and sum(data["subjects"].values()) > 0
    assert (tmp_path / "meds" / "metadata" / "dataset.json").exists()
