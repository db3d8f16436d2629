"""The append-only Parquet lake: one batch per ingest, committed by its manifest.

Layout under the lake root:

    <table>/<batch_id>.parquet      valid rows of a canonical table, with a batch_id column
    quarantine/<batch_id>.parquet   rows that broke a rule, with the rule and source line
    batches/<batch_id>.json         the manifest; a batch exists only once this is written

Every file is written under a temporary name and renamed, and the manifest is renamed
last, so a process that dies mid-ingest leaves nothing a reader will see. A big table is
written in parts (`Lake.batch_writer`: each part a row group of the table's one temporary
file), so an ingest never holds a whole file's rows; the batch still appears all at once. Writers take the
lake's lock (`Lake.writing`: an exclusive flock on <root>/.lock, re-entrant within a
process), so two ingests, from the scheduler and from the command line say, never remove
each other's files in progress or accept the same rows twice; readers take no lock. Batch ids sort
by the time they were made, and each manifest records its place in the commit order (two
ingests within one second get ids that differ only in their digest). For patients and
encounters the batch committed last wins (a later feed may add a discharge time), while
observations and outcomes accumulate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from riskcast.catalog import TABLES
from riskcast.config import PRIVATE_FILE_MODE, make_private_dir
from riskcast.contracts import QUARANTINE_SCHEMA, UTC_DATETIME
from riskcast.errors import LakeError
from riskcast.file_lock import exclusive_lock

MANIFESTS = "batches"
QUARANTINE = "quarantine"

# Columns each table keeps in the lake, in order (typed as the contracts produce them).
LAKE_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "patients": {
        "patient_id": pl.String(),
        "birth_year": pl.Int64(),
        "age": pl.Float64(),
        "sex": pl.String(),
        "race_ethnicity": pl.String(),
        "site": pl.String(),
    },
    "encounters": {
        "encounter_id": pl.String(),
        "patient_id": pl.String(),
        "admit_time": UTC_DATETIME,
        "discharge_time": UTC_DATETIME,
        "ward": pl.String(),
        "site": pl.String(),
    },
    "observations": {
        "encounter_id": pl.String(),
        "charttime": UTC_DATETIME,
        "variable": pl.String(),
        "value": pl.Float64(),
        "unit": pl.String(),
        "source": pl.String(),
    },
    "outcomes": {
        "encounter_id": pl.String(),
        "event_time": UTC_DATETIME,
        "event_type": pl.String(),
    },
}
LATEST_WINS = {"patients": "patient_id", "encounters": "encounter_id"}


@dataclass(frozen=True)
class BatchManifest:
    """What one ingest added: its sources, and the rows accepted and quarantined."""

    batch_id: str
    created_at: str
    sources: list[dict[str, Any]]
    accepted: dict[str, int]
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    sequence: int = 0  # 1 for the first batch committed to the lake, 2 for the next, ...

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "created_at": self.created_at,
            "sources": self.sources,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "sequence": self.sequence,
        }


def new_batch_id(now: datetime, content_hashes: list[str]) -> str:
    """A batch id that sorts by time and names its content: 20260115T120000-1a2b3c4d."""
    import hashlib

    digest = hashlib.sha256("".join(sorted(content_hashes)).encode()).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%S}-{digest}"


def _atomic_write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write under a temporary name and rename; owner-only (0700 folders, 0600 file)."""
    make_private_dir(path.parent)
    tmp = path.with_name(f".tmp-{path.name}")
    frame.write_parquet(tmp, compression="zstd", statistics=True)
    os.chmod(tmp, PRIVATE_FILE_MODE)
    os.replace(tmp, path)


def _atomic_write_json(data: dict[str, Any], path: Path) -> None:
    """Write under a temporary name, fsync and rename; owner-only (0700 folders, 0600 file)."""
    make_private_dir(path.parent)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.chmod(tmp, PRIVATE_FILE_MODE)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


LOCK_FILE = ".lock"
WRITE_LOCK_TIMEOUT_SECONDS = 900.0
"""How long a writer waits for another to finish before giving up with a LakeError."""


