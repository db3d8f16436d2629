"""The feature store's manifest: what each shard holds and which lake batches it was built from.

One manifest per generation (a set of shards built with one specification: feature
families, catalogue, feature code version, shard count). It is rewritten atomically
(temporary file, fsync, rename) after every shard, so a build killed half-way leaves a
manifest that names only complete shard files, and the next build carries on from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from riskcast.catalog import Catalog
from riskcast.errors import FeatureError

MANIFEST_FILE = "manifest.json"
FORMAT = 1
FEATURE_VERSION = 3
"""Bump when the feature code changes what a column holds: stores built before are rebuilt."""


@dataclass(frozen=True)
class StoreSpec:
    """What a generation's shards are built with; its digest names the generation's folder."""

    families: tuple[str, ...]
    variables: tuple[tuple[str, str], ...]  # (name, kind) of every catalogue variable
    n_shards: int
    feature_version: int = FEATURE_VERSION

    @classmethod
    def of(cls, families: tuple[str, ...], catalog: Catalog, n_shards: int) -> StoreSpec:
        return cls(tuple(families), tuple((v.name, v.kind) for v in catalog.variables.values()), int(n_shards))

    def same_features(self, other: StoreSpec) -> bool:
        """Same columns and values, whatever the shard count."""
        return (self.families, self.variables, self.feature_version) == (other.families, other.variables, other.feature_version)

    @property
    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"families": list(self.families), "variables": [list(v) for v in self.variables],
                "n_shards": self.n_shards, "feature_version": self.feature_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreSpec:
        return cls(tuple(data["families"]), tuple((str(n), str(k)) for n, k in data["variables"]), int(data["n_shards"]),
                   int(data["feature_version"]))


@dataclass(frozen=True)
class ShardRecord:
    """One built shard: its file (relative to the generation), size, and what it reflects."""

    file: str
    rows: int
    encounters: int
    batches: tuple[str, ...]  # the lake batches it was built from
    data_end: str | None  # the lake's latest charttime then (where open stays end), ISO 8601

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"batches": list(self.batches)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardRecord:
        return cls(str(data["file"]), int(data["rows"]), int(data["encounters"]), tuple(data["batches"]), data.get("data_end"))


@dataclass(frozen=True)
class StoreManifest:
    """A generation: its specification, its feature columns and its shards."""

    spec: StoreSpec
    features: tuple[str, ...]  # feature columns, in order (meta columns come first in every shard)
    shards: dict[int, ShardRecord] = field(default_factory=dict)
    complete: bool = False  # every shard built at least once
    updated_at: str | None = None

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.shards.values())

    @property
    def batches(self) -> tuple[str, ...]:
        """The lake batches every shard reflects (the store is up to date with these)."""
        sets = [set(r.batches) for r in self.shards.values()]
        if not sets:
            return ()
        common = set.intersection(*sets)
        order = next(iter(self.shards.values())).batches
        return tuple(b for b in order if b in common)

    def with_shard(self, shard: int, record: ShardRecord, *, updated_at: str) -> StoreManifest:
        shards = dict(self.shards) | {shard: record}
        complete = self.complete or len(shards) == self.spec.n_shards
        return StoreManifest(self.spec, self.features, shards, complete, updated_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "spec": self.spec.to_dict(),
            "features": list(self.features),
            "shards": {str(k): r.to_dict() for k, r in sorted(self.shards.items())},
            "complete": self.complete,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreManifest:
        if data.get("format") != FORMAT:
            raise FeatureError(f"feature store manifest format {data.get('format')!r} is not {FORMAT}; rebuild it "
                               "with `riskcast features`")
        return cls(
            StoreSpec.from_dict(data["spec"]),
            tuple(data["features"]),
            {int(k): ShardRecord.from_dict(v) for k, v in data["shards"].items()},
            bool(data["complete"]),
            data.get("updated_at"),
        )


def read_manifest(folder: Path) -> StoreManifest | None:
    """The manifest in a generation folder, or None when there is none yet."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        return StoreManifest.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FeatureError(f"{path}: the feature store manifest is unreadable ({type(exc).__name__}); remove "
                           f"{folder} and run `riskcast features` to rebuild it") from exc


def write_manifest(folder: Path, manifest: StoreManifest) -> None:
    """Replace the manifest atomically: a reader sees the old one or the new one, never half."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_FILE
    tmp = folder / f".tmp-{MANIFEST_FILE}"
    with tmp.open("w") as handle:
        json.dump(manifest.to_dict(), handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
