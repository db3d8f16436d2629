"""The feature store: sharded builds equal the in-memory build, refreshes rebuild only what a
new batch touched and equal a full rebuild, memory follows the shard, and a build killed
half-way leaves the old store readable and is finished by the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskcast.errors import FeatureError
from riskcast.feature_store import FeatureStore, refresh_store, shard_map, shard_of
from riskcast.feature_store.refresh import _build_shard_frame, _partition_observations
from riskcast.features.build import META_COLUMNS, build_features
from riskcast.features.families import FAMILIES
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths
from riskcast.synth import generate_cohort, write_cohort
from waiting import wait_until

NOW = datetime(2026, 1, 15, 12, tzinfo=timezone.utc)
ROWS_PER_SHARD = 4_000


def _lake(folder: Path, n_encounters: int = 240, seed: int = 4) -> Lake:
    write_cohort(generate_cohort(n_encounters, seed=seed, malformed_rate=0.0), folder / "cohort")
    lake = Lake(folder / "lake")
    ingest_paths([folder / "cohort"], lake=lake, now=NOW)
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return _lake(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def built(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureStore, object]:
    store = FeatureStore(tmp_path_factory.mktemp("features") / "features")
    summary = refresh_store(lake, store, rows_per_shard=ROWS_PER_SHARD)
    return store, summary


def in_memory(lake: Lake) -> pl.DataFrame:
    return build_features(lake.scan("observations"), lake.scan("encounters"), lake.scan("patients"), families=FAMILIES)


def stored(store: FeatureStore) -> pl.DataFrame:
    return pl.concat(list(store.open().iter_shards())).sort("encounter_id", "time")


# ----------------------------------------------------------------------------- shards


def test_the_shard_of_an_encounter_is_stable_and_spread():
    assert shard_of("E000123", 16) == shard_of("E000123", 16)
    counts = np.bincount(shard_map([f"E{i:06d}" for i in range(4000)], 16)["shard"].to_numpy(), minlength=16)
    assert counts.min() > 150 and counts.max() < 350


def test_a_store_has_many_shards_each_holding_whole_stays(built):
    store, summary = built
    generation = store.open()
    assert summary.n_shards == generation.n_shards >= 4
    seen: dict[str, int] = {}
    for shard in generation.shard_ids():
        for encounter_id in generation.read_shard(shard, ["encounter_id"])["encounter_id"].unique():
            assert encounter_id not in seen, "a stay is split across shards"
            seen[encounter_id] = shard
    assert all(shard_of(e, generation.n_shards) == k for e, k in seen.items())


def test_sharded_build_equals_the_in_memory_build_to_1e_9(lake: Lake, tmp_path: Path):
    """Every shard built the store's way (its own observations, the whole lake's data end),
    before the float32 cast, equals the in-memory build of the whole cohort."""
    snapshot = tuple(lake.committed_batch_ids())
    encounters = lake.scan("encounters").drop("batch_id").collect()
    patients = lake.scan("patients").drop("batch_id").collect()
    data_end = lake.scan("observations").select(pl.col("charttime").max()).collect().item()
    shards = shard_map(encounters["encounter_id"], 7)
    _partition_observations(lake, snapshot, shards, tmp_path / "partition")
    parts = [
        _build_shard_frame(k, tmp_path / "partition", encounters, patients, shards, families=FAMILIES, data_end=data_end)
        for k in range(7)
    ]
    sharded = pl.concat([p.drop("__observations") for p in parts]).sort("encounter_id", "time")
    assert_frame_equal(sharded, in_memory(lake), check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_the_store_holds_the_in_memory_values_as_float32(built, lake: Lake):
    store, _ = built
    expected = in_memory(lake)
    features = store.open().features
    got = stored(store)
    assert got.columns == META_COLUMNS + features
    assert all(got.schema[c] == pl.Float32 for c in features)
    # float32 of the same float64 value, at most one float32 step apart (polars' rolling sums
    # may differ in the last float64 bits from run to run)
    assert_frame_equal(got, expected.with_columns(pl.col(features).cast(pl.Float32)),
                       check_exact=False, rel_tol=2.5e-7, abs_tol=1e-30)


def test_no_step_holds_more_than_one_shards_rows(built, lake: Lake):
    """The most rows the builder held at once is one shard's observations or feature rows."""
    store, summary = built
    generation = store.open()
    observations = lake.scan("observations").select("encounter_id").collect()
    per_shard_observations = np.bincount(
        [shard_of(e, generation.n_shards) for e in observations["encounter_id"]], minlength=generation.n_shards
    )
    per_shard_rows = [generation.manifest.shards[k].rows for k in range(generation.n_shards)]
    assert summary.largest_chunk_rows == max(max(per_shard_observations), max(per_shard_rows))
    assert summary.largest_chunk_rows < min(observations.height, generation.rows) / 2


def test_a_second_refresh_with_nothing_new_rebuilds_nothing(built, lake: Lake):
    store, _ = built
    again = refresh_store(lake, store, rows_per_shard=ROWS_PER_SHARD)
    assert again.rebuilt == 0 and not again.new_generation


# ----------------------------------------------------------------------------- refresh


def _new_batch(lake: Lake, folder: Path, encounter_ids: list[str], *, hours_after: int = 1) -> None:
    """A batch with one heart rate for each given stay, an hour into its stay."""
    stays = lake.scan("encounters").filter(pl.col("encounter_id").is_in(encounter_ids)).collect()
    rows = stays.select(
        "encounter_id",
        (pl.col("admit_time") + timedelta(hours=hours_after, minutes=7)).dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias("charttime"),
        pl.lit("heart_rate").alias("variable"),
        pl.lit(131.0).alias("value"),
        pl.lit("/min").alias("unit"),
        pl.lit("monitor").alias("source"),
    )
    folder.mkdir(parents=True, exist_ok=True)
    rows.write_csv(folder / "observations.csv")
    ingest_paths([folder / "observations.csv"], lake=lake, now=NOW + timedelta(minutes=5))


