"""Ingest: read sources, validate them against the contracts, commit one lake batch.

Re-ingesting a source whose content was ingested before is a no-op. Bad rows are
quarantined with their rule and source line; the good rows go on. The summary says how
many of each, and never shows a patient's values.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from riskcast.catalog import TABLES
from riskcast.contracts import (
    Validated,
    empty_quarantine,
    require_columns,
    validate_encounters,
    validate_observations,
    validate_outcomes,
    validate_patients,
)
from riskcast.errors import IngestError
from riskcast.ingest import REJECTED, SKIPPED, SourceFile, discover, read_source
from riskcast.lake import Lake, new_batch_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSummary:
    """What one `riskcast ingest` did."""

    batch_id: str | None
    sources: list[dict[str, Any]]
    rows_read: dict[str, int]
    accepted: dict[str, int]
    quarantined: dict[str, dict[str, int]]
    examples: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # table, rule, family, rows (see ingest.rejects)

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
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "total_accepted": self.total_accepted,
            "total_quarantined": self.total_quarantined,
            "examples": self.examples,
            "skipped": self.skipped,
            "total_skipped": sum(row["rows"] for row in self.skipped),
        }


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
) -> tuple[IngestSummary, pl.DataFrame]:
    """Ingest the given files/folders (or an OMOP database URL) as one batch; returns the
    summary and the quarantine.

    format: canonical, physionet, meds, fhir or omop; None recognises each path by its layout.
    encounters: what a stay is for MEDS, FHIR and OMOP: "hospital" admissions or "icu" stays.
    Holds the lake's write lock from the check of what was already ingested to the commit,
    so a concurrent ingest neither takes the same files again nor accepts the same rows."""
    sources = discover(list(paths), format=format)
    with lake.writing():
        return _ingest_sources(
            sources, paths, lake=lake, now=now, source_timezone=source_timezone, site=site, encounters=encounters
        )


def _ingest_sources(
    sources: list[SourceFile],
    paths: list[Path],
    *,
    lake: Lake,
    now: datetime,
    source_timezone: str,
    site: str | None,
    encounters: str = "hospital",
) -> tuple[IngestSummary, pl.DataFrame]:
    seen = lake.seen_hashes()
    new_sources: list[SourceFile] = []
    source_rows: list[dict[str, Any]] = []
    for source in sources:
        status = "already ingested" if source.sha256 in seen else "new"
        source_rows.append(
            {"path": source.display, "format": source.format, "sha256": source.sha256, "status": status,
             "batch_id": seen.get(source.sha256)}
        )
        if status == "new" and source.sha256 not in {s.sha256 for s in new_sources}:
            new_sources.append(source)
    if not new_sources:
        return IngestSummary(None, source_rows, {}, {}, {}), empty_quarantine().with_columns(
            pl.lit(None, dtype=pl.String).alias("batch_id")
        )

    by_table: dict[str, list[pl.DataFrame]] = defaultdict(list)
    rejected: list[pl.DataFrame] = []  # quarantine rows an adapter judged itself
    skipped: list[dict[str, Any]] = []
    for source in new_sources:
        log.info("reading %s (%s)", source.name, source.format)
        frames = read_source(source, site=site, encounters=encounters)
        judged, counted = frames.pop(REJECTED, None), frames.pop(SKIPPED, None)
        if judged is not None and judged.height:
            rejected.append(judged)
        if counted is not None and counted.height:
            rows = counted.to_dicts()
            skipped += rows
            next(s for s in source_rows if s["sha256"] == source.sha256)["skipped"] = rows
        for table, frame in frames.items():
            require_columns(frame, table, source=source.name)
            by_table[table].append(frame)
    raw = {t: _concat(by_table.get(t, [])) for t in TABLES}
    rows_read = {t: (f.height if f is not None else 0) for t, f in raw.items()}
    for judged in rejected:
        for table, count in judged.group_by("table").len().iter_rows():
            rows_read[table] = rows_read.get(table, 0) + int(count)
    if sum(rows_read.values()) == 0:
        raise IngestError(f"nothing could be read from {', '.join(str(p) for p in paths)}: the files hold no rows")

    results: dict[str, Validated] = {}
    if raw["patients"] is not None:
        results["patients"] = validate_patients(raw["patients"])
    if raw["encounters"] is not None:
        results["encounters"] = validate_encounters(raw["encounters"], source_timezone=source_timezone)

    known_encounters = _known_encounters(lake, results.get("encounters"))
    if raw["observations"] is not None:
        batch_encounters = raw["observations"].select(pl.col("encounter_id").cast(pl.String).str.strip_chars().unique())
        existing = (
            lake.scan("observations")
            .join(batch_encounters.lazy(), on="encounter_id", how="semi")
            .select("encounter_id", "charttime", "variable")
            .collect()
        )
        results["observations"] = validate_observations(
            raw["observations"], encounters=known_encounters, existing_keys=existing, source_timezone=source_timezone
        )
    if raw["outcomes"] is not None:
        results["outcomes"] = validate_outcomes(
            raw["outcomes"], known_encounters=known_encounters, source_timezone=source_timezone
        )

    quarantine = pl.concat([*rejected, *(r.quarantined for r in results.values())]) if results or rejected else empty_quarantine()
    batch_id = new_batch_id(now, [s.sha256 for s in new_sources])
    manifest = lake.commit_batch(
        batch_id,
        {t: r.valid for t, r in results.items()},
        quarantine,
        sources=[s for s in source_rows if s["status"] == "new"],
        created_at=now,
    )
    examples = [
        f"{row['source_file']} line {row['source_line']}: {row['rule']}: {row['detail']}"
        for row in quarantine.head(5).iter_rows(named=True)
    ]
    log.info("batch %s: %d rows accepted, %d quarantined", batch_id, sum(manifest.accepted.values()), quarantine.height)
    summary = IngestSummary(
        batch_id=batch_id,
        sources=source_rows,
        rows_read=rows_read,
        accepted=manifest.accepted,
        quarantined=manifest.quarantined,
        examples=examples,
        skipped=skipped,
    )
    return summary, quarantine.with_columns(pl.lit(batch_id).alias("batch_id"))


def _known_encounters(lake: Lake, batch: Validated | None) -> pl.DataFrame:
    """Every encounter an observation may belong to: the lake's, updated by this batch's."""
    columns = ["encounter_id", "admit_time", "discharge_time"]
    known = lake.scan("encounters").select(columns).collect()
    if batch is not None and batch.valid.height:
        known = pl.concat([known, batch.valid.select(columns)]).unique("encounter_id", keep="last", maintain_order=True)
    return known
