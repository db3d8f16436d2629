"""Ingest in bounded chunks: the same lake and quarantine as reading every file whole."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from riskcast.catalog import TABLES
from riskcast.errors import IngestError
from riskcast.lake import Lake
from riskcast.pipeline.ingest import IngestSummary, ingest_paths
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort

TINY = 7  # rows per chunk: a duplicate is often in the chunk after its original


def ingest_both_ways(folder: Path, tmp_path: Path, **options) -> dict[str, tuple[IngestSummary, pl.DataFrame, Lake]]:
    """Ingest `folder` into two fresh lakes: in one chunk, and in chunks of TINY rows."""
    out = {}
    for name, chunk_rows in [("whole", 10**9), ("chunked", TINY)]:
        lake = Lake(tmp_path / f"lake-{name}")
        summary, quarantine = ingest_paths([folder], lake=lake, now=DEFAULT_NOW, chunk_rows=chunk_rows, **options)
        out[name] = (summary, quarantine, lake)
    return out


def assert_same_lake_and_quarantine(runs: dict[str, tuple[IngestSummary, pl.DataFrame, Lake]]) -> None:
    (whole, whole_quarantine, whole_lake), (chunked, chunked_quarantine, chunked_lake) = runs["whole"], runs["chunked"]
    assert chunked.rows_read == whole.rows_read
    assert chunked.accepted == whole.accepted
    assert chunked.quarantined == whole.quarantined
    assert chunked.warnings == whole.warnings
    assert chunked_quarantine.drop("batch_id").equals(whole_quarantine.drop("batch_id"))
    for table in TABLES:
        assert chunked_lake.scan(table).drop("batch_id").collect().equals(whole_lake.scan(table).drop("batch_id").collect()), table


def with_junk_lines(path: Path) -> None:
    """Add a ragged line, an unclosed quote, a line that is not UTF-8, a blank line and a repeated row."""
    lines = path.read_bytes().split(b"\n")
    lines[5:5] = [b"E0000001,2026-01-01T00:00:00Z,heart_rate,80,/min,ward-obs,extra", b""]
    lines[12:12] = [b'E0000001,"2026-01-01T00:00:00Z,heart_rate,80,/min,ward-obs', lines[11], b"E0000001,\xff\xfe,sbp,1,mmHg,x"]
    path.write_bytes(b"\n".join(lines))


@pytest.fixture(scope="module")
def cohort() -> dict[str, pl.DataFrame]:
    """A few encounters, with 250 observation rows among which the malformed rows and duplicates."""
    tables = generate_cohort(30, seed=11, malformed_rate=0.05)
    return tables | {"observations": tables["observations"].head(250)}


def test_chunked_csv_ingest_keeps_the_same_rows_rejects_and_line_numbers(cohort: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    folder = tmp_path / "cohort"
    write_cohort(cohort, folder, fmt="csv")
    with_junk_lines(folder / "observations.csv")
    runs = ingest_both_ways(folder, tmp_path)
    assert_same_lake_and_quarantine(runs)
    summary, quarantine, _ = runs["chunked"]
    rules = set(quarantine.filter(pl.col("table") == "observations")["rule"])
    assert {"duplicate", "malformed_line", "unknown_unit", "out_of_range"} <= rules
    malformed = quarantine.filter(pl.col("rule") == "malformed_line")["source_line"].to_list()
    assert malformed == [6, 13, 15]  # the file's own line numbers (the header is line 1)
    assert summary.largest_chunk_rows <= TINY
    assert runs["whole"][0].largest_chunk_rows == summary.rows_read["observations"]


def test_chunked_parquet_and_gzip_ingest_keep_the_same_rows_and_rejects(cohort: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    folder = tmp_path / "cohort"
    write_cohort(cohort, folder, fmt="parquet")
    (folder / "observations.parquet").rename(folder / "observations-a.parquet")
    # A second file of the same table, gzipped CSV, repeating rows of the first: duplicates across files and chunks.
    repeated = cohort["observations"].slice(3, 20)
    (folder / "observations-b.csv.gz").write_bytes(gzip.compress(repeated.write_csv().encode()))
    runs = ingest_both_ways(folder, tmp_path)
    assert_same_lake_and_quarantine(runs)
    summary, quarantine, _ = runs["chunked"]
    from_b = quarantine.filter(pl.col("source_file") == "observations-b.csv.gz")
    assert from_b.height == repeated.height and set(from_b["rule"]) <= {"duplicate", "unknown_unit", "out_of_range",
                                                                          "unparseable_value", "unparseable_time", "unknown_variable"}  # fmt: skip
    assert summary.largest_chunk_rows <= TINY


def test_chunked_ingest_tells_repeats_in_the_batch_from_repeats_of_the_lake(cohort: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    first = tmp_path / "first"
    write_cohort(cohort, first, fmt="csv")
    clean = cohort["observations"].head(40)
    # Rows 0-9 are in the lake already; rows 10-19 repeat later in the same file.
    second = tmp_path / "second"
    second.mkdir()
    pl.concat([clean.slice(0, 10), clean.slice(10, 10), clean.slice(10, 10), clean.slice(0, 10)]).write_csv(
        second / "observations.csv"
    )
    results = {}
    for name, chunk_rows in [("whole", 10**9), ("chunked", TINY)]:
        lake = Lake(tmp_path / f"lake-{name}")
        ingest_paths([first / "patients.csv", first / "encounters.csv"], lake=lake, now=DEFAULT_NOW)
        ingest_paths([first / "observations.csv"], lake=lake, now=DEFAULT_NOW, chunk_rows=chunk_rows)
        results[name] = ingest_paths([second], lake=lake, now=DEFAULT_NOW, chunk_rows=chunk_rows)[1]
    assert results["chunked"].drop("batch_id").equals(results["whole"].drop("batch_id"))
    details = results["chunked"].filter(pl.col("rule") == "duplicate")["detail"].to_list()
    assert "already in the lake from an earlier batch" in details
    assert "the same encounter, charttime and variable appears earlier in this batch" in details


def test_observations_outside_their_encounter_are_quarantined_in_every_chunk(tmp_path: Path) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    pl.DataFrame({"patient_id": ["P1"], "birth_year": ["1950"], "sex": ["female"], "site": ["north"]}).write_csv(
        folder / "patients.csv"
    )
    pl.DataFrame({
        "encounter_id": ["E1"], "patient_id": ["P1"], "admit_time": ["2026-01-10T08:00:00Z"],
        "discharge_time": ["2026-01-11T08:00:00Z"], "ward": ["north-medical-1"], "site": ["north"],
    }).write_csv(folder / "encounters.csv")  # fmt: skip
    hours = list(range(0, 60, 2))  # from admission to well past the discharge
    pl.DataFrame({
        "encounter_id": ["E1"] * len(hours) + ["E9"],
        "charttime": [f"2026-01-{10 + (8 + h) // 24:02d}T{(8 + h) % 24:02d}:00:00Z" for h in hours] + ["2026-01-10T09:00:00Z"],
        "variable": ["heart_rate"] * (len(hours) + 1), "value": ["80"] * (len(hours) + 1),
        "unit": ["/min"] * (len(hours) + 1), "source": ["ward-obs"] * (len(hours) + 1),
    }).write_csv(folder / "observations.csv")  # fmt: skip
    runs = ingest_both_ways(folder, tmp_path)
    assert_same_lake_and_quarantine(runs)
    counts = runs["chunked"][0].quarantined["observations"]
    assert counts["unknown_encounter"] == 1 and counts["outside_encounter"] > 0


def test_a_file_rejected_whole_for_a_late_nul_byte_is_rejected_whole_in_chunks(tmp_path: Path, cohort: dict[str, pl.DataFrame]) -> None:
    folder = tmp_path / "cohort"
    write_cohort(cohort, folder, fmt="csv")
    path = folder / "observations.csv"
    path.write_bytes(path.read_bytes() + b"E0000001,2026-01-01T00:00:00Z,heart_rate,8\x000,/min,x\n")
    runs = ingest_both_ways(folder, tmp_path)
    assert_same_lake_and_quarantine(runs)
    summary = runs["chunked"][0]
    assert summary.quarantined["observations"] == {"unreadable_file": 1}
    assert [s["status"] for s in summary.sources if s["path"].endswith("observations.csv")] == ["unreadable"]


def test_dates_shifted_far_ahead_are_read_alike_in_chunks(tmp_path: Path, cohort: dict[str, pl.DataFrame]) -> None:
    folder = tmp_path / "cohort"
    future = generate_cohort(20, seed=2, malformed_rate=0.0, now=datetime(2150, 3, 1, tzinfo=timezone.utc))
    future = future | {"observations": future["observations"].head(200)}
    write_cohort(future, folder, fmt="csv")
    runs = ingest_both_ways(folder, tmp_path)
    assert_same_lake_and_quarantine(runs)
    assert any("shifted" in w for w in runs["chunked"][0].warnings)
    assert runs["chunked"][0].accepted["observations"] == future["observations"].height


def test_chunk_rows_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="chunk_rows must be a positive whole number, got 0"):
        ingest_paths([tmp_path], lake=Lake(tmp_path / "lake"), now=DEFAULT_NOW, chunk_rows=0)


def test_a_parquet_file_corrupt_part_of_the_way_through_is_rejected_whole_and_the_rest_go_on(
    tmp_path: Path, cohort: dict[str, pl.DataFrame]
) -> None:
    folder = tmp_path / "cohort"
    write_cohort(cohort, folder, fmt="parquet")
    path = folder / "observations.parquet"
    cohort["observations"].write_parquet(path, row_group_size=50, compression="zstd", statistics=False)
    page = pq.ParquetFile(path).metadata.row_group(3).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[page:page + 16] = b"\xff" * 16  # the fourth row group's first page header: the footer and groups 1-3 stay whole
    path.write_bytes(bytes(data))
    summary, quarantine = ingest_paths([folder], lake=Lake(tmp_path / "lake"), now=DEFAULT_NOW, chunk_rows=TINY)
    whole_file = quarantine.filter(pl.col("source_file") == "observations.parquet")
    assert whole_file.height == 1 and whole_file["rule"][0] == "unreadable_file" and whole_file["source_line"][0] is None
    assert summary.accepted.get("observations", 0) == 0
    assert summary.accepted["encounters"] > 0 and summary.accepted["patients"] > 0
