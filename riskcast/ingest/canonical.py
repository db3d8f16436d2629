"""The canonical adapter: CSV or Parquet files named after their table.

A folder may hold `patients`, `encounters`, `observations` and `outcomes` as `.csv`,
`.csv.gz` or `.parquet` (also `observations-2024-01.csv` or `observations_a.parquet`); a
single file is read if its name says which table it is. Other files, and anything in a
subfolder, are not read: `canonical_files` lists them as ignored, so the summary can say so.

CSV is read as text (riskcast.ingest.delimited) so that nothing is coerced before the
contract sees it; a row's `_source_line` is its line in the file (the header is line 1).
Parquet rows are numbered from 1. What cannot be read comes back as rejected rows
(riskcast.ingest.rejections): the whole file when it is empty, binary, not UTF-8, corrupt or
lacks a required column, or one line when it does not split into the header's fields.
`read_canonical_parts` reads a big file in parts of a bounded number of rows, with the same
rows, rejects and line numbers as `read_canonical_file`.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow.parquet as pq

from riskcast.catalog import TABLES, load_contract
from riskcast.contracts import SOURCE_FILE, SOURCE_LINE
from riskcast.errors import IngestError
from riskcast.ingest.delimited import DelimitedRows, read_delimited, read_delimited_parts
from riskcast.ingest.rejects import MISSING_COLUMNS, REJECTED, UNREADABLE_FILE, rejected_file, rejected_lines

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


def canonical_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The table files a path names, and the files it holds that are not table files (both sorted).

    A file is itself or nothing; in a folder, table files are read from the top level only,
    and every other file below it (another name, a subfolder's files) is ignored.
    """
    if not path.exists():
        raise IngestError(f"{path}: no such file or folder")
    if path.is_file():
        return ([path], []) if table_of(path) is not None else ([], [path])
    tables, ignored = [], []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        (tables if file.parent == path and table_of(file) is not None else ignored).append(file)
    return tables, ignored


def read_canonical_file(path: Path) -> dict[str, pl.DataFrame]:
    """Read one table file: {table: source frame with provenance columns, REJECTED: what could not be read}.

    The table's frame is missing when the whole file was rejected.
    """
    table = table_of(path)
    if table is None:
        raise IngestError(f"{path.name}: cannot tell which table this file holds")
    if path.name.lower().endswith(".parquet"):
        return _read_parquet(path, table)
    return _read_csv(path, table)


def read_canonical_parts(path: Path, *, rows_per_part: int) -> Iterator[dict[str, pl.DataFrame]]:
    """`read_canonical_file` in parts: frames as it returns them, each part's table frame of at
    most `rows_per_part` rows (a CSV part holds at most that many lines), in file order.

    A file rejected as a whole is one part holding only REJECTED: a Parquet file is decoded
    once before its parts are given (as a CSV file is scanned first), so one corrupt part of
    the way through is rejected whole and the other files go on. Raises IngestError only when
    the file changes between the two passes (its earlier parts cannot be taken back).
    """
    if rows_per_part < 1:
        raise IngestError(f"rows_per_part must be a positive whole number, got {rows_per_part!r}")
    table = table_of(path)
    if table is None:
        raise IngestError(f"{path.name}: cannot tell which table this file holds")
    if path.name.lower().endswith(".parquet"):
        yield from _parquet_parts(path, table, rows_per_part)
    else:
        yield from _csv_parts(path, table, rows_per_part)


def _csv_parts(path: Path, table: str, rows_per_part: int) -> Iterator[dict[str, pl.DataFrame]]:
    contract = load_contract(table)
    gz = path.name.lower().endswith(".gz")

    def open_file() -> BinaryIO:
        return gzip.open(path, "rb") if gz else path.open("rb")  # type: ignore[return-value]

    parts = read_delimited_parts(
        open_file, required=contract.required, expected=contract.column_names, table=table, lines_per_part=rows_per_part
    )
    try:
        first = next(parts)
    except OSError as exc:
        if gz and not isinstance(exc, FileNotFoundError | PermissionError):
            yield {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, "the file cannot be read as gzip", line=None)}
        else:
            yield {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, _os_reason(exc), line=None)}
        return
    except (EOFError, zlib.error):
        yield {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, "the file cannot be read as gzip", line=None)}
        return
    yield _csv_frames(first, path, table)
    for read in parts:
        yield _csv_frames(read, path, table)


