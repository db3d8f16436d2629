"""The append-only Parquet lake: a batch exists once its manifest is written, the latest
batch wins for patients and encounters, and leftovers of a crashed ingest are invisible."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timezone

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskcast.contracts import QUARANTINE_SCHEMA, UTC_DATETIME
from riskcast.errors import LakeError
from riskcast.lake import LAKE_SCHEMAS, Lake, new_batch_id

NOW = datetime(2024, 2, 1, 12, 0, tzinfo=timezone.utc)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def encounter(encounter_id: str, discharge: datetime | None, ward: str = "ward-1") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "encounter_id": [encounter_id],
            "patient_id": ["P1"],
            "admit_time": [utc(2024, 1, 10, 8)],
            "discharge_time": [discharge],
            "ward": [ward],
            "site": ["site-a"],
        },
        schema=LAKE_SCHEMAS["encounters"],
    )


def observations(*rows: tuple[str, datetime, str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [(*row, "unit", "monitor") for row in rows], schema=LAKE_SCHEMAS["observations"], orient="row"
    )


def quarantine_rows(*rules: str) -> pl.DataFrame:
    return pl.DataFrame(
        [("observations", "observations.csv", i + 2, rule, "detail", "{}") for i, rule in enumerate(rules)],
        schema=QUARANTINE_SCHEMA,
        orient="row",
    )


def commit(lake: Lake, batch_id: str, tables: dict[str, pl.DataFrame], *, sha256: str = "abc", quarantine=None):
    return lake.commit_batch(
        batch_id,
        tables,
        quarantine if quarantine is not None else pl.DataFrame(schema=QUARANTINE_SCHEMA),
        sources=[{"path": "x.csv", "sha256": sha256}],
        created_at=NOW,
    )


def test_committed_rows_scan_back_with_their_batch_id(tmp_path):
    lake = Lake(tmp_path)
    obs = observations(("E1", utc(2024, 1, 10, 9), "heart_rate", 71.0), ("E1", utc(2024, 1, 10, 10), "sbp", 120.0))
    manifest = commit(lake, "20240201T120000-aaaaaaaa", {"observations": obs, "encounters": encounter("E1", None)})
    scanned = lake.scan("observations").collect()
    assert_frame_equal(scanned.drop("batch_id"), obs)
    assert scanned["batch_id"].unique().to_list() == ["20240201T120000-aaaaaaaa"]
    assert manifest.accepted == {"patients": 0, "encounters": 1, "observations": 2, "outcomes": 0}
    assert lake.scan("encounters").collect()["admit_time"].dtype == UTC_DATETIME


def test_extra_columns_such_as_provenance_are_not_stored(tmp_path):
    lake = Lake(tmp_path)
    obs = observations(("E1", utc(2024, 1, 10, 9), "heart_rate", 71.0)).with_columns(
        pl.lit("observations.csv").alias("source_file"), pl.lit(2).alias("source_line")
    )
    commit(lake, "20240201T120000-aaaaaaaa", {"observations": obs})
    assert lake.scan("observations").collect_schema().names() == [*LAKE_SCHEMAS["observations"], "batch_id"]


def test_an_empty_lake_scans_as_empty_typed_tables(tmp_path):
    lake = Lake(tmp_path / "not-yet")
    assert lake.is_empty()
    for table, schema in LAKE_SCHEMAS.items():
        frame = lake.scan(table).collect()
        assert frame.height == 0
        assert frame.schema == pl.Schema({**schema, "batch_id": pl.String()})
    assert lake.scan_quarantine().collect().height == 0


def test_scanning_an_unknown_table_names_the_tables(tmp_path):
    with pytest.raises(LakeError, match="unknown table 'vitals'; the lake holds patients, encounters, observations, outcomes"):
        Lake(tmp_path).scan("vitals")


def test_observations_accumulate_across_batches(tmp_path):
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-aaaaaaaa", {"observations": observations(("E1", utc(2024, 1, 10, 9), "heart_rate", 71.0))})
    commit(lake, "20240201T130000-bbbbbbbb", {"observations": observations(("E1", utc(2024, 1, 10, 10), "heart_rate", 72.0))}, sha256="def")
    assert sorted(lake.scan("observations").collect()["value"].to_list()) == [71.0, 72.0]


def test_a_later_batch_updates_an_encounter_with_its_discharge(tmp_path):
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-aaaaaaaa", {"encounters": encounter("E1", None)})
    commit(lake, "20240202T120000-bbbbbbbb", {"encounters": encounter("E1", utc(2024, 1, 12, 8), ward="ward-2")}, sha256="d")
    scanned = lake.scan("encounters").collect()
    assert scanned.select("encounter_id", "discharge_time", "ward").rows() == [("E1", utc(2024, 1, 12, 8), "ward-2")]


def test_the_batch_committed_last_wins_even_when_its_id_sorts_first(tmp_path):
    # Two ingests in the same second: their ids differ only in the content digest.
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-ffffffff", {"encounters": encounter("E1", None)})
    commit(lake, "20240201T120000-00000000", {"encounters": encounter("E1", utc(2024, 1, 12, 8))}, sha256="d")
    assert lake.scan("encounters").collect()["discharge_time"].to_list() == [utc(2024, 1, 12, 8)]
    assert lake.committed_batch_ids() == ["20240201T120000-ffffffff", "20240201T120000-00000000"]


def test_outcomes_repeated_in_a_later_batch_are_counted_once(tmp_path):
    lake = Lake(tmp_path)
    event = pl.DataFrame(
        {"encounter_id": ["E1"], "event_time": [utc(2024, 1, 11)], "event_type": ["death"]},
        schema=LAKE_SCHEMAS["outcomes"],
    )
    commit(lake, "20240201T120000-aaaaaaaa", {"outcomes": event})
    commit(lake, "20240202T120000-bbbbbbbb", {"outcomes": event}, sha256="d")
    assert lake.scan("outcomes").collect().height == 1


def test_a_batch_without_its_manifest_is_invisible(tmp_path):
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-aaaaaaaa", {"observations": observations(("E1", utc(2024, 1, 10, 9), "heart_rate", 71.0))})
    # A crash after the data file was renamed into place but before the manifest was written:
    crashed = observations(("E1", utc(2024, 1, 10, 10), "heart_rate", 99.0)).with_columns(
        pl.lit("20240201T130000-bbbbbbbb").alias("batch_id")
    )
    crashed.write_parquet(tmp_path / "observations" / "20240201T130000-bbbbbbbb.parquet")
    (tmp_path / "quarantine").mkdir()
    quarantine_rows("out_of_range").with_columns(pl.lit("20240201T130000-bbbbbbbb").alias("batch_id")).write_parquet(
        tmp_path / "quarantine" / "20240201T130000-bbbbbbbb.parquet"
    )
    assert lake.scan("observations").collect()["value"].to_list() == [71.0]
    assert lake.scan_quarantine().collect().height == 0
    assert lake.committed_batch_ids() == ["20240201T120000-aaaaaaaa"]


def test_the_next_commit_removes_what_a_crashed_ingest_left(tmp_path):
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-aaaaaaaa", {"observations": observations(("E1", utc(2024, 1, 10, 9), "heart_rate", 71.0))})
    orphan = tmp_path / "observations" / "20240201T130000-bbbbbbbb.parquet"
    observations(("E1", utc(2024, 1, 10, 10), "heart_rate", 99.0)).write_parquet(orphan)
    half_written = tmp_path / "observations" / ".tmp-20240201T130000-bbbbbbbb.parquet"
    half_written.write_bytes(b"PAR1 truncated")
    commit(lake, "20240201T140000-cccccccc", {"observations": observations(("E1", utc(2024, 1, 10, 11), "heart_rate", 73.0))}, sha256="d")
    assert not orphan.exists()
    assert not half_written.exists()
    assert (tmp_path / "observations" / "20240201T120000-aaaaaaaa.parquet").exists()
    assert sorted(lake.scan("observations").collect()["value"].to_list()) == [71.0, 73.0]


def test_committing_a_batch_id_twice_is_refused(tmp_path):
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-aaaaaaaa", {"encounters": encounter("E1", None)})
    with pytest.raises(LakeError, match="batch 20240201T120000-aaaaaaaa is already committed"):
        commit(lake, "20240201T120000-aaaaaaaa", {"encounters": encounter("E1", None)})


def test_seen_hashes_map_each_source_to_its_batch(tmp_path):
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-aaaaaaaa", {"encounters": encounter("E1", None)}, sha256="hash-1")
    commit(lake, "20240201T130000-bbbbbbbb", {"encounters": encounter("E2", None)}, sha256="hash-2")
    assert lake.seen_hashes() == {"hash-1": "20240201T120000-aaaaaaaa", "hash-2": "20240201T130000-bbbbbbbb"}


def test_quarantine_is_stored_and_counted_by_table_and_rule(tmp_path):
    lake = Lake(tmp_path)
    manifest = commit(
        lake,
        "20240201T120000-aaaaaaaa",
        {},
        quarantine=quarantine_rows("out_of_range", "duplicate", "out_of_range"),
    )
    assert manifest.quarantined == {"observations": {"duplicate": 1, "out_of_range": 2}}
    stored = lake.scan_quarantine().collect()
    assert stored["source_line"].to_list() == [2, 3, 4]
    assert set(stored["batch_id"]) == {"20240201T120000-aaaaaaaa"}
    on_disk = json.loads((tmp_path / "batches" / "20240201T120000-aaaaaaaa.json").read_text())
    assert on_disk["quarantined"] == {"observations": {"duplicate": 1, "out_of_range": 2}}


def test_an_unreadable_manifest_is_a_lake_error_naming_the_file(tmp_path):
    lake = Lake(tmp_path)
    (tmp_path / "batches").mkdir()
    (tmp_path / "batches" / "20240201T120000-aaaaaaaa.json").write_text("{not json")
    with pytest.raises(LakeError, match=r"20240201T120000-aaaaaaaa\.json: batch manifest is unreadable"):
        lake.manifests()


def test_batch_ids_sort_by_time_and_name_their_content():
    first = new_batch_id(utc(2024, 2, 1, 12), ["b", "a"])
    assert first.startswith("20240201T120000-")
    assert first == new_batch_id(utc(2024, 2, 1, 12), ["a", "b"])
    assert first != new_batch_id(utc(2024, 2, 1, 12), ["a", "c"])
    assert first < new_batch_id(utc(2024, 2, 1, 12, 0, 1), ["a", "b"])


def test_a_manifest_whose_write_never_finished_is_ignored_and_cleaned(tmp_path):
    lake = Lake(tmp_path)
    commit(lake, "20240201T120000-aaaaaaaa", {"encounters": encounter("E1", None)})
    half_written = tmp_path / "batches" / ".tmp-20240201T130000-bbbbbbbb.json"
    half_written.write_text('{"batch_id": "20240201T130000-bbbb')
    assert lake.committed_batch_ids() == ["20240201T120000-aaaaaaaa"]
    assert lake.scan("encounters").collect().height == 1
    commit(lake, "20240201T140000-cccccccc", {"encounters": encounter("E2", None)}, sha256="d")
    assert not half_written.exists()
    assert lake.committed_batch_ids() == ["20240201T120000-aaaaaaaa", "20240201T140000-cccccccc"]


# --- the write lock ---------------------------------------------------------------------------

HOLD_THE_LOCK = """
import sys
from pathlib import Path
from riskcast.lake import Lake
with Lake(Path(sys.argv[1])).writing():
    print("held", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin (or kills us)
"""


def hold_in_another_process(root) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_writer_waits_for_another_process_then_gives_up_naming_it(tmp_path):
    lake = Lake(tmp_path / "lake")
    holder = hold_in_another_process(lake.root)
    try:
        with pytest.raises(LakeError, match=rf"being written by another process \(pid {holder.pid}\)"):
            with lake.writing(timeout=0.5):
                commit(lake, "20250101T000000-aaaaaaaa", {"encounters": encounter("E1", None)})
    finally:
        holder.kill()
        holder.wait()
    assert lake.is_empty()
    with lake.writing(timeout=5):  # a dead holder's lock is free at once
        commit(lake, "20250101T000000-aaaaaaaa", {"encounters": encounter("E1", None)})
    assert lake.committed_batch_ids() == ["20250101T000000-aaaaaaaa"]


def test_the_lock_is_re_entrant_in_one_thread_and_exclusive_between_threads(tmp_path):
    lake = Lake(tmp_path / "lake")
    order: list[str] = []
    with lake.writing():
        with lake.writing():  # ingest holds it while commit_batch takes it again
            commit(lake, "20250101T000000-aaaaaaaa", {"encounters": encounter("E1", None)})

        def other() -> None:
            with lake.writing(timeout=10):
                order.append("other thread")

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for this thread to let go
        order.append("first")
    thread.join(10)
    assert order == ["first", "other thread"]
    assert lake.committed_batch_ids() == ["20250101T000000-aaaaaaaa"]


def test_two_processes_ingesting_at_once_both_commit_everything(tmp_path):
    """Each ingest holds the lock from its duplicate check to its commit: neither removes the
    other's files in progress, and every row lands once."""
    lake = Lake(tmp_path / "lake")
    commit(lake, "20250101T000000-aaaaaaaa", {"encounters": pl.concat([encounter(f"E{i}", None) for i in range(40)])})
    for part in (0, 1):
        rows = [f"E{i},2025-01-01T{h:02d}:00:00Z,heart_rate,{70 + h},/min,test"
                for i in range(part * 20, part * 20 + 20) for h in range(1, 24)]
        (tmp_path / f"observations-{part}.csv").write_text("encounter_id,charttime,variable,value,unit,source\n" + "\n".join(rows) + "\n")
    script = ("import sys; from datetime import datetime, UTC; from pathlib import Path; from riskcast.lake import Lake; "
              "from riskcast.pipeline.ingest import ingest_paths; "
              "ingest_paths([Path(sys.argv[2])], lake=Lake(Path(sys.argv[1])), now=datetime.now(UTC))")
    runs = [subprocess.Popen([sys.executable, "-c", script, str(lake.root), str(tmp_path / f"observations-{part}.csv")])
            for part in (0, 1)]
    assert [run.wait(120) for run in runs] == [0, 0]
    assert len(lake.committed_batch_ids()) == 3
    stored = lake.scan("observations").collect()
    assert stored.height == 40 * 23 and stored.select("encounter_id", "charttime").n_unique() == 40 * 23
