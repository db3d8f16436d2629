"""Labelled training and evaluation data from the feature store, one shard at a time.

The store holds features only; the labels of an outcome and horizon are attached here, per
shard, from the lake's outcomes (riskcast.labels), so one store serves every outcome. Every
consumer — training, held-out evaluation, external validation, the audit — reads shards in
turn through `labelled_shards` or `StoreDataset`, so memory follows the shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskcast.errors import LakeError
from riskcast.feature_store import FeatureStore, Generation, refresh_store
from riskcast.features.families import FAMILIES
from riskcast.labels import challenge_labels, make_labels
from riskcast.lake import Lake
from riskcast.model.dataset import Chunk

KEY_COLUMNS = ["encounter_id", "patient_id", "time"]
LABEL_COLUMNS = ["label", "event_time", "sepsis_label"]


@dataclass(frozen=True)
class Labelling:
    """Which rows are labelled and how (riskcast.labels.make_labels).

    label = 1 when the outcome's first event falls within `horizon_hours` after the row. Rows
    at or after the event are dropped, unless keep_after_event, which keeps them labelled 1:
    the PhysioNet 2019 challenge scores every hour, and with a 6 h horizon its hourly
    SepsisLabel is exactly this label (1 from 6 h before onset to the end of the stay).
    """

    outcome: str
    horizon_hours: float = 12.0
    keep_after_event: bool = False

    def for_evaluation(self) -> Labelling:
        """The rows an evaluation scores: for sepsis every hour, as the challenge does."""
        return Labelling(self.outcome, self.horizon_hours, self.keep_after_event or self.outcome == "sepsis")

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "horizon_hours": self.horizon_hours, "keep_after_event": self.keep_after_event}


class LabelSource:
    """The lake's outcomes and discharge times (small tables), to label any shard's rows."""

    def __init__(self, lake: Lake, *, batches: Sequence[str] | None = None) -> None:
        self.outcomes = lake.scan("outcomes", batches=batches).drop("batch_id").collect()
        self.encounters = lake.scan("encounters", batches=batches).select("encounter_id", "discharge_time").collect()

    def attach(self, rows: pl.DataFrame, labelling: Labelling, *, drop_censored: bool = True) -> pl.DataFrame:
        """`rows` (with encounter_id and time) with label, event_time and, for sepsis,
        sepsis_label; rows after the event are dropped unless the labelling keeps them."""
        ids = rows.select("encounter_id").unique()
        outcomes = self.outcomes.join(ids, on="encounter_id", how="semi")
        labels = make_labels(
            rows.select("encounter_id", "time"), outcomes, self.encounters.join(ids, on="encounter_id", how="semi"),
            outcome=labelling.outcome, horizon_hours=labelling.horizon_hours,
            keep_after_event=labelling.keep_after_event,
        )
        if labelling.outcome == "sepsis":
            labels = labels.join(challenge_labels(labels, outcomes), on=["encounter_id", "time"], how="left")
        out = rows.join(labels, on=["encounter_id", "time"], how="inner", maintain_order="left")
        if drop_censored:
            out = out.filter(pl.col("label").is_not_null())
        return out


def store_for(lake: Lake) -> FeatureStore:
    """The feature store beside a lake: `<home>/features` for `<home>/lake`."""
    return FeatureStore(lake.root.parent / "features")


def fresh_generation(
    lake: Lake,
    store: FeatureStore | None = None,
    *,
    families: Sequence[str] = FAMILIES,
    progress: Callable[[str], None] = lambda message: None,
) -> Generation:
    """Refresh the store from the lake (only what changed is rebuilt) and open it.

    The store keeps every feature family (a model reads the columns of its own families), so
    one store serves every model, ablation and staleness check.
    """
    if lake.is_empty():
        raise LakeError(f"the lake at {lake.root} is empty: run `riskcast ingest PATH` first")
    store = store or store_for(lake)
    summary = refresh_store(lake, store, families=families, progress=progress)
    if summary.rebuilt:
        progress(f"feature store: rebuilt {summary.rebuilt} of {summary.n_shards} shard(s) in {summary.seconds:.1f} s")
    return store.open(families)


def labelled_shard(
    generation: Generation,
    shard: int,
    labels: LabelSource,
    labelling: Labelling,
    *,
    columns: Sequence[str] | None = None,
    patients: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    only_rows: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One shard's labelled rows (censored rows dropped), optionally of some patients only,
    or only the (encounter_id, time) rows of `only_rows` (a source's own rows)."""
    frame = generation.read_shard(shard, None if columns is None else _with_keys(columns))
    if only_rows is not None:
        frame = frame.join(only_rows, on=["encounter_id", "time"], how="semi", maintain_order="left")
    if patients is not None:
        frame = frame.filter(pl.col("patient_id").is_in(pl.Series(list(patients), dtype=pl.String).implode()))
    if exclude is not None:
        frame = frame.filter(~pl.col("patient_id").is_in(pl.Series(list(exclude), dtype=pl.String).implode()))
    return labels.attach(frame, labelling)


