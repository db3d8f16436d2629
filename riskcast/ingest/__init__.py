"""Read source files in any supported format into canonical source frames.

Each adapter turns its format into frames with the canonical tables' columns plus the
provenance columns `_source_file` and `_source_line`; riskcast.contracts validates them.
Formats: canonical CSV/Parquet (riskcast.ingest.canonical) and the PhysioNet 2019
challenge's pipe-separated files (riskcast.ingest.physionet).

What an adapter cannot read comes back beside its tables as rejected rows
(riskcast.ingest.rejections, under the key REJECTED), and a unit whose adapter fails
altogether comes back as one rejected row naming it: a bad file never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from riskcast.catalog import TABLES
from riskcast.errors import IngestError
from riskcast.ingest.canonical import canonical_files, read_canonical_file, table_of
from riskcast.ingest.physionet import looks_like_physionet, non_psv_files, read_physionet
from riskcast.ingest.rejections import REJECTED, UNREADABLE_FILE, rejected_file

log = logging.getLogger(__name__)

_IGNORED_IN_MESSAGES = 10
"""How many ignored files an error message names before it says how many more."""


@dataclass(frozen=True)
class SourceFile:
    """One unit of ingest: a table file, or a whole PhysioNet archive/folder."""

    path: Path
    format: str  # "canonical" | "physionet"
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Discovery:
    """What the given paths hold: the units to ingest, and the files no adapter recognised."""

    sources: list[SourceFile]
    ignored: list[Path] = field(default_factory=list)


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


def discover(paths: list[Path]) -> Discovery:
    """The ingest units the given paths name, each with its content hash, and the files ignored.

    Raises IngestError when a path does not exist, or when nothing at all is recognised
    (the message names what was ignored).
    """
    if not paths:
        raise IngestError("no paths given: name a file or folder to ingest")
    sources: list[SourceFile] = []
    ignored: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise IngestError(f"{path}: no such file or folder")
        if looks_like_physionet(path):
            sources.append(SourceFile(path, "physionet", content_hash(path)))
            ignored += non_psv_files(path)
        else:
            tables, skipped = canonical_files(path)
            sources.extend(SourceFile(p, "canonical", content_hash(p)) for p in tables)
            ignored += skipped
    if not sources:
        raise IngestError(_nothing_recognised([Path(p) for p in paths], ignored))
    return Discovery(sources, ignored)


def _nothing_recognised(paths: list[Path], ignored: list[Path]) -> str:
    naming = f"name files after one of {', '.join(TABLES)} with a .csv or .parquet suffix"
    if len(paths) == 1 and paths[0].is_file():
        return f"{paths[0].name}: cannot tell which table this file holds; {naming.replace('files', 'it', 1)}"
    expected = ", ".join(t + ".csv" for t in TABLES)
    root = paths[0] if len(paths) == 1 else None
    names = [str(p.relative_to(root)) if root is not None else str(p) for p in ignored]
    listed = ", ".join(names[:_IGNORED_IN_MESSAGES])
    if len(names) > _IGNORED_IN_MESSAGES:
        listed += f" and {len(names) - _IGNORED_IN_MESSAGES:,} more"
    where = str(root) if root is not None else "nothing to ingest in " + ", ".join(map(str, paths))
    text = f"{where}: no table files found; expected files named {expected} (or .parquet)"
    return text + (f"; ignored: {listed}" if names else "; the folder is empty")


def read_source(source: SourceFile, *, site: str | None = None) -> dict[str, pl.DataFrame]:
    """Source frames by table for one ingest unit, and under REJECTED the rows it could not read.

    A unit whose adapter fails altogether comes back as one rejected row (rule
    `unreadable_file`) naming the unit: an IngestError's own message (riskcast's, which names
    no value), or only the kind of error for anything else, whose message might quote the file.
    """
    try:
        return _read(source, site=site)
    except MemoryError:
        raise
    except IngestError as exc:
        detail = str(exc).removeprefix(f"{source.name}: ")
    except Exception as exc:  # noqa: BLE001 - an unreadable file must not stop the others
        log.debug("reading %r failed", source.name, exc_info=True)
        detail = f"the file cannot be read ({type(exc).__name__})"
    return {REJECTED: rejected_file(_table_named(source), source.name, UNREADABLE_FILE, detail, line=None)}


def _read(source: SourceFile, *, site: str | None) -> dict[str, pl.DataFrame]:
    if source.format == "physionet":
        return read_physionet(source.path, site=site)
    return read_canonical_file(source.path)


def _table_named(source: SourceFile) -> str:
    """The table a rejected unit would have fed: its canonical table, else its format's name."""
    return (table_of(source.path) if source.format == "canonical" else None) or source.format
