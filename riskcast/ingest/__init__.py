"""Read source files in any supported format into canonical source frames.

Each adapter turns its format into frames with the canonical tables' columns plus the
provenance columns `_source_file` and `_source_line`; riskcast.contracts validates them.
Formats: canonical CSV/Parquet (riskcast.ingest.canonical), the PhysioNet 2019
challenge's pipe-separated files (riskcast.ingest.physionet), MEDS datasets
(riskcast.ingest.meds), FHIR R4 bulk NDJSON and Bundles (riskcast.ingest.fhir) and OMOP CDM
folders or databases (riskcast.ingest.omop). `discover` tells them apart by their layout
unless a format is named, and lists the files no adapter recognised.

What an adapter cannot read, or judges itself, comes back beside its tables as rejected
rows (riskcast.ingest.rejects, under the key REJECTED), and counts of what it skipped on
purpose (codes riskcast does not use) under SKIPPED; a unit whose adapter fails altogether
comes back as one rejected row naming it: a bad file never stops the others.
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
from riskcast.ingest.fhir import fhir_files, looks_like_fhir, read_fhir
from riskcast.ingest.meds import looks_like_meds, read_meds
from riskcast.ingest.omop import database_content_hash, is_database_url, looks_like_omop, read_omop, redacted_url
from riskcast.ingest.physionet import looks_like_physionet, non_psv_files, read_physionet
from riskcast.ingest.rejects import REJECTED, SKIPPED, UNREADABLE_FILE, rejected_file

FORMATS = ("canonical", "physionet", "meds", "fhir", "omop")
ENCOUNTER_LEVELS = ("hospital", "icu")

log = logging.getLogger(__name__)

_IGNORED_IN_MESSAGES = 10
"""How many ignored files an error message names before it says how many more."""


@dataclass(frozen=True)
class SourceFile:
    """One unit of ingest: a table file, or a whole PhysioNet archive/folder."""

    path: Path
    format: str  # one of FORMATS
    sha256: str
    url: str | None = None  # a database (OMOP through SQLAlchemy) instead of a path

    @property
    def name(self) -> str:
        return redacted_url(self.url) if self.url else self.path.name

    @property
    def display(self) -> str:
        """The path, or the database URL without its password."""
        return redacted_url(self.url) if self.url else str(self.path)


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


def format_of(path: Path) -> str:
    """The format a path's layout says it holds (canonical when no other fits)."""
    if looks_like_meds(path):
        return "meds"
    if looks_like_omop(path):
        return "omop"
    if looks_like_fhir(path):
        return "fhir"
    if looks_like_physionet(path):
        return "physionet"
    return "canonical"


def discover(paths: list[Path | str], *, format: str | None = None) -> Discovery:
    """The ingest units the given paths (or database URLs) name, each with its content hash,
    and the files ignored.

    format: one of FORMATS, or None to recognise each path by its layout: a MEDS root
    (data/ and metadata/), an OMOP CDM folder (person and visit_occurrence tables), FHIR
    NDJSON or Bundle files, PhysioNet .psv files, else canonical table files. A database
    URL (postgresql://…) is read as OMOP.

    Raises IngestError when a path does not exist, or when nothing at all is recognised
    (the message names what was ignored).
    """
    if not paths:
        raise IngestError("no paths given: name a file or folder to ingest")
    if format is not None and format not in FORMATS:
        raise IngestError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    sources: list[SourceFile] = []
    ignored: list[Path] = []
    for given in paths:
        if is_database_url(str(given)):
            if format not in (None, "omop"):
                raise IngestError(f"{redacted_url(str(given))}: a database URL can only be read as OMOP (--format omop)")
            url = str(given)
            sources.append(SourceFile(Path(redacted_url(url)), "omop", database_content_hash(url), url=url))
            continue
        path = Path(given)
        if not path.exists():
            raise IngestError(f"{path}: no such file or folder")
        kind = format or format_of(path)
        if kind == "canonical":
            tables, skipped = canonical_files(path)
            sources.extend(SourceFile(p, "canonical", content_hash(p)) for p in tables)
            ignored += skipped
        elif kind == "fhir":
            files = fhir_files(path)  # raises when there is none
            sources.append(SourceFile(path, "fhir", content_hash(path) if path.is_file() else _files_hash(path, files)))
        elif kind == "physionet":
            sources.append(SourceFile(path, "physionet", content_hash(path)))
            ignored += non_psv_files(path)
        else:
            sources.append(SourceFile(path, kind, content_hash(path)))
    if not sources:
        raise IngestError(_nothing_recognised([Path(p) for p in paths], ignored))
    return Discovery(sources, ignored)


def _files_hash(root: Path, files: list[Path]) -> str:
    """sha256 of the named files under root (names and bytes), as content_hash does for a folder."""
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(str(file.relative_to(root)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


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


def read_source(
    source: SourceFile, *, site: str | None = None, encounters: str = "hospital"
) -> dict[str, pl.DataFrame]:
    """Source frames by table for one ingest unit, under REJECTED the rows it could not read
    (and SKIPPED counts, for the standard formats). encounters: "hospital" stays, or "icu"
    stays (MEDS, FHIR, OMOP only).

    A unit whose adapter fails altogether comes back as one rejected row (rule
    `unreadable_file`) naming the unit: an IngestError's own message (riskcast's, which names
    no value), or only the kind of error for anything else, whose message might quote the file.
    """
    if encounters not in ENCOUNTER_LEVELS:
        raise IngestError(f"encounters must be one of {', '.join(ENCOUNTER_LEVELS)}, got {encounters!r}")
    try:
        return _read(source, site=site, encounters=encounters)
    except MemoryError:
        raise
    except IngestError as exc:
        detail = str(exc).removeprefix(f"{source.name}: ")
    except Exception as exc:  # noqa: BLE001 - an unreadable file must not stop the others
        log.debug("reading %r failed", source.name, exc_info=True)
        detail = f"the file cannot be read ({type(exc).__name__})"
    return {REJECTED: rejected_file(_table_named(source), source.name, UNREADABLE_FILE, detail, line=None)}


def _read(source: SourceFile, *, site: str | None, encounters: str) -> dict[str, pl.DataFrame]:
    if source.format == "physionet":
        return read_physionet(source.path, site=site)
    if source.format == "meds":
        return read_meds(source.path, site=site, encounters=encounters)
    if source.format == "fhir":
        return read_fhir(source.path, site=site, encounters=encounters)
    if source.format == "omop":
        return read_omop(source.url or source.path, site=site, encounters=encounters)
    return read_canonical_file(source.path)


def _table_named(source: SourceFile) -> str:
    """The table a rejected unit would have fed: its canonical table, else its format's name."""
    return (table_of(source.path) if source.format == "canonical" else None) or source.format


__all__ = [
    "ENCOUNTER_LEVELS", "FORMATS", "REJECTED", "SKIPPED", "Discovery", "SourceFile", "content_hash", "discover",
    "format_of", "read_source",
]
