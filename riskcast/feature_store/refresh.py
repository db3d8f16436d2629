"""Building and refreshing the feature store, one shard of encounters at a time.

`refresh_store(lake, store)` brings the store up to date with the lake:

1. It pins the lake's committed batches (a batch committed meanwhile waits for the next
   refresh) and reads the encounters and patients (small tables).
2. It finds the generation for the requested feature families, or starts one, sized so a
   shard holds about DEFAULT_ROWS_PER_SHARD encounter-hours. A cohort that has outgrown
   its generation (more than twice that per shard) gets a new generation.
3. It decides which shards are stale: never built, or holding an encounter that a batch
   added since touched (its observations, its encounter row, or its patient's row), or
   holding a stay still open when the lake's latest charttime moved (open stays run to it).
   Outcomes never make a shard stale: labels are not stored.
4. One streaming pass over the lake's observations writes the stale shards' rows to a
   scratch partition (one Parquet folder per shard).
5. Each stale shard is built with riskcast.features.build.build_features (the same
   point-in-time code as an in-memory build, given the whole lake's data end), its features
   cast to Float32, written under a new file name, and committed by rewriting the manifest.

Memory follows the shard, not the cohort: the largest frame held is one shard's
observations or feature rows (`largest_chunk_rows` in the summary). A build killed at any
point leaves the manifest naming only complete shards: the previous store stays readable
and the next refresh finishes the rest. Files no manifest names are removed at the next
refresh.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from riskcast.catalog import Catalog, load_catalog
from riskcast.clock import wall_clock
from riskcast.errors import LakeError
from riskcast.feature_store.manifest import ShardRecord, StoreManifest, StoreSpec, read_manifest, write_manifest
from riskcast.feature_store.shards import DEFAULT_ROWS_PER_SHARD, shard_count, shard_map
from riskcast.feature_store.store import SHARDS_DIR, FeatureStore, Generation
from riskcast.features.build import META_COLUMNS, build_columns, build_features, feature_columns
from riskcast.features.families import DEFAULT_FAMILIES, check_families, columns_of
from riskcast.lake import Lake

PARTITION_PREFIX = ".partition-"
OBSERVATION_COLUMNS = ("encounter_id", "charttime", "variable", "value")


@dataclass(frozen=True)
class RefreshSummary:
    """What a refresh did."""

    generation: str
    n_shards: int
    rebuilt: int
    unchanged: int
    new_generation: bool
    rows: int
    encounters: int
    features: int
    lake_batches: int
    largest_chunk_rows: int  # the most rows any one step held (observations or feature rows of a shard)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def refresh_store(
    lake: Lake,
    store: FeatureStore,
    *,
    families: Sequence[str] = DEFAULT_FAMILIES,
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    catalog: Catalog | None = None,
    progress: Callable[[str], None] = lambda message: None,
    stop_after: int | None = None,
    client: Any = None,
) -> RefreshSummary:
    """Bring the store's generation for `families` up to date with the lake (see the module).

    stop_after: build at most this many shards, then stop as a killed build would (for tests
    and for spreading a large first build over several runs); the next refresh carries on.
    client: a distributed.Client: the stale shards are built on its workers (which must see
    the store's folder: one machine, or a shared file system), each committed here as it
    completes, in whatever order.
    """
    started = time.perf_counter()
    families = check_families(families)
    catalog = catalog or load_catalog()
    if lake.is_empty():
        raise LakeError(f"the lake at {lake.root} is empty: run `riskcast ingest PATH` first")
    with store.writing():
        snapshot = tuple(lake.committed_batch_ids())
        encounters = lake.scan("encounters", batches=snapshot).drop("batch_id").collect()
        patients = lake.scan("patients", batches=snapshot).drop("batch_id").collect()
        data_end = lake.scan("observations", batches=snapshot).select(pl.col("charttime").max()).collect().item()
        hourly_rows = _estimated_rows(encounters, data_end)
        generation, new_generation = _generation_for(store, families, catalog, hourly_rows, rows_per_shard)
        _remove_leftovers(store, generation)
        manifest = generation.manifest
        shards = shard_map(encounters["encounter_id"], manifest.spec.n_shards)
        stale, refreshed = _stale_shards(lake, manifest, shards, encounters, snapshot, data_end)
        data_end_text = _iso(data_end)
        if refreshed:  # up to date already: only the record of what they reflect moves on
            for shard in refreshed:
                record = manifest.shards[shard]
                manifest = manifest.with_shard(
                    shard, ShardRecord(record.file, record.rows, record.encounters, snapshot, data_end_text),
                    updated_at=wall_clock().isoformat(),
                )
            write_manifest(generation.folder, manifest)
        progress(f"feature store {generation.folder.name}: {len(stale)} of {manifest.spec.n_shards} shard(s) to build "
                 f"({hourly_rows:,} encounter-hours estimated)")
        if stop_after is not None:
            stale = stale[:stop_after]
        largest = 0
        if stale:
            partition = generation.folder / f"{PARTITION_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
            try:
                _partition_observations(lake, snapshot, shards.filter(pl.col("shard").is_in(stale)), partition)
                build = partial(_build_shard, partition=partition, generation=generation, encounters=encounters,
                                patients=patients, shards=shards, data_end=data_end, snapshot=snapshot, catalog=catalog)
                for done, (shard, (record, held)) in enumerate(_each_built(build, stale, client), start=1):
                    largest = max(largest, held)
                    manifest = manifest.with_shard(shard, record, updated_at=wall_clock().isoformat())
                    write_manifest(generation.folder, manifest)
                    progress(f"shard {shard} built ({done} of {len(stale)}): {record.rows:,} rows, "
                             f"{record.encounters:,} encounters")
            finally:
                shutil.rmtree(partition, ignore_errors=True)
        if manifest.complete:
            _remove_superseded(store, Generation(generation.folder, manifest))
        return RefreshSummary(
            generation=generation.folder.name,
            n_shards=manifest.spec.n_shards,
            rebuilt=len(stale),
            unchanged=manifest.spec.n_shards - len(stale),
            new_generation=new_generation,
            rows=manifest.rows,
            encounters=encounters.height,
            features=len(manifest.features),
            lake_batches=len(snapshot),
            largest_chunk_rows=largest,
            seconds=round(time.perf_counter() - started, 2),
        )


def _each_built(build: Callable[[int], tuple[ShardRecord, int]], shards: list[int], client: Any) -> Any:
    """(shard, build(shard)) for every shard: here one after another, or on a Dask cluster as
    each completes."""
    if client is None:
        for shard in shards:
            yield shard, build(shard)
        return
    from distributed import as_completed

    futures = {client.submit(build, shard, pure=False): shard for shard in shards}
    for future in as_completed(futures):
        yield futures[future], future.result()


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _estimated_rows(encounters: pl.DataFrame, data_end: datetime | None) -> int:
    """About how many encounter-hours the grid will have (each stay's whole hours)."""
    stop = pl.col("discharge_time").fill_null(pl.lit(data_end)) if data_end is not None else pl.col("discharge_time")
    hours = ((stop - pl.col("admit_time")).dt.total_hours() + 1).clip(lower_bound=0)
    return int(encounters.select(hours.sum()).item() or 0)


def _generation_for(
    store: FeatureStore, families: tuple[str, ...], catalog: Catalog, hourly_rows: int, rows_per_shard: int
) -> tuple[Generation, bool]:
    """The generation to refresh (the newest with these features, complete or not), unless
    the cohort outgrew it; else a new one."""
    current = store.find(families, catalog=catalog, complete=False)
    if current is not None and hourly_rows <= 2 * rows_per_shard * current.n_shards:
        return current, False
    spec = StoreSpec.of(families, catalog, shard_count(hourly_rows, rows_per_shard=rows_per_shard))
    folder = store.root / spec.digest
    existing = read_manifest(folder)
    if existing is not None:
        return Generation(folder, existing), False
    features = tuple(columns_of(feature_columns(build_columns(catalog)), families))
    manifest = StoreManifest(spec, features, {}, False, wall_clock().isoformat())
    write_manifest(folder, manifest)
    return Generation(folder, manifest), True


def _remove_leftovers(store: FeatureStore, generation: Generation) -> None:
    """Scratch partitions and shard files that no manifest names (a build killed earlier)."""
    for path in generation.folder.iterdir():
        if path.name.startswith(PARTITION_PREFIX) or path.name.startswith(".tmp-"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    named = {Path(r.file).name for r in generation.manifest.shards.values()}
    folder = generation.folder / SHARDS_DIR
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name not in named:
                path.unlink(missing_ok=True)


def _remove_superseded(store: FeatureStore, current: Generation) -> None:
    """Other generations with the same features (an outgrown shard count) or built by older
    feature code or for another catalogue: nothing can read them any more."""
    for generation in store.generations():
        if generation.folder == current.folder:
            continue
        spec = generation.manifest.spec
        unusable = spec.feature_version != current.manifest.spec.feature_version or spec.variables != current.manifest.spec.variables
        if spec.same_features(current.manifest.spec) or unusable:
            shutil.rmtree(generation.folder, ignore_errors=True)


def _touched_encounters(lake: Lake, batches: Sequence[str], encounters: pl.DataFrame) -> set[str]:
    """Encounters whose features the given batches can change."""
    if not batches:
        return set()
    observed = lake.scan("observations", batches=batches).select("encounter_id").unique().collect()["encounter_id"]
    changed = lake.scan("encounters", batches=batches).select("encounter_id").unique().collect()["encounter_id"]
    people = lake.scan("patients", batches=batches).select("patient_id").unique().collect()["patient_id"]
    of_people = encounters.filter(pl.col("patient_id").is_in(people.implode()))["encounter_id"]
    return set(observed.to_list()) | set(changed.to_list()) | set(of_people.to_list())


def _stale_shards(
    lake: Lake,
    manifest: StoreManifest,
    shards: pl.DataFrame,
    encounters: pl.DataFrame,
    snapshot: tuple[str, ...],
    data_end: datetime | None,
) -> tuple[list[int], list[int]]:
    """(shards to build, shards up to date whose record only needs the new snapshot)."""
    open_shards = set(
        shards.join(encounters.filter(pl.col("discharge_time").is_null()).select("encounter_id"), on="encounter_id")[
            "shard"
        ].to_list()
    )
    by_shard: dict[int, set[str]] = {}
    for encounter_id, shard in shards.iter_rows():
        by_shard.setdefault(int(shard), set()).add(encounter_id)
    touched_by: dict[tuple[str, ...], set[str]] = {}
    stale, refreshed = [], []
    for shard in range(manifest.spec.n_shards):
        record = manifest.shards.get(shard)
        if record is None or not set(record.batches) <= set(snapshot):
            stale.append(shard)
            continue
        new = tuple(b for b in snapshot if b not in set(record.batches))
        if new not in touched_by:
            touched_by[new] = _touched_encounters(lake, new, encounters)
        moved_end = record.data_end != _iso(data_end) and shard in open_shards
        if moved_end or touched_by[new] & by_shard.get(shard, set()):
            stale.append(shard)
        elif new or record.data_end != _iso(data_end):
            refreshed.append(shard)
    return stale, refreshed


def _partition_observations(lake: Lake, snapshot: tuple[str, ...], shards: pl.DataFrame, folder: Path) -> None:
    """One streaming pass: the observations of the given shards, a Parquet folder per shard."""
    folder.mkdir(parents=True, exist_ok=True)
    (
        lake.scan("observations", batches=snapshot)
        .select(OBSERVATION_COLUMNS)
        .join(shards.lazy(), on="encounter_id", how="inner")
        .sink_parquet(pl.PartitionBy(folder, key="shard", include_key=False), mkdir=True)
    )


def _shard_observations(partition: Path, shard: int) -> pl.DataFrame:
    files = sorted((partition / f"shard={shard}").glob("*.parquet"))
    schema = {"encounter_id": pl.String, "charttime": pl.Datetime("us", "UTC"), "variable": pl.String, "value": pl.Float64}
    if not files:
        return pl.DataFrame(schema=schema)
    return pl.read_parquet(files).select(list(OBSERVATION_COLUMNS))


def _build_shard_frame(
    shard: int,
    partition: Path,
    encounters: pl.DataFrame,
    patients: pl.DataFrame,
    shards: pl.DataFrame,
    *,
    families: Sequence[str],
    data_end: datetime | None,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """One shard's feature rows (Float64, before the store's cast), built from its own
    observations with the whole lake's data end."""
    members = shards.filter(pl.col("shard") == shard).select("encounter_id")
    stays = encounters.join(members, on="encounter_id", how="semi")
    people = patients.join(stays.select("patient_id").unique(), on="patient_id", how="semi")
    observations = _shard_observations(partition, shard)
    frame = build_features(observations, stays, people, catalog=catalog, families=families, data_end=data_end)
    return frame.with_columns(pl.lit(observations.height).alias("__observations"))


def _build_shard(
    shard: int,
    *,
    partition: Path,
    generation: Generation,
    encounters: pl.DataFrame,
    patients: pl.DataFrame,
    shards: pl.DataFrame,
    data_end: datetime | None,
    snapshot: tuple[str, ...],
    catalog: Catalog,
) -> tuple[ShardRecord, int]:
    """Build one shard, write it under a new name; (its record, the most rows held)."""
    frame = _build_shard_frame(
        shard, partition, encounters, patients, shards, families=generation.families, data_end=data_end, catalog=catalog
    )
    observations = int(frame["__observations"][0]) if frame.height else 0
    held = max(observations, frame.height)
    features = list(generation.manifest.features)
    frame = frame.select(META_COLUMNS + features).with_columns(pl.col(features).cast(pl.Float32))
    name = f"{shard:04d}-{uuid.uuid4().hex[:8]}.parquet"
    path = generation.folder / SHARDS_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{name}")
    frame.write_parquet(tmp, compression="zstd", statistics=True)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    stays = frame["encounter_id"].n_unique() if frame.height else 0
    record = ShardRecord(f"{SHARDS_DIR}/{name}", frame.height, stays, snapshot, _iso(data_end))
    return record, held
