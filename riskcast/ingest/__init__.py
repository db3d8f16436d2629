"""Read source files in any supported format into canonical source frames.

Each adapter turns its format into frames with the canonical tables' columns plus the
provenance columns `_source_file` and `_source_line`; riskcast.contracts validates them.
Formats: canonical CSV/Parquet (riskcast.ingest.canonical), the PhysioNet 2019
challenge's pipe-separated files (riskcast.ingest.physionet), MEDS datasets
(riskcast.ingest.meds), FHIR R4 bulk NDJSON and Bundles (riskcast.ingest.fhir) and OMOP CDM
folders or databases (riskcast.ingest.omop). `discover` tells them apart by their layout
unless a format is named.

The adapters of the standard formats also return, under the keys REJECTED and SKIPPED
(riskcast.ingest.rejects), quarantine rows they judged themselves and counts of what they
skipped on purpose (codes riskcast does not use); `read_source` passes them on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from riskcast.errors import IngestError
from riskcast.ingest.canonical import canonical_files, read_canonical_file
from riskcast.ingest.fhir import fhir_files, looks_like_fhir, read_fhir
from riskcast.ingest.meds import looks_like_meds, read_meds
from riskcast.ingest.omop import database_content_hash, is_database_url, looks_like_omop, read_omop, redacted_url
from riskcast.ingest.physionet import looks_like_physionet, read_physionet
from riskcast.ingest.rejects import REJECTED, SKIPPED

FORMATS = ("canonical", "physionet", "meds", "fhir", "omop")
ENCOUNTER_LEVELS = ("hospital", "icu")


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


def discover(paths: list[Path | str], *, format: str | None = None) -> list[SourceFile]:
    """The ingest units the given paths (or database URLs) name, each with its content hash.

    format: one of FORMATS, or None to recognise each path by its layout: a MEDS root
    (data/ and metadata/), an OMOP CDM folder (person and visit_occurrence tables), FHIR
    NDJSON or Bundle files, PhysioNet .psv files, else canonical table files. A database
    URL (postgresql://…) is read as OMOP.
    """
    if not paths:
        raise IngestError("no paths given: name a file or folder to ingest")
    if format is not None and format not in FORMATS:
        raise IngestError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    sources: list[SourceFile] = []
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
            sources.extend(SourceFile(p, "canonical", content_hash(p)) for p in canonical_files(path))
        elif kind == "fhir":
            files = fhir_files(path)  # raises when there is none
            sources.append(SourceFile(path, "fhir", content_hash(path) if path.is_file() else _files_hash(path, files)))
        else:
            sources.append(SourceFile(path, kind, content_hash(path)))
    return sources


def _files_hash(root: Path, files: list[Path]) -> str:
    """sha256 of the named files under root (names and bytes), as content_hash does for a folder."""
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(str(file.relative_to(root)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def read_source(
    source: SourceFile, *, site: str | None = None, encounters: str = "hospital"
) -> dict[str, pl.DataFrame]:
    """Source frames by table for one ingest unit (plus REJECTED and SKIPPED for the standard
    formats). encounters: "hospital" stays, or "icu" stays (MEDS, FHIR, OMOP only)."""
    if encounters not in ENCOUNTER_LEVELS:
        raise IngestError(f"encounters must be one of {', '.join(ENCOUNTER_LEVELS)}, got {encounters!r}")
    if source.format == "physionet":
        return read_physionet(source.path, site=site)
    if source.format == "meds":
        return read_meds(source.path, site=site, encounters=encounters)
    if source.format == "fhir":
        return read_fhir(source.path, site=site, encounters=encounters)
    if source.format == "omop":
        return read_omop(source.url or source.path, site=site, encounters=encounters)
    table, frame = read_canonical_file(source.path)
    return {table: frame}


__all__ = [
    "ENCOUNTER_LEVELS", "FORMATS", "REJECTED", "SKIPPED", "SourceFile", "content_hash", "discover", "format_of",
    "read_source",
]