def _csv_frames(read: DelimitedRows, path: Path, table: str) -> dict[str, pl.DataFrame]:
    frames: dict[str, pl.DataFrame] = {}
    if read.rows is not None:
        frames[table] = read.rows.with_columns(pl.lit(path.name).alias(SOURCE_FILE))
    if read.rejected:
        lines, rules, details = zip(*read.rejected, strict=True)
        frames[REJECTED] = rejected_lines(table, path.name, lines, rules, details)
    return frames


def _parquet_parts(path: Path, table: str, rows_per_part: int) -> Iterator[dict[str, pl.DataFrame]]:
    contract = load_contract(table)
    try:
        schema = pl.read_parquet_schema(path)
        reader = pq.ParquetFile(path)
    except MemoryError:
        raise
    except OSError as exc:
        yield {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, _os_reason(exc), line=None)}
        return
    except Exception:  # noqa: BLE001 - any reader error: the message may quote the file, so it is not kept
        yield {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, "the file cannot be read as Parquet", line=None)}
        return
    rejected = _parquet_columns_rejected(path, table, {c.strip(): t for c, t in schema.items()})
    if rejected is not None:
        yield {REJECTED: rejected}
        return
    try:
        for _ in pq.ParquetFile(path).iter_batches(batch_size=rows_per_part):
            pass  # decoded and dropped: memory stays one part
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - as above
        yield {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, "the file cannot be read as Parquet", line=None)}
        return
    first_line = 1
    batches = reader.iter_batches(batch_size=rows_per_part)
    while True:
        try:
            batch = next(batches, None)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - as above, the library's message is not kept
            raise IngestError(
                f"{path.name}: the Parquet file changed while it was read (corrupt after row {first_line - 1:,}); "
                "nothing of this ingest was committed: ingest again once it is complete"
            ) from exc
        if batch is None and first_line > 1:
            return
        frame = pl.from_arrow(batch) if batch is not None else pl.from_arrow(reader.schema_arrow.empty_table())
        frame = frame.rename({c: c.strip() for c in frame.columns})
        yield {
            table: frame.with_columns(
                pl.lit(path.name).alias(SOURCE_FILE),
                pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64).alias(SOURCE_LINE),
            )
        }
        first_line += frame.height
        if batch is None:
            return


def _parquet_columns_rejected(path: Path, table: str, schema: dict[str, pl.DataType]) -> pl.DataFrame | None:
    """The whole file rejected for its columns (a required one missing, nested values), or None."""
    contract = load_contract(table)
    missing = [c for c in contract.required if c not in schema]
    if missing:
        detail = f"the file lacks column(s) {', '.join(missing)}; expected columns: {', '.join(contract.column_names)}"
        return rejected_file(table, path.name, MISSING_COLUMNS, detail, line=None)
    nested = [c for c in contract.column_names if c in schema and _not_plain(schema[c])]
    if nested:
        detail = f"column(s) {', '.join(nested)} hold lists, structs or bytes, not plain values"
        return rejected_file(table, path.name, UNREADABLE_FILE, detail, line=None)
    return None


def _read_csv(path: Path, table: str) -> dict[str, pl.DataFrame]:
    contract = load_contract(table)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, _os_reason(exc), line=None)}
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, "the file cannot be read as gzip", line=None)}
    return _csv_frames(read_delimited(data, required=contract.required, expected=contract.column_names, table=table),
                       path, table)


def _read_parquet(path: Path, table: str) -> dict[str, pl.DataFrame]:
    try:
        frame = pl.read_parquet(path)
    except MemoryError:
        raise
    except OSError as exc:
        return {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, _os_reason(exc), line=None)}
    except Exception:  # noqa: BLE001 - any reader error: the message may quote the file, so it is not kept
        return {REJECTED: rejected_file(table, path.name, UNREADABLE_FILE, "the file cannot be read as Parquet", line=None)}
    frame = frame.rename({c: c.strip() for c in frame.columns})
    rejected = _parquet_columns_rejected(path, table, dict(frame.schema))
    if rejected is not None:
        return {REJECTED: rejected}
    return {
        table: frame.with_columns(
            pl.lit(path.name).alias(SOURCE_FILE),
            pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias(SOURCE_LINE),
        )
    }


def _not_plain(dtype: pl.DataType) -> bool:
    return dtype.is_nested() or dtype in (pl.Binary, pl.Object)


def _os_reason(exc: OSError) -> str:
    return f"the file cannot be read ({exc.strerror or type(exc).__name__})"
