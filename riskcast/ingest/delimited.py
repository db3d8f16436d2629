"""Delimited text (CSV) split into fields line by line, so that one bad line never costs the file.

`read_delimited` takes a file's bytes and the contract's column names and returns the data
lines as text columns named by the header, each with its line number, and the lines (or the
file) it could not read, each with a rule and a detail that never quotes the file.

- The file must be UTF-8 text (a byte-order mark is fine). An empty file, one holding NUL
  bytes (binary files, UTF-16 text) or one whose header is not UTF-8 is rejected whole; a data
  line that is not UTF-8 is rejected alone.
- The header is line 1. Fields are separated by commas, or by semicolons, tabs or `|` when
  that is what splits the header into the contract's columns. A header without the required
  columns rejects the file (`missing_columns`), naming the columns it lacks, never its text.
- A record is one line: a field may be quoted to hold the delimiter or a doubled quote, but a
  line break never continues a record (no canonical column holds one), so an unclosed quote
  costs its own line and nothing after it. A line with more or fewer fields than the header
  is rejected with its number (`malformed_line`); the lines around it go on.
- Blank lines are skipped; `\\r\\n` line ends are fine. Cells are kept as text, untrimmed:
  the contracts trim and type them.

Lines without a quote, nearly all of them, are split in polars; the few with a quote go
through Python's csv module one line at a time. `read_delimited_parts` reads a file in parts
of at most a given number of lines, with the same rows, rejects and line numbers.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import polars as pl

from riskcast.contracts import SOURCE_LINE
from riskcast.ingest.rejects import MALFORMED_LINE, MISSING_COLUMNS, UNREADABLE_FILE

DELIMITERS = (",", ";", "\t", "|")
_QUOTE = '"'
_REPLACEMENT = "\ufffd"
_LINE = "__line"
_TEXT = "__text"


@dataclass(frozen=True)
class DelimitedRows:
    """What `read_delimited` read: the rows, and what it rejected as (line, rule, detail).

    `rows` is None when the whole file was rejected; otherwise it has the header's columns as
    text (renamed to be unique) and SOURCE_LINE, in line order.
    """

    rows: pl.DataFrame | None
    rejected: list[tuple[int, str, str]]
    delimiter: str = ","


def read_delimited(data: bytes, *, required: Sequence[str], expected: Sequence[str], table: str) -> DelimitedRows:
    """Split a delimited file's bytes into rows and rejected lines (see the module docstring).

    required: the columns the header must name; expected: every contract column (for the message).
    """
    if not data.strip():
        return _whole(UNREADABLE_FILE, f"the file is empty; expected a header line naming the {table} columns")
    if b"\x00" in data:
        return _whole(UNREADABLE_FILE, "the file is not UTF-8 text (it holds NUL bytes); save it as UTF-8 CSV")
    try:
        text = data.decode("utf-8-sig")
        not_utf8 = False
    except UnicodeDecodeError:
        text = data.decode("utf-8-sig", errors="replace")
        not_utf8 = True
    header_line = text.partition("\n")[0].rstrip("\r")
    layout = _layout(header_line, not_utf8, required=required, expected=expected)
    if isinstance(layout, DelimitedRows):
        return layout
    return _rows_of(_data_lines(text), layout)


BLOCK_BYTES = 1 << 24
"""How much of a file the first pass of `read_delimited_parts` reads at once."""


def read_delimited_parts(
    open_file: Callable[[], BinaryIO],
    *,
    required: Sequence[str],
    expected: Sequence[str],
    table: str,
    lines_per_part: int,
) -> Iterator[DelimitedRows]:
    """`read_delimited` of a file too big to hold: what it would return, in parts of at most
    `lines_per_part` lines (the header apart), with the file's own line numbers.

    open_file opens the file's bytes from the start (a gzip stream is fine); it is called
    twice: a first pass checks what rejects the whole file wherever it lies (NUL bytes, no
    text at all, whether every line is UTF-8), then the lines are read part by part. A
    rejected file is one DelimitedRows with no rows; otherwise there is at least one part.
    An error reading the file (OSError, a corrupt gzip stream) is raised from the first pass.
    """
    has_text, has_nul, not_utf8 = _survey(open_file)
    if not has_text:
        yield _whole(UNREADABLE_FILE, f"the file is empty; expected a header line naming the {table} columns")
        return
    if has_nul:
        yield _whole(UNREADABLE_FILE, "the file is not UTF-8 text (it holds NUL bytes); save it as UTF-8 CSV")
        return
    errors = "replace" if not_utf8 else "strict"
    with open_file() as handle:
        header_line = handle.readline().decode("utf-8-sig", errors=errors).rstrip("\n").rstrip("\r")
        layout = _layout(header_line, not_utf8, required=required, expected=expected)
        if isinstance(layout, DelimitedRows):
            yield layout
            return
        first_line = 2
        while True:
            lines = list(itertools.islice(handle, lines_per_part))
            if not lines and first_line > 2:
                return
            text = b"".join(lines).decode("utf-8", errors=errors)
            yield _rows_of(_data_lines(text, first_line=first_line), layout)
            first_line += len(lines)
            if len(lines) < lines_per_part:
                return


def _survey(open_file: Callable[[], BinaryIO]) -> tuple[bool, bool, bool]:
    """(holds any non-blank byte, holds a NUL byte, is not all UTF-8) of a whole file, block by block."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    has_text = has_nul = not_utf8 = False
    with open_file() as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            has_text = has_text or bool(block.strip())
            has_nul = has_nul or b"\x00" in block
            if not not_utf8:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    not_utf8 = True
    if not not_utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            not_utf8 = True
    return has_text, has_nul, not_utf8