def labelled_shards(
    generation: Generation,
    labels: LabelSource,
    labelling: Labelling,
    **options: Any,
) -> Iterator[pl.DataFrame]:
    """labelled_shard for every shard in turn."""
    for shard in generation.shard_ids():
        yield labelled_shard(generation, shard, labels, labelling, **options)


def _with_keys(columns: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*KEY_COLUMNS, *columns]))


CHUNK_CACHE_BYTES = 256 << 20
"""How much of a StoreDataset's chunks are kept in memory between the boosters' passes (a
small cohort is read from disk once; a large one mostly re-read, with memory still bounded).
On PhysioNet set A a 1 GiB cache raised `riskcast train`'s peak from 4.0 to 4.8 GiB for the
same wall time: re-reading a shard costs little beside training on it."""


class StoreDataset:
    """A riskcast.model.dataset.Dataset over the store's shards: the labelled rows of the
    chosen patients, the chosen features as float32.

    The boosters read every chunk several times (XGBoost sketches, then quantises; then the
    held-out margins); chunks are kept while they fit in `cache_bytes`, and re-read after.
    """

    def __init__(
        self,
        generation: Generation,
        labels: LabelSource,
        labelling: Labelling,
        *,
        features: Sequence[str],
        patients: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        only_rows: pl.DataFrame | None = None,
    ) -> None:
        self.generation, self.labels, self.labelling = generation, labels, labelling
        self.feature_names = list(features)
        self.patients = None if patients is None else sorted(set(patients))
        self.exclude = None if exclude is None else sorted(set(exclude))
        self.only_rows = None if only_rows is None else only_rows.select("encounter_id", "time").unique()
        self.shards = generation.shard_ids()
        self.cache_bytes = CHUNK_CACHE_BYTES
        self._cache: dict[int, Chunk] = {}
        self._cached_bytes = 0

    @property
    def n_chunks(self) -> int:
        return len(self.shards)

    def rows(self, index: int, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The chunk's labelled rows with the given columns (keys and labels always)."""
        return labelled_shard(
            self.generation, self.shards[index], self.labels, self.labelling,
            columns=self.feature_names if columns is None else columns, patients=self.patients, exclude=self.exclude,
            only_rows=self.only_rows,
        )

    def chunk(self, index: int) -> Chunk:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        frame = self.rows(index)
        chunk = Chunk(
            X=np.ascontiguousarray(frame.select(self.feature_names).to_numpy(), dtype=np.float32),
            y=frame["label"].to_numpy().astype(np.int8),
            groups=frame["patient_id"].to_numpy(),
            encounter_ids=frame["encounter_id"].to_numpy(),
            scoring_labels=frame["sepsis_label"].to_numpy().astype(np.int8) if "sepsis_label" in frame.columns else None,
        )
        size = chunk.X.nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = chunk
            self._cached_bytes += size
        return chunk

    def release(self) -> None:
        """Drop the cached chunks (once the boosters are done with them)."""
        self._cache.clear()
        self._cached_bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        """Without the cached chunks: a Dask worker reads the shards it is given itself."""
        state = dict(self.__dict__)
        state["_cache"], state["_cached_bytes"] = {}, 0
        return state

    def with_features(self, features: Sequence[str]) -> StoreDataset:
        """The same rows with other feature columns (for ablations)."""
        return StoreDataset(self.generation, self.labels, self.labelling, features=features,
                            patients=self.patients, exclude=self.exclude, only_rows=self.only_rows)

    def rows_at(self, positions: np.ndarray, columns: Sequence[str]) -> pl.DataFrame:
        """The rows at these positions (in the order fit read the chunks), with `columns`."""
        wanted = np.sort(np.asarray(positions, dtype=np.int64))
        parts, offset = [], 0
        for index in range(self.n_chunks):
            frame = self.rows(index, columns=columns)
            local = wanted[(wanted >= offset) & (wanted < offset + frame.height)] - offset
            if len(local):
                parts.append(frame[local])
            offset += frame.height
        return pl.concat(parts) if parts else pl.DataFrame()


def export_matrix(
    generation: Generation,
    lake: Lake,
    out: Path,
    *,
    labelling: Labelling | None = None,
    columns: Sequence[str] | None = None,
) -> tuple[int, int]:
    """Write the store's matrix (labelled when `labelling` is given; censored rows kept with a
    null label) to one Parquet file, shard by shard; returns (rows, columns). Written under a
    temporary name and renamed, so `out` is never half written."""
    import pyarrow.parquet as pq

    labels = LabelSource(lake, batches=generation.batches) if labelling is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    writer, rows, width = None, 0, 0
    try:
        for frame in generation.iter_shards(columns):
            if labels is not None and labelling is not None:
                frame = labels.attach(frame, labelling, drop_censored=False)
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
            rows, width = rows + frame.height, frame.width
        if writer is None:
            raise LakeError("the feature store has no rows to export")
        writer.close()
        writer = None
        tmp.replace(out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows, width
