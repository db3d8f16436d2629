"""The canonical adapter: CSV or Parquet files named after their table.

A folder may hold `patients`, `encounters`, `observations` and `outcomes` as `.csv`,
`.csv.gz` or `.parquet`; a single file is read if its name says which table it is.
CSV is read as text so that nothing is coerced before the contract sees it; a row's
`_source_line` is its line in the file (the header is line 1). Parquet rows are numbered
from 1.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from riskcast.catalog import TABLES
from riskcast.contracts import SOURCE_FILE, SOURCE_LINE
from riskcast.errors import IngestError

SUFFIXES = (".csv", ".csv.gz", ".parquet")


def table_of(path: Path) -> str | None:
    """The canonical table a file holds, from its name (observations.csv -> observations)."""
    name = path.name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            for table in TABLES:
                if stem == table or stem.startswith(f"{table}-") or stem.startswith(f"{table}_"):
                    return table
    return None


def canonical_files(path: Path) -> list[Path]:
    """The table files a path names: the file itself, or the table files in a folder (sorted)."""
    if not path.exists():
        raise IngestError(f"{path}: no such file or folder")
    if path.is_file():
        if table_of(path) is None:
            raise IngestError(
                f"{path.name}: cannot tell which table this file holds; name it after one of "
                f"{', '.join(TABLES)} with a .csv or .parquet suffix"
            )
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and table_of(p) is not None)
    if not files:
        raise IngestError(
            f"{path}: no table files found; expected files named {', '.join(t + '.csv' for t in TABLES)} "
            "(or .parquet)"
        )
    return files


def read_canonical_file(path: Path) -> tuple[str, pl.DataFrame]:
    """Read one table file as a source frame with provenance columns."""
    table = table_of(path)
    if table is None:
        raise IngestError(f"{path.name}: cannot tell which table this file holds")
    if path.stat().st_size == 0:
        raise IngestError(f"{path.name}: the file is empty; expected a header line naming the {table} columns")
    try:
        if path.name.lower().endswith(".parquet"):
            frame = pl.read_parquet(path)
            first_line = 1
        else:
            frame = pl.read_csv(path, infer_schema=False, empty_string_is_null=True, truncate_ragged_lines=False)
            first_line = 2
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path.name}: cannot be read as {'Parquet' if path.suffix == '.parquet' else 'CSV'} ({exc})") from exc
    frame = frame.rename({c: c.strip() for c in frame.columns})
    return table, frame.with_columns(
        pl.lit(path.name).alias(SOURCE_FILE),
        pl.int_range(first_line, frame.height + first_line, dtype=pl.Int64).alias(SOURCE_LINE),
    )