class Lake:
    """The Parquet lake under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @contextmanager
    def writing(self, *, timeout: float = WRITE_LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Hold the lake's write lock: one writer at a time across processes and threads;
        re-entrant. Waits up to `timeout` seconds for another writer, then raises LakeError."""
        with exclusive_lock(self.root / LOCK_FILE, subject=f"the lake at {self.root}", error=LakeError, timeout=timeout):
            yield

    # ------------------------------------------------------------------ batches
    def manifests(self) -> list[BatchManifest]:
        """Committed batches in the order they were committed."""
        folder = self.root / MANIFESTS
        if not folder.exists():
            return []
        manifests = []
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith(".tmp-"):  # a manifest whose write never finished
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise LakeError(f"{path}: batch manifest is unreadable ({exc}); restore it or remove the batch") from exc
            manifests.append(BatchManifest(**data))
        return sorted(manifests, key=lambda m: (m.sequence, m.batch_id))

    def committed_batch_ids(self) -> list[str]:
        return [m.batch_id for m in self.manifests()]

    def seen_hashes(self) -> dict[str, str]:
        """Content hash -> batch id for every source already ingested."""
        return {s["sha256"]: m.batch_id for m in self.manifests() for s in m.sources}

    def commit_batch(
        self,
        batch_id: str,
        tables: dict[str, pl.DataFrame],
        quarantine: pl.DataFrame,
        *,
        sources: list[dict[str, Any]],
        created_at: datetime,
    ) -> BatchManifest:
        """Write a batch's tables and quarantine, then its manifest (the commit point), holding
        the write lock."""
        with self.batch_writer(batch_id) as batch:
            for table in TABLES:
                frame = tables.get(table)
                if frame is not None:
                    batch.append(table, frame)
            return batch.commit(quarantine, sources=sources, created_at=created_at)

    @contextmanager
    def batch_writer(self, batch_id: str) -> Iterator[BatchWriter]:
        """A batch to write part by part (see BatchWriter), holding the write lock throughout.

        Raises LakeError when the batch is already committed. Leaving the block without
        `commit` (an error, an interrupt) removes what was written: nothing of it is seen.
        """
        with self.writing():
            if (self.root / MANIFESTS / f"{batch_id}.json").exists():
                raise LakeError(f"batch {batch_id} is already committed")
            self._remove_orphans()
            writer = BatchWriter(self, batch_id)
            try:
                yield writer
            finally:
                writer.close()

    def _remove_orphans(self) -> None:
        """Delete temporary and uncommitted files left by a process that died mid-ingest."""
        committed = set(self.committed_batch_ids())
        for folder in [self.root / t for t in TABLES] + [self.root / QUARANTINE, self.root / MANIFESTS]:
            if not folder.exists():
                continue
            for path in folder.iterdir():
                if path.name.startswith(".tmp-") or (path.suffix == ".parquet" and path.stem not in committed):
                    path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading
    def _files(self, folder: str, batches: Sequence[str] | None = None) -> list[Path]:
        committed = set(self.committed_batch_ids() if batches is None else batches)
        directory = self.root / folder
        if not directory.exists():
            return []
        return sorted(p for p in directory.glob("*.parquet") if p.stem in committed)

    def scan(self, table: str, *, batches: Sequence[str] | None = None) -> pl.LazyFrame:
        """A table's committed rows; for patients and encounters the latest batch's row wins.

        batches: read only these committed batches (in the lake's commit order), e.g. the
        snapshot a reader listed once, so that a batch committed meanwhile is not half seen.
        """
        if table not in LAKE_SCHEMAS:
            raise LakeError(f"unknown table {table!r}; the lake holds {', '.join(TABLES)}")
        files = self._files(table, batches)
        schema = {**LAKE_SCHEMAS[table], "batch_id": pl.String()}
        if not files:
            return pl.LazyFrame(schema=schema)
        frame = pl.scan_parquet(files, schema=schema)
        key = LATEST_WINS.get(table)
        if key:
            committed = [b for b in self.committed_batch_ids() if batches is None or b in set(batches)]
            order = pl.LazyFrame(
                {"batch_id": committed, "__commit_order": list(range(len(committed)))},
                schema={"batch_id": pl.String, "__commit_order": pl.Int64},
            )
            frame = (
                frame.join(order, on="batch_id", how="left", maintain_order="left")
                .sort("__commit_order", maintain_order=True)
                .unique(key, keep="last", maintain_order=True)
                .drop("__commit_order")
            )
        elif table == "outcomes":
            frame = frame.unique(["encounter_id", "event_type", "event_time"], keep="first", maintain_order=True)
        return frame

    def scan_quarantine(self) -> pl.LazyFrame:
        """Every quarantined row with its batch, rule and source line."""
        files = self._files(QUARANTINE)
        schema = {**QUARANTINE_SCHEMA, "batch_id": pl.String()}
        if not files:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(files, schema=schema)

    def is_empty(self) -> bool:
        return not self.committed_batch_ids()