@dataclass(frozen=True)
class _Layout:
    """What the header says: the delimiter and the (unique) column names; whether lines may not be UTF-8."""

    delimiter: str
    names: list[str]
    not_utf8: bool


def _layout(header_line: str, not_utf8: bool, *, required: Sequence[str], expected: Sequence[str]) -> _Layout | DelimitedRows:
    """The layout the header gives, or the whole file rejected for its header."""
    if not_utf8 and _REPLACEMENT in header_line:
        return _whole(UNREADABLE_FILE, "the header (line 1) is not UTF-8 text; save the file as UTF-8 CSV")
    delimiter, header = _header(header_line, required)
    if delimiter is None:
        missing = [c for c in required if c not in header]
        return _whole(
            MISSING_COLUMNS,
            f"header (line 1) lacks column(s) {', '.join(missing)}; expected columns: {', '.join(expected)}",
        )
    repeated = sorted({c for c in header if header.count(c) > 1 and c in expected})
    if repeated:
        return _whole(UNREADABLE_FILE, f"header (line 1) names column(s) {', '.join(repeated)} more than once")
    return _Layout(delimiter, _unique(header), not_utf8)


def _rows_of(lines: pl.DataFrame, layout: _Layout) -> DelimitedRows:
    """Data lines (numbered) split into rows by the layout, and the lines rejected."""
    names, delimiter = layout.names, layout.delimiter
    rejected: list[tuple[int, str, str]] = []
    if layout.not_utf8:
        bad = lines.filter(pl.col(_TEXT).str.contains(_REPLACEMENT, literal=True))
        rejected += [(n, MALFORMED_LINE, "line is not UTF-8 text") for n in bad[_LINE].to_list()]
        lines = lines.filter(~pl.col(_TEXT).str.contains(_REPLACEMENT, literal=True))
    quoted = pl.col(_TEXT).str.contains(_QUOTE, literal=True)
    plain, rejected_plain = _split_plain(lines.filter(~quoted), names, delimiter)
    parsed, rejected_quoted = _split_quoted(lines.filter(quoted), names, delimiter)
    rejected += rejected_plain + rejected_quoted
    rows = pl.concat([plain, parsed], how="vertical") if parsed.height else plain
    if parsed.height:
        rows = rows.sort(SOURCE_LINE)
    return DelimitedRows(rows, sorted(rejected), delimiter)


