"""Reading the feature store: the hourly feature matrix as Parquet shards under the home.

Layout under the store's root (`<home>/features` by default):

    <generation>/manifest.json          spec, feature columns, and each shard's record
    <generation>/shards/0007-ab12cd.parquet
    .lock                               held by whoever builds or refreshes the store

A generation is one specification (feature families, catalogue, feature code version,
shard count); its folder is named by the spec's digest. Shard files are immutable: a
rebuilt shard gets a new file and the manifest is switched to it, so a reader that opened
the manifest reads a consistent set. Every shard holds the meta columns
(riskcast.features.build.META_COLUMNS) and the features as Float32, sorted by encounter and
time; labels are not stored (riskcast.pipeline.training_data attaches them per outcome and
horizon from the lake's outcomes, so one store serves every outcome).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from riskcast.catalog import Catalog, load_catalog
from riskcast.errors import FeatureError
from riskcast.feature_store.manifest import FEATURE_VERSION, StoreManifest, StoreSpec, read_manifest
from riskcast.features.build import META_COLUMNS
from riskcast.features.families import DEFAULT_FAMILIES, check_families
from riskcast.file_lock import exclusive_lock

LOCK_FILE = ".lock"
SHARDS_DIR = "shards"
WRITE_LOCK_TIMEOUT_SECONDS = 3600.0
"""A second builder waits this long for the first (a full build of years of data takes minutes)."""


@dataclass(frozen=True)
class Generation:
    """A readable set of shards: one generation of the store, as its manifest stood when opened."""

    folder: Path
    manifest: StoreManifest

    @property
    def features(self) -> list[str]:
        return list(self.manifest.features)

    @property
    def families(self) -> tuple[str, ...]:
        return self.manifest.spec.families

    @property
    def n_shards(self) -> int:
        return self.manifest.spec.n_shards

    @property
    def rows(self) -> int:
        return self.manifest.rows

    @property
    def batches(self) -> tuple[str, ...]:
        return self.manifest.batches

    def shard_ids(self) -> list[int]:
        return sorted(self.manifest.shards)

    def shard_file(self, shard: int) -> Path:
        return self.folder / self.manifest.shards[shard].file

    def shard_files(self) -> list[Path]:
        """Every shard's file, in shard order (empty shards included)."""
        return [self.shard_file(k) for k in self.shard_ids()]

    def read_shard(self, shard: int, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """One shard's rows (all columns, or `columns` in that order)."""
        return pl.read_parquet(self.shard_file(shard), columns=list(columns) if columns is not None else None)

    def iter_shards(self, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
        """Each shard in turn: only one is in memory at a time."""
        for shard in self.shard_ids():
            yield self.read_shard(shard, columns)

    def scan(self, columns: Sequence[str] | None = None) -> pl.LazyFrame:
        """All shards as one lazy frame (for streaming queries and exports)."""
        frame = pl.scan_parquet(self.shard_files())
        return frame.select(list(columns)) if columns is not None else frame

    def columns(self) -> list[str]:
        return META_COLUMNS + self.features


class FeatureStore:
    """The feature store under `root`: generations of shards, built by riskcast.feature_store.refresh."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @contextmanager
    def writing(self, *, timeout: float = WRITE_LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Hold the store's build lock (one builder at a time, across processes)."""
        with exclusive_lock(self.root / LOCK_FILE, subject=f"the feature store at {self.root}", error=FeatureError,
                            timeout=timeout):
            yield

    def generations(self) -> list[Generation]:
        """Every generation with a readable manifest, newest update first."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                manifest = read_manifest(folder)
                if manifest is not None:
                    found.append(Generation(folder, manifest))
        return sorted(found, key=lambda g: g.manifest.updated_at or "", reverse=True)

    def find(
        self, families: Sequence[str] = DEFAULT_FAMILIES, *, catalog: Catalog | None = None, complete: bool = True
    ) -> Generation | None:
        """The newest generation built with exactly these families and today's catalogue and
        feature code (complete ones only, unless complete=False)."""
        wanted = StoreSpec.of(check_families(families), catalog or load_catalog(), 1)
        for generation in self.generations():
            spec = generation.manifest.spec
            if spec.same_features(wanted) and (generation.manifest.complete or not complete):
                return generation
        return None

    def open(self, families: Sequence[str] = DEFAULT_FAMILIES, *, catalog: Catalog | None = None) -> Generation:
        """The generation to read for these families; FeatureError says what to run when there is none."""
        generation = self.find(families, catalog=catalog)
        if generation is None:
            stale = [g for g in self.generations() if g.manifest.spec.feature_version != FEATURE_VERSION]
            why = " (the store was built by an older riskcast)" if stale else ""
            raise FeatureError(
                f"no complete feature store for the families {', '.join(check_families(families))} at {self.root}{why}: "
                "run `riskcast features` to build it"
            )
        return generation