class BatchWriter:
    """One batch being written: `append` a table's rows in as many parts as it comes in, then
    `commit` writes the quarantine and the manifest, the commit point.

    Each table goes to one temporary file (a Parquet row group per part), renamed into place
    at the commit, so a batch is never half seen. Get one from `Lake.batch_writer`.
    """

    def __init__(self, lake: Lake, batch_id: str) -> None:
        self.lake = lake
        self.batch_id = batch_id
        self.accepted: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._committed = False

    def _temporary(self, table: str) -> Path:
        return self.lake.root / table / f".tmp-{self.batch_id}.parquet"

    def append(self, table: str, frame: pl.DataFrame) -> None:
        """Add rows of a canonical table (typed as the contracts produce them) to the batch."""
        if table not in LAKE_SCHEMAS:
            raise LakeError(f"unknown table {table!r}; the lake holds {', '.join(TABLES)}")
        if self._committed:
            raise LakeError(f"batch {self.batch_id} is already committed")
        if frame.height == 0:
            return
        stored = frame.select([pl.col(c).cast(t) for c, t in LAKE_SCHEMAS[table].items()]).with_columns(
            pl.lit(self.batch_id).alias("batch_id")
        ).to_arrow()
        if table not in self._writers:
            path = self._temporary(table)
            make_private_dir(path.parent)
            self._writers[table] = pq.ParquetWriter(path, stored.schema, compression="zstd", write_statistics=True)
            os.chmod(path, PRIVATE_FILE_MODE)
        self._writers[table].write_table(stored)
        self.accepted[table] += frame.height

    def discard(self, table: str) -> None:
        """Forget the rows appended to `table` so far (to write them again differently)."""
        writer = self._writers.pop(table, None)
        if writer is not None:
            writer.close()
        self._temporary(table).unlink(missing_ok=True)
        self.accepted[table] = 0

    def commit(self, quarantine: pl.DataFrame, *, sources: list[dict[str, Any]], created_at: datetime) -> BatchManifest:
        """Put the tables in place, write the quarantine, then the manifest: the batch is committed."""
        for table in list(self._writers):
            self._writers.pop(table).close()
            os.replace(self._temporary(table), self.lake.root / table / f"{self.batch_id}.parquet")
        quarantined: dict[str, dict[str, int]] = {}
        if quarantine.height:
            _atomic_write_parquet(
                quarantine.select(list(QUARANTINE_SCHEMA)).with_columns(pl.lit(self.batch_id).alias("batch_id")),
                self.lake.root / QUARANTINE / f"{self.batch_id}.parquet",
            )
            counts = quarantine.group_by("table", "rule").len().sort("table", "rule")
            for table, rule, count in counts.iter_rows():
                quarantined.setdefault(table, {})[rule] = int(count)
        sequence = max((m.sequence for m in self.lake.manifests()), default=0) + 1
        manifest = BatchManifest(
            batch_id=self.batch_id,
            created_at=created_at.isoformat(),
            sources=sources,
            accepted=dict(self.accepted),
            quarantined=quarantined,
            sequence=sequence,
        )
        _atomic_write_json(manifest.to_dict(), self.lake.root / MANIFESTS / f"{self.batch_id}.json")
        self._committed = True
        return manifest

    def close(self) -> None:
        """Without a commit, remove every temporary file of the batch."""
        for table in list(self._writers):
            self.discard(table)
