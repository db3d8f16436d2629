"""Ingest: read sources, validate them against the contracts, commit one lake batch.

Re-ingesting a source whose content was ingested before is a no-op. Bad rows are
quarantined with their rule and source line; the good rows go on. A file that cannot be read
at all (empty, binary, a header without the contract's columns) is quarantined as a whole,
and a line that does not split into its header's fields alone: the other files and lines go
on. Columns outside the contract (a name, a record number) are dropped before anything is
kept, with a warning naming them. The summary says how many of each, lists the files no
adapter recognised, and never shows a patient's values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from riskcast.catalog import TABLES, load_contract
from riskcast.contracts import (
    SOURCE_FILE,
    SOURCE_LINE,
    UTC_DATETIME,
    Validated,
    empty_quarantine,
    require_columns,
    validate_encounters,
    validate_observations,
    validate_outcomes,
    validate_patients,
)
from riskcast.errors import ContractError, IngestError
from riskcast.ingest import SourceFile, discover, read_source
from riskcast.ingest.canonical import read_canonical_parts, table_of
from riskcast.ingest.rejects import MISSING_COLUMNS, REJECTED, SKIPPED, rejected_file
from riskcast.lake import BatchWriter, Lake, new_batch_id
from riskcast.pipeline.store_sync import record_quarantine
from riskcast.printable import printable

log = logging.getLogger(__name__)

PROBLEMS_PER_SOURCE = 20
"""How many of an unreadable unit's problems its source row keeps (for the inbox's note)."""

INGEST_CHUNK_ROWS = 1_000_000
"""The most observation rows an ingest reads and validates at once. Canonical observation files
are read in parts of this many lines, so an ingest's memory grows with this (and with the
other tables, which are small), not with the files; other formats' adapters read their
source whole, and their observations are validated in parts of this many rows."""


@dataclass(frozen=True)
class IngestSummary:
    """What one `riskcast ingest` did.

    sources: one row per unit (path, format, sha256, status "new" | "unreadable" | "already
    ingested", batch_id, readable, problems); ignored: files no adapter recognised; warnings:
    what was dropped on the way (columns outside the contract), in words without values.
    """

    batch_id: str | None
    sources: list[dict[str, Any]]
    rows_read: dict[str, int]
    accepted: dict[str, int]
    quarantined: dict[str, dict[str, int]]
    examples: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # table, rule, family, rows (see ingest.rejects)
    largest_chunk_rows: int = 0  # the most observation rows read and validated at once
    quarantine_rows_stored: int | None = None  # rows copied into the store's quarantine; None without a store

    @property
    def total_accepted(self) -> int:
        return sum(self.accepted.values())

    @property
    def total_quarantined(self) -> int:
        return sum(sum(rules.values()) for rules in self.quarantined.values())

    @property
    def already_ingested(self) -> bool:
        return self.batch_id is None and bool(self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "already_ingested": self.already_ingested,
            "sources": self.sources,
            "ignored": self.ignored,
            "warnings": self.warnings,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "total_accepted": self.total_accepted,
            "total_quarantined": self.total_quarantined,
            "examples": self.examples,
            "skipped": self.skipped,
            "total_skipped": sum(row["rows"] for row in self.skipped),
            "largest_chunk_rows": self.largest_chunk_rows,
            "quarantine_rows_stored": self.quarantine_rows_stored,
        }


def quarantine_text(row: dict[str, Any]) -> str:
    """One quarantined row in words: 'observations.csv line 7: out_of_range: value outside ...'.

    A row with no line (a Parquet file or an archive as a whole) says 'whole file'."""
    where = f"line {row['source_line']}" if row.get("source_line") is not None else "whole file"
    return f"{row['source_file']} {where}: {row['rule']}: {row['detail']}"


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


def ingest_paths(
    paths: list[Path],
    *,
    lake: Lake,
    now: datetime,
    source_timezone: str = "UTC",
    site: str | None = None,
    format: str | None = None,
    encounters: str = "hospital",
    chunk_rows: int = INGEST_CHUNK_ROWS,
    database: Engine | None = None,
) -> tuple[IngestSummary, pl.DataFrame]:
    """Ingest the given files/folders (or an OMOP database URL) as one batch; returns the
    summary and the quarantine.

    With `database` (the riskcast store), the quarantine is also copied into the store's
    quarantine table once the batch is committed, and so is that of every earlier batch whose
    content this ingest found already ingested (an ingest that died between the lake and the
    store is made whole); idempotent per batch (riskcast.pipeline.store_sync.record_quarantine).
    The summary's quarantine_rows_stored says how many rows were copied.

    format: canonical, physionet, meds, fhir or omop; None recognises each path by its layout.
    encounters: what a stay is for MEDS, FHIR and OMOP: "hospital" admissions or "icu" stays.
    `now` (UTC-aware) is the time of ingest: times later than it are quarantined as in the
    future. Holds the lake's write lock from the check of what was already ingested to the
    commit, so a concurrent ingest neither takes the same files again nor accepts the same
    rows. Raises IngestError when nothing at all is recognised, or nothing can be read.

    chunk_rows: the most observation rows read and validated at once (see INGEST_CHUNK_ROWS);
    the accepted rows and the quarantine are the same whatever it is."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise IngestError(f"chunk_rows must be a positive whole number, got {chunk_rows!r}")
    discovery = discover(list(paths), format=format)
    ignored = [str(p) for p in discovery.ignored]
    with lake.writing():
        summary, quarantine = _ingest_sources(
            discovery.sources, paths, lake=lake, now=now, source_timezone=source_timezone, site=site,
            encounters=encounters, chunk_rows=chunk_rows,
        )
    summary = replace(summary, ignored=ignored)
    if database is not None:
        earlier = {s["batch_id"] for s in summary.sources if s["status"] == "already ingested" and s.get("batch_id")}
        batches = earlier | ({summary.batch_id} if summary.batch_id is not None else set())
        summary = replace(summary, quarantine_rows_stored=record_quarantine(database, lake, batches, now=now))
    return summary, quarantine


def _seen_sources(lake: Lake) -> dict[str, dict[str, Any]]:
    """Content hash -> the manifest's row of every source ingested, with the batch it went into."""
    return {s["sha256"]: {**s, "batch_id": m.batch_id} for m in lake.manifests() for s in m.sources}


def _ingest_sources(
    sources: list[SourceFile],
    paths: list[Path],
    *,
    lake: Lake,
    now: datetime,
    source_timezone: str,
    site: str | None,
    encounters: str = "hospital",
    chunk_rows: int = INGEST_CHUNK_ROWS,
) -> tuple[IngestSummary, pl.DataFrame]:
    rows_in_order, source_rows = _source_rows(sources, _seen_sources(lake))
    new_sources: list[SourceFile] = []
    for source in sources:  # the first unit of each new content
        if source.sha256 in source_rows and source.sha256 not in {s.sha256 for s in new_sources}:
            new_sources.append(source)
    if not new_sources:
        return IngestSummary(None, rows_in_order, {}, {}, {}), empty_quarantine().with_columns(
            pl.lit(None, dtype=pl.String).alias("batch_id")
        )
    units = [_read_whole(source, site=site, encounters=encounters) for source in new_sources]
    batch_id = new_batch_id(now, [s.sha256 for s in new_sources])
    with lake.batch_writer(batch_id) as batch:
        results, observations = _validate(units, batch, lake=lake, now=now, source_timezone=source_timezone, chunk_rows=chunk_rows)
        warnings = _unit_warnings(units, observations)
        if _dates_shifted(results, observations):
            warnings.append(SHIFTED_DATES_WARNING)
            log.info("%s", SHIFTED_DATES_WARNING)
            batch.discard("observations")
            results, observations = _validate(units, batch, lake=lake, now=None, source_timezone=source_timezone, chunk_rows=chunk_rows)
        rejected = [p for index, unit in enumerate(units) for p in [*unit.problems, *observations.problems.get(index, [])]]
        skipped = _mark_units(units, observations, source_rows)
        for row in rows_in_order:  # the same content twice in one batch: read once, said alike
            first = source_rows.get(row["sha256"])
            if first is not None and row is not first and row["status"] != "already ingested":
                row.update(status=first["status"], readable=first["readable"], problems=first["problems"])
        rows_read = {t: sum(u.tables[t].height for u in units if t in u.tables) for t in TABLES}
        rows_read["observations"] = observations.rows_read  # the held frames' too, counted part by part
        if sum(rows_read.values()) == 0 and not rejected:
            raise IngestError(f"nothing could be read from {', '.join(str(p) for p in paths)}: the files hold no rows")
        quarantined = [results[t].quarantined for t in ("patients", "encounters") if t in results]
        quarantined += observations.quarantined
        quarantined += [results["outcomes"].quarantined] if "outcomes" in results else []
        quarantine = pl.concat([*rejected, *quarantined]) if rejected or quarantined else empty_quarantine()
        for table, result in results.items():
            batch.append(table, result.valid)
        manifest = batch.commit(quarantine, sources=list(source_rows.values()), created_at=now)
    examples = [quarantine_text(row) for row in quarantine.head(5).iter_rows(named=True)]
    log.info("batch %s: %d rows accepted, %d quarantined", batch_id, sum(manifest.accepted.values()), quarantine.height)
    summary = IngestSummary(
        batch_id=batch_id,
        sources=rows_in_order,
        rows_read=rows_read,
        accepted=manifest.accepted,
        quarantined=manifest.quarantined,
        examples=examples,
        warnings=warnings,
        skipped=skipped,
        largest_chunk_rows=observations.largest_chunk_rows,
    )
    return summary, quarantine.with_columns(pl.lit(batch_id).alias("batch_id"))


SHIFTED_DATES_WARNING = (
    "nearly every time in this batch is later than now: read as a research dataset whose dates are shifted "
    "for de-identification (as MIMIC-IV's are), so times in the future are accepted for this batch"
)


def _dates_shifted(results: dict[str, Validated], observations: _ObservationsRead) -> bool:
    """Whether nearly all of a batch's rows were in the future: dates shifted on purpose, not a clock error."""
    total, future = observations.rows_read, observations.in_the_future
    if "encounters" in results:
        result = results["encounters"]
        total += result.valid.height + result.quarantined.height
        future += result.quarantined.filter(pl.col("rule") == "in_the_future").height
    return total > 0 and future >= 0.99 * total


def _source_rows(
    sources: list[SourceFile], seen: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """A summary row per unit, in order, and the rows of the new contents by hash (the first
    unit of each content: the same content twice in one batch is read once)."""
    rows_in_order: list[dict[str, Any]] = []
    new_rows: dict[str, dict[str, Any]] = {}
    for source in sources:
        earlier = seen.get(source.sha256)
        row = {
            "path": source.display, "format": source.format, "sha256": source.sha256,
            "status": "already ingested" if earlier else "new", "batch_id": earlier["batch_id"] if earlier else None,
            "readable": earlier.get("status") != "unreadable" if earlier else True,
            "problems": list(earlier.get("problems", [])) if earlier else [],
        }  # fmt: skip
        rows_in_order.append(row)
        if earlier is None and source.sha256 not in new_rows:
            new_rows[source.sha256] = row
    return rows_in_order, new_rows


@dataclass
class _Unit:
    """One new unit as read up front: its tables (contract and provenance columns only), what its
    adapter rejected, the columns dropped, its skipped counts; a canonical observations file is
    only named here (`streamed`) and read part by part when its rows are validated."""

    source: SourceFile
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    problems: list[pl.DataFrame] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    skipped: pl.DataFrame | None = None
    streamed: bool = False


@dataclass
class _ObservationsRead:
    """The observations of a batch, read and validated part by part (the valid rows went to the
    batch): the quarantine, what each streamed unit's reader rejected and dropped and whether
    it gave rows at all, and counts."""

    quarantined: list[pl.DataFrame] = field(default_factory=list)
    problems: dict[int, list[pl.DataFrame]] = field(default_factory=dict)  # by unit index
    dropped: dict[int, list[str]] = field(default_factory=dict)
    readable: set[int] = field(default_factory=set)
    rows_read: int = 0
    in_the_future: int = 0
    largest_chunk_rows: int = 0


def _read_whole(source: SourceFile, *, site: str | None, encounters: str) -> _Unit:
    """Read a unit with its adapter, except a canonical observations file (read in parts later)."""
    if source.format == "canonical" and table_of(source.path) == "observations":
        return _Unit(source, streamed=True)
    log.info("reading %s (%s)", printable(source.name), source.format)
    tables, problems, dropped, counted = _tidy(read_source(source, site=site, encounters=encounters), source)
    return _Unit(source, tables, [problems] if problems is not None and problems.height else [], dropped, counted)


def _unit_warnings(units: list[_Unit], observations: _ObservationsRead) -> list[str]:
    """One warning per unit that had columns outside the contract dropped, in unit order."""
    warnings = []
    for index, unit in enumerate(units):
        dropped = unit.dropped or observations.dropped.get(index, [])
        if dropped:
            warnings.append(f"{unit.source.name}: dropped {len(dropped)} column(s) outside the contract: {', '.join(dropped)}")
            log.info("%s", printable(warnings[-1]))  # the summary carries it to the person
    return warnings


def _mark_units(units: list[_Unit], observations: _ObservationsRead, rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Note in each unit's row what was skipped and whether it was unreadable (nothing of it could
    be read, its problems in words); returns the skipped counts of all units."""
    skipped: list[dict[str, Any]] = []
    for index, unit in enumerate(units):
        row = rows[unit.source.sha256]
        if unit.skipped is not None and unit.skipped.height:
            skipped += unit.skipped.to_dicts()
            row["skipped"] = unit.skipped.to_dicts()
        readable = bool(unit.tables) or index in observations.readable
        if not readable:
            problems = [*unit.problems, *observations.problems.get(index, [])]
            texts = [quarantine_text(r) for p in problems for r in p.iter_rows(named=True)]
            if len(texts) > PROBLEMS_PER_SOURCE:
                texts = texts[:PROBLEMS_PER_SOURCE] + [f"... and {len(texts) - PROBLEMS_PER_SOURCE:,} more"]
            row.update(status="unreadable", readable=False, problems=texts)
    return skipped


def _tidy(
    frames: dict[str, pl.DataFrame], source: SourceFile
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame | None, list[str], pl.DataFrame | None]:
    """An adapter's frames as table frames (contract and provenance columns only), its rejected
    rows, the names of the columns outside the contract that were dropped, and its skipped counts."""
    frames = dict(frames)
    problems = frames.pop(REJECTED, None)
    counted = frames.pop(SKIPPED, None)
    tables: dict[str, pl.DataFrame] = {}
    dropped: list[str] = []
    extra_rejections: list[pl.DataFrame] = []
    for table, frame in frames.items():
        keep = [*load_contract(table).column_names, SOURCE_FILE, SOURCE_LINE]
        dropped += [c for c in frame.columns if c not in keep and c not in dropped]
        frame = frame.select([c for c in frame.columns if c in keep])
        try:
            require_columns(frame, table, source=source.name)
        except ContractError as exc:
            detail = str(exc).removeprefix(f"{source.name}: ")
            extra_rejections.append(rejected_file(table, source.name, MISSING_COLUMNS, detail, line=None))
            continue
        tables[table] = frame
    if extra_rejections:
        problems = pl.concat([p for p in (problems, *extra_rejections) if p is not None])
    return tables, problems, dropped, counted


def _validate(
    units: list[_Unit], batch: BatchWriter, *, lake: Lake, now: datetime | None, source_timezone: str, chunk_rows: int
) -> tuple[dict[str, Validated], _ObservationsRead]:
    """Validate each table this batch has, against the lake's and the batch's own rows: the small
    tables whole, the observations part by part into `batch` (see _validate_observations)."""
    raw = {t: _concat([u.tables[t] for u in units if t in u.tables]) for t in ("patients", "encounters", "outcomes")}
    results: dict[str, Validated] = {}
    if raw["patients"] is not None:
        results["patients"] = validate_patients(raw["patients"])
    if raw["encounters"] is not None:
        ids = raw["encounters"].select(pl.col("encounter_id").cast(pl.String).str.strip_chars().unique())
        results["encounters"] = validate_encounters(
            raw["encounters"],
            source_timezone=source_timezone,
            now=now,
            known_patients=_known_patients(lake, results.get("patients")),
            accepted_observations=_accepted_spans(lake, ids),
        )
    known_encounters = _known_encounters(lake, results.get("encounters"))
    observations = _validate_observations(
        units, batch, lake=lake, known_encounters=known_encounters, now=now, source_timezone=source_timezone,
        chunk_rows=chunk_rows,
    )  # fmt: skip
    if raw["outcomes"] is not None:
        results["outcomes"] = validate_outcomes(
            raw["outcomes"], known_encounters=known_encounters, source_timezone=source_timezone, now=now
        )
    return results, observations


def _observation_parts(units: list[_Unit], *, chunk_rows: int) -> Iterator[tuple[int, dict[str, pl.DataFrame]]]:
    """(unit index, frames) of every part of the batch's observations, in unit order: the held
    frames of units read whole in slices of `chunk_rows`, canonical files read in parts."""
    for index, unit in enumerate(units):
        if unit.streamed:
            log.info("reading %s (%s) in parts of %s lines", printable(unit.source.name), unit.source.format, f"{chunk_rows:,}")
            yield from ((index, frames) for frames in read_canonical_parts(unit.source.path, rows_per_part=chunk_rows))
        elif "observations" in unit.tables:
            frame = unit.tables["observations"]
            for offset in range(0, max(frame.height, 1), chunk_rows):
                yield index, {"observations": frame.slice(offset, chunk_rows)}


def _validate_observations(
    units: list[_Unit],
    batch: BatchWriter,
    *,
    lake: Lake,
    known_encounters: pl.DataFrame,
    now: datetime | None,
    source_timezone: str,
    chunk_rows: int,
) -> _ObservationsRead:
    """Validate the batch's observations part by part, as if they were one frame: each part
    against the lake's rows of its encounters and the keys first seen in the earlier parts
    (so a repeat across parts is a duplicate within the batch); valid rows go to `batch`."""
    read = _ObservationsRead()
    first_keys: list[pl.DataFrame] = []
    for index, frames in _observation_parts(units, chunk_rows=chunk_rows):
        unit = units[index]
        if unit.streamed:
            tables, problems, dropped, _ = _tidy(frames, unit.source)
            if problems is not None and problems.height:
                read.problems.setdefault(index, []).append(problems)
            known_dropped = read.dropped.setdefault(index, [])
            known_dropped += [c for c in dropped if c not in known_dropped]
            if "observations" not in tables:
                continue
            read.readable.add(index)
            part = tables["observations"]
        else:
            part = frames["observations"]
        read.rows_read += part.height
        read.largest_chunk_rows = max(read.largest_chunk_rows, part.height)
        ids = part.select(pl.col("encounter_id").cast(pl.String).str.strip_chars().unique())
        existing = (
            lake.scan("observations")
            .join(ids.lazy(), on="encounter_id", how="semi")
            .select("encounter_id", "charttime", "variable")
            .collect()
        )
        earlier = (
            pl.concat([k.lazy() for k in first_keys]).join(ids.lazy(), on="encounter_id", how="semi").collect()
            if first_keys
            else pl.DataFrame(schema={"encounter_id": pl.String, "charttime": UTC_DATETIME, "variable": pl.String})
        )
        result = validate_observations(
            part, encounters=known_encounters, existing_keys=existing, earlier_keys=earlier, source_timezone=source_timezone,
            now=now,
        )  # fmt: skip
        batch.append("observations", result.valid)
        if result.first_keys is not None and result.first_keys.height:
            first_keys.append(result.first_keys)
        if result.quarantined.height:
            read.quarantined.append(result.quarantined)
            read.in_the_future += result.quarantined.filter(pl.col("rule") == "in_the_future").height
    return read


def _known_patients(lake: Lake, batch: Validated | None) -> pl.DataFrame:
    """Every patient an encounter may belong to: the lake's and this batch's."""
    known = lake.scan("patients").select("patient_id").collect()
    if batch is not None and batch.valid.height:
        known = pl.concat([known, batch.valid.select("patient_id")])
    return known.unique()


def _accepted_spans(lake: Lake, encounter_ids: pl.DataFrame) -> pl.DataFrame:
    """First and last charttime of the lake's observations of the given encounters."""
    return (
        lake.scan("observations")
        .join(encounter_ids.lazy(), on="encounter_id", how="semi")
        .group_by("encounter_id")
        .agg(pl.col("charttime").min().alias("first_charttime"), pl.col("charttime").max().alias("last_charttime"))
        .collect()
    )


def _known_encounters(lake: Lake, batch: Validated | None) -> pl.DataFrame:
    """Every encounter an observation may belong to: the lake's, updated by this batch's."""
    columns = ["encounter_id", "admit_time", "discharge_time"]
    known = lake.scan("encounters").select(columns).collect()
    if batch is not None and batch.valid.height:
        known = pl.concat([known, batch.valid.select(columns)]).unique("encounter_id", keep="last", maintain_order=True)
    return known
