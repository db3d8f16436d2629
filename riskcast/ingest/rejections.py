"""What an adapter hands back for input it could not turn into rows at all.

Beside the canonical tables, an adapter's frames may hold one more under the key `REJECTED`:
quarantine rows (riskcast.contracts' QUARANTINE_SCHEMA) for a file that cannot be read (empty,
binary, not UTF-8, a header without the contract's columns) or a line that does not split into
the header's fields. The contracts never see these; ingest quarantines them with the rest, so
one bad file or line never stops the others.

A detail names the file's problem and never quotes the file: no cell, no identifier, no
library message that might echo the content. A rejected row's `record` is "{}" for the same
reason; the file and line say where to look.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from riskcast.contracts import QUARANTINE_SCHEMA

REJECTED = "rejected"
"""The key of the rejected rows among an adapter's frames."""

UNREADABLE_FILE = "unreadable_file"
"""The whole file cannot be read: empty, binary, not UTF-8, a corrupt Parquet file or archive."""

MISSING_COLUMNS = "missing_columns"
"""The file's header lacks a column the contract requires: no row of it can be read."""

MALFORMED_LINE = "malformed_line"
"""One line does not split into the header's fields (a field too many or too few, an unclosed quote)."""


def rejected_rows(
    table: str,
    source_file: str,
    lines: Sequence[int | None],
    rules: Sequence[str],
    details: Sequence[str],
) -> pl.DataFrame:
    """Quarantine rows for input an adapter rejected, one per (line, rule, detail).

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
    return rejected_rows(table, source_file, [line], [rule], [detail])