def test_a_new_batch_rebuilds_only_the_shards_it_touched_and_equals_a_full_rebuild(tmp_path: Path):
    lake = _lake(tmp_path, n_encounters=160, seed=9)
    store = FeatureStore(tmp_path / "features")
    first = refresh_store(lake, store, rows_per_shard=2_500)
    discharged = lake.scan("encounters").filter(pl.col("discharge_time").is_not_null()).collect()
    touched_ids = discharged["encounter_id"].head(2).to_list()
    _new_batch(lake, tmp_path / "late", touched_ids)
    second = refresh_store(lake, store, rows_per_shard=2_500)
    touched_shards = {shard_of(e, first.n_shards) for e in touched_ids}
    assert second.n_shards == first.n_shards
    assert second.rebuilt == len(touched_shards) < first.n_shards
    full = FeatureStore(tmp_path / "full")
    refresh_store(lake, full, rows_per_shard=2_500)
    assert_frame_equal(stored(store), stored(full), check_exact=False, rel_tol=2.5e-7, abs_tol=1e-30)
    assert store.open().batches == tuple(lake.committed_batch_ids())


def test_a_later_data_end_rebuilds_the_shards_of_stays_still_open(tmp_path: Path):
    lake = _lake(tmp_path, n_encounters=160, seed=10)
    store = FeatureStore(tmp_path / "features")
    first = refresh_store(lake, store, rows_per_shard=2_500)
    still_open = lake.scan("encounters").filter(pl.col("discharge_time").is_null()).collect()
    latest = lake.scan("observations").select(pl.col("charttime").max()).collect().item()
    # one stay gets a measurement after everything else: every open stay's grid grows
    one = still_open["encounter_id"][0]
    admit = still_open["admit_time"][0]
    _new_batch(lake, tmp_path / "later", [one], hours_after=int((latest - admit).total_seconds() // 3600) + 3)
    second = refresh_store(lake, store, rows_per_shard=2_500)
    open_shards = {shard_of(e, first.n_shards) for e in still_open["encounter_id"]}
    assert second.rebuilt == len(open_shards)
    full = FeatureStore(tmp_path / "full")
    refresh_store(lake, full, rows_per_shard=2_500)
    assert_frame_equal(stored(store), stored(full), check_exact=False, rel_tol=2.5e-7, abs_tol=1e-30)


def test_a_build_stopped_half_way_leaves_a_readable_store_that_the_next_build_finishes(tmp_path: Path):
    lake = _lake(tmp_path, n_encounters=160, seed=11)
    store = FeatureStore(tmp_path / "features")
    partial = refresh_store(lake, store, rows_per_shard=2_500, stop_after=2)
    assert partial.rebuilt == 2 < partial.n_shards
    with pytest.raises(FeatureError, match="run `riskcast features`"):
        store.open()
    finished = refresh_store(lake, store, rows_per_shard=2_500)
    assert finished.rebuilt == partial.n_shards - 2
    full = FeatureStore(tmp_path / "full")
    refresh_store(lake, full, rows_per_shard=2_500)
    assert_frame_equal(stored(store), stored(full), check_exact=False, rel_tol=2.5e-7, abs_tol=1e-30)


@pytest.mark.slow
def test_kill_9_during_a_refresh_leaves_the_old_store_readable_and_the_next_refresh_completes_it(tmp_path: Path):
    home = tmp_path / "home"
    lake = _lake(home, n_encounters=400, seed=12)
    store = FeatureStore(home / "features")
    refresh_store(lake, store, rows_per_shard=1_500)
    before = store.open()
    # a batch that touches every stay: the next refresh rebuilds every shard
    _new_batch(lake, tmp_path / "everyone", lake.scan("encounters").collect()["encounter_id"].to_list())
    process = subprocess.Popen(
        [sys.executable, "-m", "riskcast", "--home", str(home), "features", "--rows-per-shard", "1500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    manifest = before.folder / "manifest.json"

    def part_way() -> bool:
        shards = json.loads(manifest.read_text())["shards"]
        refreshed = sum(1 for r in shards.values() if len(r["batches"]) == 2)
        assert process.poll() is None, "the refresh finished before it could be killed"
        return 1 <= refreshed < before.n_shards - 1

    try:
        wait_until(part_way, timeout=300, what="the refresh to have rebuilt some shards but not all")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    # the old store still reads: every shard file the manifest names is there and complete
    after_kill = store.open()
    assert after_kill.folder == before.folder
    assert sum(r.rows for r in after_kill.manifest.shards.values()) > 0
    for frame in after_kill.iter_shards(["encounter_id"]):
        assert frame.height > 0
    done = refresh_store(lake, store, rows_per_shard=1_500)
    assert 0 < done.rebuilt < before.n_shards
    full = FeatureStore(tmp_path / "full")
    refresh_store(lake, full, rows_per_shard=1_500)
    assert_frame_equal(stored(store), stored(full), check_exact=False, rel_tol=2.5e-7, abs_tol=1e-30)


@pytest.mark.slow
def test_a_dask_cluster_builds_the_same_store(lake: Lake, built, tmp_path: Path):
    from distributed import Client, LocalCluster

    store, _ = built
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        distributed = FeatureStore(tmp_path / "features")
        summary = refresh_store(lake, distributed, rows_per_shard=ROWS_PER_SHARD, client=client)
    assert summary.rebuilt == summary.n_shards == store.open().n_shards
    assert_frame_equal(stored(distributed), stored(store), check_exact=False, rel_tol=2.5e-7, abs_tol=1e-30)
