"""What a value read from a report reads as on the data scientists' pages: a finite number,
an integer, text or a mapping, else None (or empty). A number that is not there (a missing
key, JSON null, text, NaN) reads as null, never as zero. Shared by model_report and
fairness_report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import polars as pl

UTC = pl.Datetime("us", "UTC")


def number_or_none(value: Any) -> float | None:
    """A finite float, else None (missing keys, JSON null, text, NaN all read as None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def integer_or_none(value: Any) -> int | None:
    """number_or_none truncated to an int (counts in a report), else None."""
    number = number_or_none(value)
    return None if number is None else int(number)


def text_or_none(value: Any) -> str | None:
    """`value` as text; None stays None (never the string "None")."""
    return None if value is None else str(value)


def mapping_or_empty(value: Any) -> Mapping[str, Any]:
    """`value` when it is a mapping, else an empty one (a summary field that is absent or malformed)."""
    return value if isinstance(value, Mapping) else {}


def records_frame(rows: list[dict[str, Any]], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Rows as dicts, as a frame of exactly `schema` (a key a row lacks is null; an empty list has
    the same columns and types as a full one)."""
    return pl.DataFrame([{name: row.get(name) for name in schema} for row in rows], schema=dict(schema), orient="row")


__all__ = [
    "UTC",
    "integer_or_none",
    "mapping_or_empty",
    "number_or_none",
    "records_frame",
    "text_or_none",
]
