"""What an adapter judged itself: rows it rejects into the quarantine, rows it counts and skips.

Beside the canonical tables, an adapter's frames may hold two more, under the keys REJECTED
and SKIPPED. Rejected rows are quarantine rows (riskcast.contracts' QUARANTINE_SCHEMA) for
input only the adapter can judge: a file that cannot be read at all (empty, binary, not
UTF-8, a header without the contract's columns: `unreadable_file`, `missing_columns`), a line
that does not split into the header's fields (`malformed_line`), and the cases below. The
contracts never see these; ingest quarantines them with the rest, so one bad file or line
never stops the others. A detail names the problem and never quotes the file: no cell, no
identifier, no library message that might echo the content.

Most bad input is caught by riskcast.contracts. Some only the adapter can see: a FHIR line
that is not a resource, an Observation whose subject is not in the export, an Encounter
that is part of one that does not exist. An adapter returns those as quarantine rows of its
own under the key REJECTED (the same columns as the contract's quarantine: table, file,
line, rule, detail, record), and the ingest pipeline adds them to the batch's quarantine.

Standard datasets also hold much that is not a vital sign or a lab result at all —
diagnoses, procedures, medications, outpatient weights — and codes riskcast does not use.
Quarantining them would bury the real problems under hundreds of thousands of rows, so an
adapter counts them instead, by table, rule and family (the code's vocabulary or prefix),
under the key SKIPPED; the counts go into the ingest summary and the batch manifest.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from riskcast.contracts import QUARANTINE_SCHEMA, SOURCE_FILE, SOURCE_LINE

REJECTED = "_rejected"
"""The key of the rejected rows among an adapter's frames."""
SKIPPED = "_skipped"
"""The key of the counts of rows skipped on purpose."""

UNREADABLE_FILE = "unreadable_file"
"""The whole file cannot be read: empty, binary, not UTF-8, a corrupt Parquet file or archive."""

MISSING_COLUMNS = "missing_columns"
"""The file's header lacks a column the contract requires: no row of it can be read."""

MALFORMED_LINE = "malformed_line"
"""One line does not split into the header's fields (a field too many or too few, an unclosed quote)."""

SKIPPED_SCHEMA = {"table": pl.String, "rule": pl.String, "family": pl.String, "rows": pl.Int64}


def empty_rejected() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def empty_skipped() -> pl.DataFrame:
    return pl.DataFrame(schema=SKIPPED_SCHEMA)


def rejected_rows(
    frame: pl.DataFrame, *, table: str, rule: str, detail: str | pl.Expr, record: list[str] | None = None
) -> pl.DataFrame:
    """Quarantine rows for every row of `frame` (which carries _source_file and _source_line).

    record: columns of `frame` kept as the raw record (JSON); identifiers are fine there,
    the quarantine is as private as the lake. The detail must not hold values.
    """
    columns = [c for c in (record or []) if c in frame.columns]
    record_expr = (
        pl.struct([pl.col(c).cast(pl.String) for c in columns]).struct.json_encode()
        if columns
        else pl.lit("{}")
    )
    return frame.select(
        pl.lit(table).alias("table"),
        pl.col(SOURCE_FILE).cast(pl.String).alias("source_file"),
        pl.col(SOURCE_LINE).cast(pl.Int64).alias("source_line"),
        pl.lit(rule).alias("rule"),
        (pl.lit(detail) if isinstance(detail, str) else detail).cast(pl.String).alias("detail"),
        record_expr.alias("record"),
    )


def skipped_counts(frame: pl.DataFrame, *, table: str, rule: str, family: str | pl.Expr) -> pl.DataFrame:
    """Counts of the rows of `frame` by family, as SKIPPED rows."""
    if frame.height == 0:
        return empty_skipped()
    family_expr = pl.lit(family) if isinstance(family, str) else family
    return (
        frame.select(family_expr.cast(pl.String).fill_null("(none)").alias("family"))
        .group_by("family")
        .len("rows")
        .select(pl.lit(table).alias("table"), pl.lit(rule).alias("rule"), "family", pl.col("rows").cast(pl.Int64))
        .sort("family")
    )


def combine(frames: list[pl.DataFrame], *, kind: str) -> pl.DataFrame:
    """Concatenate REJECTED (kind='rejected') or SKIPPED (kind='skipped') frames; counts are summed."""
    if kind == "rejected":
        frames = [f for f in frames if f.height]
        return pl.concat(frames) if frames else empty_rejected()
    frames = [f for f in frames if f.height]
    if not frames:
        return empty_skipped()
    return pl.concat(frames).group_by("table", "rule", "family", maintain_order=True).agg(pl.col("rows").sum())


def provenance(file: str | pl.Expr, line: str | pl.Expr) -> list[pl.Expr]:
    """The two provenance columns from a file label and a line column."""
    file_expr = pl.lit(file) if isinstance(file, str) else file
    line_expr = pl.col(line) if isinstance(line, str) else line
    return [file_expr.cast(pl.String).alias(SOURCE_FILE), line_expr.cast(pl.Int64).alias(SOURCE_LINE)]


def rejected_lines(
    table: str,
    source_file: str,
    lines: Sequence[int | None],
    rules: Sequence[str],
    details: Sequence[str],
) -> pl.DataFrame:
    """Quarantine rows for lines of one file an adapter rejected, one per (line, rule, detail);
    the record is "{}" (the file and line say where to look).

    A line of None means the file as a whole, where it has no lines (Parquet, an archive).
    """
    height = len(lines)
    return pl.DataFrame(
        {
            "table": [table] * height,
            "source_file": [source_file] * height,
            "source_line": list(lines),
            "rule": list(rules),
            "detail": list(details),
            "record": ["{}"] * height,
        },
        schema=QUARANTINE_SCHEMA,
    )


def rejected_file(table: str, source_file: str, rule: str, detail: str, *, line: int | None = 1) -> pl.DataFrame:
    """One quarantine row rejecting a whole file (at its first line, or None for no lines)."""
    return rejected_lines(table, source_file, [line], [rule], [detail])