def _whole(rule: str, detail: str) -> DelimitedRows:
    return DelimitedRows(None, [(1, rule, detail)])


def _header(line: str, required: Sequence[str]) -> tuple[str | None, list[str]]:
    """The delimiter that splits the header into the required columns, and the header's names.

    Without one, (None, the names split at commas) so that the caller can say what is missing.
    """
    by_comma: list[str] = []
    for delimiter in DELIMITERS:
        try:
            fields = next(csv.reader([line], delimiter=delimiter, strict=True), [])
        except csv.Error:
            continue
        names = [f.strip() for f in fields]
        if delimiter == ",":
            by_comma = names
        if set(required) <= set(names):
            return delimiter, names
    return None, by_comma


def _unique(names: list[str]) -> list[str]:
    """Header names made unique and non-empty (columns outside the contract are dropped later)."""
    unique: list[str] = []
    for position, name in enumerate(names, start=1):
        candidate = name or f"column_{position}"
        suffix = 2
        while candidate in unique:
            candidate = f"{name or f'column_{position}'}_{suffix}"
            suffix += 1
        unique.append(candidate)
    return unique


def _data_lines(text: str, *, first_line: int = 1) -> pl.DataFrame:
    """Every non-blank line after the header, with its number (the header is line 1; `text`
    starts at line `first_line`)."""
    return (
        pl.DataFrame({_TEXT: [text]})
        .select(pl.col(_TEXT).str.split("\n"))
        .explode(_TEXT)
        .with_row_index(_LINE, offset=first_line)
        .with_columns(pl.col(_LINE).cast(pl.Int64), pl.col(_TEXT).str.strip_chars_end("\r"))
        .filter((pl.col(_LINE) > 1) & (pl.col(_TEXT).str.strip_chars() != ""))
    )


def _split_plain(lines: pl.DataFrame, names: list[str], delimiter: str) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """Lines without quotes, split at the delimiter in polars."""
    width = len(names)
    counted = lines.with_columns((pl.col(_TEXT).str.count_matches(delimiter, literal=True) + 1).alias("__fields"))
    wrong = counted.filter(pl.col("__fields") != width)
    rejected = [
        (line, MALFORMED_LINE, f"line has {fields} fields; the header has {width}")
        for line, fields in wrong.select(_LINE, "__fields").iter_rows()
    ]
    good = counted.filter(pl.col("__fields") == width)
    fields = good.select(
        pl.col(_LINE).alias(SOURCE_LINE),
        pl.col(_TEXT).str.split_exact(delimiter, width - 1).struct.rename_fields(names).alias("__fields"),
    ).unnest("__fields")
    return fields.select(*names, SOURCE_LINE), rejected


def _split_quoted(lines: pl.DataFrame, names: list[str], delimiter: str) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """Lines holding a quote, each read by the csv module on its own (strict about quotes)."""
    width = len(names)
    rows: list[list[str]] = []
    numbers: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    for line, text in lines.select(_LINE, _TEXT).iter_rows():
        try:
            fields = next(csv.reader([text], delimiter=delimiter, strict=True))
        except csv.Error:
            rejected.append(
                (line, MALFORMED_LINE, "a quote on this line is not closed, or a quoted field is followed by text")
            )
            continue
        if len(fields) != width:
            rejected.append((line, MALFORMED_LINE, f"line has {len(fields)} fields; the header has {width}"))
            continue
        rows.append(fields)
        numbers.append(line)
    frame = pl.DataFrame(rows, schema={n: pl.String for n in names}, orient="row") if rows else pl.DataFrame(
        schema={n: pl.String for n in names}
    )
    return frame.with_columns(pl.Series(SOURCE_LINE, numbers, dtype=pl.Int64)), rejected

