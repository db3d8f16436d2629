"""Read source files in any supported format into canonical source frames.

Each adapter turns its format into frames with the canonical tables' columns plus the
provenance columns `_source_file` and `_source_line`; riskcast.contracts validates them.
Formats: canonical CSV/Parquet (riskcast.ingest.canonical) and the PhysioNet 2019
challenge's pipe-separated files (riskcast.ingest.physionet).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from riskcast.errors import IngestError
from riskcast.ingest.canonical import canonical_files, read_canonical_file
from riskcast.ingest.physionet import looks_like_physionet, read_physionet


@dataclass(frozen=True)
class SourceFile:
    """One unit of ingest: a table file, or a whole PhysioNet archive/folder."""

    path: Path
    format: str  # "canonical" | "physionet"
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def discover(paths: list[Path]) -> list[SourceFile]:
    """The ingest units the given paths name, each with its content hash."""
    if not paths:
        raise IngestError("no paths given: name a file or folder to ingest")
    sources: list[SourceFile] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise IngestError(f"{path}: no such file or folder")
        if looks_like_physionet(path):
            sources.append(SourceFile(path, "physionet", content_hash(path)))
        else:
            sources.extend(SourceFile(p, "canonical", content_hash(p)) for p in canonical_files(path))
    return sources


def read_source(source: SourceFile, *, site: str | None = None) -> dict[str, pl.DataFrame]:
    """Source frames by table for one ingest unit."""
    if source.format == "physionet":
        return read_physionet(source.path, site=site)
    table, frame = read_canonical_file(source.path)
    return {table: frame}
