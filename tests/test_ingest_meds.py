"""MEDS in: events become patients, stays, observations and outcomes; codes riskcast does not
use are counted, not quarantined; measurements that map but fail are quarantined with the
shard and row; the demo dataset ingests whole."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskcast.catalog import load_catalog
from riskcast.ingest import discover
from riskcast.ingest.meds import read_meds
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
DEMO = Path(__file__).resolve().parents[1] / "../shared/data/mimic-iv-demo/meds"

EVENT_SCHEMA = {
    "subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String, "numeric_value": pl.Float32,
    "text_value": pl.String, "hadm_id": pl.Int64, "icustay_id": pl.Int64,
}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def stay_events(subject: int = 1, hadm: int = 100) -> list[dict]:
    """A hospital stay of two days on 'Medicine', with an ICU stay inside it."""
    return [
        {"subject_id": subject, "time": None, "code": "GENDER//F"},
        {"subject_id": subject, "time": t("1960-01-01"), "code": "MEDS_BIRTH"},
        {"subject_id": subject, "time": t("2020-03-01 08:00"), "code": "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", "hadm_id": hadm},
        {"subject_id": subject, "time": t("2020-03-01 08:00"), "code": "TRANSFER_TO//admit//Medicine", "hadm_id": hadm},
        {"subject_id": subject, "time": t("2020-03-02 10:00"), "code": "ICU_ADMISSION//Medical Intensive Care Unit (MICU)", "hadm_id": hadm, "icustay_id": 900},
        {"subject_id": subject, "time": t("2020-03-02 20:00"), "code": "ICU_DISCHARGE//Medical Intensive Care Unit (MICU)", "hadm_id": hadm, "icustay_id": 900},
        {"subject_id": subject, "time": t("2020-03-03 08:00"), "code": "HOSPITAL_DISCHARGE//HOME", "hadm_id": hadm},
    ]


def write_meds(root: Path, events: list[dict], *, parents: dict[str, list[str]] | None = None, name: str = "MIMIC-IV") -> Path:
    """A MEDS root with one shard, codes.parquet and dataset.json."""
    frame = pl.DataFrame([{**{k: None for k in EVENT_SCHEMA}, **e} for e in events], schema=EVENT_SCHEMA)
    (root / "data" / "train").mkdir(parents=True)
    (root / "metadata").mkdir()
    frame.write_parquet(root / "data" / "train" / "0.parquet")
    codes = pl.DataFrame(
        {"code": list((parents or {}).keys()), "description": [None] * len(parents or {}), "parent_codes": list((parents or {}).values())},
        schema={"code": pl.String, "description": pl.String, "parent_codes": pl.List(pl.String)},
    )
    codes.write_parquet(root / "metadata" / "codes.parquet")
    (root / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": name, "meds_version": "0.3.3"}))
    return root


def ingest(root: Path, tmp_path: Path, **options):
    lake = Lake(tmp_path / "lake")
    summary, quarantine = ingest_paths([root], lake=lake, now=NOW, **options)
    return lake, summary, quarantine


def skipped(summary, rule: str) -> dict[str, int]:
    return {row["family"]: row["rows"] for row in summary.skipped if row["rule"] == rule}


def test_a_meds_root_is_recognised_by_its_layout(tmp_path):
    root = write_meds(tmp_path / "meds", stay_events())
    assert [s.format for s in discover([root]).sources] == ["meds"]


def test_vitals_labs_and_stays_become_canonical_rows_in_canonical_units(tmp_path):
    events = [*stay_events(), {"subject_id": 1, "time": t("2020-03-01 09:00"), "code": "LAB//220045//bpm", "numeric_value": 88.0, "hadm_id": 100},
              {"subject_id": 1, "time": t("2020-03-01 09:00"), "code": "LAB//223761//°F", "numeric_value": 98.4, "hadm_id": 100},
              {"subject_id": 1, "time": t("2020-03-01 10:00"), "code": "LAB//50912//mg/dL", "numeric_value": 1.0, "hadm_id": 100}]
    lake, summary, quarantine = ingest(write_meds(tmp_path / "meds", events), tmp_path)
    assert quarantine.height == 0
    patients = lake.scan("patients").collect()
    assert patients.select("patient_id", "sex", "birth_year", "site").rows() == [("1", "female", 1960, "MIMIC-IV")]
    encounter = lake.scan("encounters").collect().row(0, named=True)
    assert (encounter["encounter_id"], encounter["ward"]) == ("100", "Medicine")
    assert encounter["admit_time"] == datetime(2020, 3, 1, 8, tzinfo=timezone.utc)
    values = dict(lake.scan("observations").collect().select("variable", "value").rows())
    assert values["heart_rate"] == 88.0
    # float32 98.4 is read through its decimal form: exactly the catalogue's °F conversion of 98.4
    fahrenheit = load_catalog()["temperature"].conversions["[degF]"]
    assert values["temperature"] == 98.4 * fahrenheit.scale + fahrenheit.offset
    assert values["creatinine"] == pytest.approx(88.42)


def test_codes_riskcast_does_not_use_are_counted_by_family_not_quarantined(tmp_path):
    events = [*stay_events(), *[{"subject_id": 1, "time": t("2020-03-01 12:00"), "code": f"DIAGNOSIS//ICD//10//I{i}", "hadm_id": 100} for i in range(3)],
              {"subject_id": 1, "time": t("2020-03-01 12:00"), "code": "MEDICATION//Aspirin", "hadm_id": 100}]
    _, summary, quarantine = ingest(write_meds(tmp_path / "meds", events), tmp_path)
    assert quarantine.height == 0
    assert skipped(summary, "unmapped_code")["DIAGNOSIS"] == 3
    assert skipped(summary, "unmapped_code")["MEDICATION"] == 1
    assert summary.sources[0]["skipped"]  # the counts are in the batch manifest too


def test_a_mapped_measurement_with_an_unknown_unit_is_quarantined_with_shard_and_row(tmp_path):
    events = [*stay_events(), {"subject_id": 1, "time": t("2020-03-01 09:00"), "code": "LAB//50912//furlongs", "numeric_value": 1.0, "hadm_id": 100}]
    _, _, quarantine = ingest(write_meds(tmp_path / "meds", events), tmp_path)
    row = quarantine.row(0, named=True)
    assert (row["rule"], row["source_file"], row["source_line"]) == ("unknown_unit", "meds/data/train/0.parquet", 8)
    assert "furlongs" not in row["detail"] and "1.0" not in row["detail"]  # unknown text is never echoed


def test_a_code_unknown_to_the_mapping_files_maps_through_its_loinc_parent(tmp_path):
    events = [*stay_events(), {"subject_id": 1, "time": t("2020-03-01 09:00"), "code": "LAB//777777//mmol/L", "numeric_value": 2.5, "hadm_id": 100}]
    root = write_meds(tmp_path / "meds", events, parents={"LAB//777777//mmol/L": ["LOINC/32693-4"]}, name="another")
    lake, _, _ = ingest(root, tmp_path)
    assert lake.scan("observations").collect().select("variable", "value").rows() == [("lactate", 2.5)]


def test_gcs_charted_in_parts_is_added_up_and_an_incomplete_set_is_counted(tmp_path):
    parts = [("220739", 4.0), ("223900", 5.0), ("223901", 6.0)]
    events = [*stay_events(),
              *[{"subject_id": 1, "time": t("2020-03-01 09:00"), "code": f"LAB//{item}//UNK", "numeric_value": v, "hadm_id": 100} for item, v in parts],
              *[{"subject_id": 1, "time": t("2020-03-01 13:00"), "code": f"LAB//{item}//UNK", "numeric_value": v, "hadm_id": 100} for item, v in parts[:2]]]
    lake, summary, quarantine = ingest(write_meds(tmp_path / "meds", events), tmp_path)
    gcs = lake.scan("observations").collect().select("variable", "value").rows()
    assert gcs == [("gcs", 15.0)] and quarantine.height == 0
    assert skipped(summary, "incomplete_sum") == {"gcs": 1}


def test_deaths_and_icu_admissions_become_outcomes_one_death_per_stay(tmp_path):
    events = [*stay_events()[:-1],
              {"subject_id": 1, "time": t("2020-03-03 06:00"), "code": "MEDS_DEATH"},
              {"subject_id": 1, "time": t("2020-03-03 08:00"), "code": "HOSPITAL_DISCHARGE//DIED", "hadm_id": 100}]
    lake, summary, _ = ingest(write_meds(tmp_path / "meds", events), tmp_path)
    outcomes = lake.scan("outcomes").collect().sort("event_type").select("event_type", "event_time").rows()
    assert outcomes == [("death", datetime(2020, 3, 3, 6, tzinfo=timezone.utc)),
                        ("icu_transfer", datetime(2020, 3, 2, 10, tzinfo=timezone.utc))]
    assert skipped(summary, "same_death_twice") == {"death": 1}


def test_a_death_after_discharge_is_counted_not_attached(tmp_path):
    events = [*stay_events(), {"subject_id": 1, "time": t("2020-06-01"), "code": "MEDS_DEATH"}]
    lake, summary, _ = ingest(write_meds(tmp_path / "meds", events), tmp_path)
    assert "death" not in lake.scan("outcomes").collect()["event_type"].to_list()
    assert skipped(summary, "death_outside_stays") == {"death": 1}


def test_icu_stays_can_be_the_encounters(tmp_path):
    events = [*stay_events(),
              {"subject_id": 1, "time": t("2020-03-02 12:00"), "code": "LAB//220045//bpm", "numeric_value": 120.0, "hadm_id": 100, "icustay_id": 900},
              {"subject_id": 1, "time": t("2020-03-02 13:00"), "code": "LAB//50912//mg/dL", "numeric_value": 1.0, "hadm_id": 100},
              {"subject_id": 1, "time": t("2020-03-01 09:00"), "code": "LAB//220045//bpm", "numeric_value": 80.0, "hadm_id": 100}]
    lake, summary, _ = ingest(write_meds(tmp_path / "meds", events), tmp_path, encounters="icu")
    encounter = lake.scan("encounters").collect().row(0, named=True)
    assert (encounter["encounter_id"], encounter["ward"]) == ("900", "Medical Intensive Care Unit (MICU)")
    # The lab names only the hospital stay: it is placed in the ICU stay that holds its time.
    assert sorted(lake.scan("observations").collect()["variable"].to_list()) == ["creatinine", "heart_rate"]
    assert skipped(summary, "outside_stays") == {"heart_rate": 1}  # before the ICU stay (and its window)


def test_a_stay_named_by_a_measurement_but_never_admitted_is_quarantined(tmp_path):
    events = [*stay_events(), {"subject_id": 1, "time": t("2020-03-01 09:00"), "code": "LAB//220045//bpm", "numeric_value": 88.0, "hadm_id": 555}]
    _, _, quarantine = ingest(write_meds(tmp_path / "meds", events), tmp_path)
    assert quarantine["rule"].to_list() == ["unknown_encounter"]


def test_a_shard_without_meds_columns_is_an_ingest_error_naming_it(tmp_path):
    root = write_meds(tmp_path / "meds", stay_events())
    pl.DataFrame({"subject_id": [1], "when": [1]}).write_parquet(root / "data" / "train" / "1.parquet")
    with pytest.raises(Exception, match=r"meds/data/train/1.parquet: not a MEDS shard: lacks column\(s\) time, code"):
        read_meds(root)


# ---------------------------------------------------------------- properties

MEASUREMENT = st.sampled_from([
    ("LAB//220045//bpm", 80.0, "good"), ("LAB//220045//bpm", 900.0, "bad"),   # heart rate, then out of range
    ("LAB//220045//parsecs", 80.0, "bad"), ("LAB//50912//mg/dL", None, "bad"),  # unknown unit; no value
    ("LAB//50813//mmol/L", 2.0, "good"), ("DIAGNOSIS//ICD//10//A01", None, "unmapped"), ("LAB//1//x", 1.0, "unmapped"),
])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MEASUREMENT, min_size=1, max_size=12))
def test_every_event_is_accepted_quarantined_with_a_reason_or_counted(tmp_path_factory, draws):
    folder = tmp_path_factory.mktemp("meds")
    events = [*stay_events()]
    for minute, (code, value, _) in enumerate(draws):  # distinct times: no duplicates by construction
        events.append({"subject_id": 1, "time": datetime(2020, 3, 1, 9, minute), "code": code, "numeric_value": value, "hadm_id": 100})
    lake, summary, quarantine = ingest(write_meds(folder / "meds", events), folder)
    expected = {kind: sum(1 for *_, k in draws if k == kind) for kind in ("good", "bad", "unmapped")}
    assert lake.scan("observations").collect().height == expected["good"]
    observations_quarantined = quarantine.filter(pl.col("table") == "observations")
    assert observations_quarantined.height == expected["bad"]
    assert observations_quarantined["rule"].is_not_null().all()
    assert all(line > len(stay_events()) for line in observations_quarantined["source_line"])  # each names its own row
    counted = sum(v for k, v in skipped(summary, "unmapped_code").items() if k in ("DIAGNOSIS", "LAB"))
    assert counted == expected["unmapped"]


# ---------------------------------------------------------------- the MIMIC-IV demo


@pytest.mark.realdata
@pytest.mark.slow
def test_the_mimic_iv_demo_ingests_its_vitals_and_labs(tmp_path):
    if not DEMO.exists():
        pytest.skip(f"MIMIC-IV demo in MEDS not found at {DEMO} (see ../shared/data/README.md)")
    lake, summary, quarantine = ingest(DEMO, tmp_path, source_timezone="America/New_York")
    assert summary.accepted["observations"] >= 100_000
    assert summary.accepted["patients"] == 100
    assert skipped(summary, "unmapped_code")["MEDICATION"] == 63_696
    rows_in = summary.accepted["observations"] + sum(summary.quarantined.get("observations", {}).values())
    assert rows_in == summary.rows_read["observations"]
    # unparseable_time: local times that fall in a spring-forward gap of daylight saving
    assert set(quarantine["rule"]) <= {"duplicate", "outside_encounter", "out_of_range", "missing_required", "unparseable_value",
                                      "unparseable_time", "nonexistent_time"}
    assert {"death", "icu_transfer"} <= set(lake.scan("outcomes").collect()["event_type"])


def test_date_shifted_local_times_keep_daylight_saving_far_in_the_future(tmp_path):
    # MIMIC-IV shifts dates into 2110-2202; a July time in Boston is still four hours behind UTC.
    events = [*stay_events(), {"subject_id": 1, "time": t("2020-03-01 09:00"), "code": "LAB//220045//bpm", "numeric_value": 88.0, "hadm_id": 100}]
    for event in events:
        if event["time"] is not None:
            event["time"] = event["time"].replace(year=2180, month=7)
    lake, _, _ = ingest(write_meds(tmp_path / "meds", events), tmp_path, source_timezone="America/New_York")
    charttime = lake.scan("observations").collect()["charttime"][0]
    assert charttime == datetime(2180, 7, 1, 13, 0, tzinfo=timezone.utc)
