"""Turn what a caller hands the model (pandas or polars frames, arrays) into plain numpy.

The model sees only numbers: a float32 matrix in a fixed column order with NaN for
missing, 0/1 labels and one group (patient) id per row. Everything is checked at the
door so that a mistake is reported with the column or argument that caused it, not as
a stack trace from inside a booster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from riskcast.errors import ModelError

_SHOW = 10  # how many column names an error message lists before summarising


def _name_list(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOW])
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return f"{shown}{more}"


def feature_names_of(X: Any) -> list[str]:
    """The column names of X in order; `x0, x1, ...` for a bare 2-D array."""
    if isinstance(X, pl.DataFrame):
        return list(X.columns)
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            raise ModelError("X has duplicate column names; each feature must appear once")
        return names
    if isinstance(X, np.ndarray) and X.ndim == 2:
        return [f"x{i}" for i in range(X.shape[1])]
    raise ModelError(
        f"X must be a pandas or polars DataFrame of numeric features (got {type(X).__name__})"
    )


def float32_matrix(X: Any, feature_names: Sequence[str]) -> np.ndarray:
    """X as a C-ordered float32 array (what the boosters train on) with exactly `feature_names`, in that order.

    Extra columns (keys, metadata) are ignored. Missing columns, non-numeric columns and
    infinite values raise ModelError naming the columns; null and NaN both become NaN,
    which the boosters treat as "not measured".
    """
    names = list(feature_names)
    if isinstance(X, np.ndarray):
        if X.ndim != 2 or X.shape[1] != len(names):
            raise ModelError(
                f"X is an array of shape {X.shape}; expected 2-D with {len(names)} columns "
                "(pass a DataFrame with named columns to be safe)"
            )
        try:
            with np.errstate(over="ignore"):
                matrix = np.ascontiguousarray(X, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"X is not numeric: {exc}") from exc
    elif isinstance(X, pl.DataFrame | pd.DataFrame):
        present = set(feature_names_of(X))
        missing = [n for n in names if n not in present]
        if missing:
            raise ModelError(
                f"X is missing {len(missing)} feature column(s) the model was trained on: "
                f"{_name_list(missing)}"
            )
        if isinstance(X, pl.DataFrame):
            bad = [n for n in names if not (X.schema[n].is_numeric() or X.schema[n] in (pl.Boolean, pl.Null))]
        else:
            columns = {str(c): c for c in X.columns}
            bad = [
                n
                for n in names
                if not (
                    pd.api.types.is_numeric_dtype(X[columns[n]].dtype)
                    or pd.api.types.is_bool_dtype(X[columns[n]].dtype)
                )
            ]
        if bad:
            raise ModelError(f"X has {len(bad)} non-numeric feature column(s): {_name_list(bad)}")
        if isinstance(X, pl.DataFrame):
            matrix = X.select(pl.col(names).cast(pl.Float32)).to_numpy()
        else:
            matrix = X[[columns[n] for n in names]].to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(over="ignore"):
            matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    else:
        feature_names_of(X)  # raises the type error
        raise AssertionError("unreachable")
    infinite = np.isinf(matrix).any(axis=0)
    if infinite.any():
        cols = [names[i] for i in np.flatnonzero(infinite)]
        raise ModelError(
            f"X has infinite values in {len(cols)} column(s): {_name_list(cols)} "
            "(use NaN for a value that is missing or undefined)"
        )
    return matrix


def _as_1d(values: Any, *, name: str, n_rows: int) -> np.ndarray:
    if isinstance(values, pl.Series):
        array = values.to_numpy()
    elif isinstance(values, pd.Series | pd.Index):
        array = values.to_numpy()
    else:
        array = np.asarray(values)
    if array.ndim != 1:
        raise ModelError(f"{name} must be one-dimensional (got shape {array.shape})")
    if len(array) != n_rows:
        raise ModelError(f"{name} has {len(array)} values but X has {n_rows} rows")
    return array


def binary_labels(y: Any, *, n_rows: int) -> np.ndarray:
    """y as an int8 array of 0/1; anything else (NaN, 2, 'yes') raises ModelError."""
    array = _as_1d(y, name="y", n_rows=n_rows)
    try:
        numeric = array.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"y must hold 0/1 labels: {exc}") from exc
    bad = ~np.isin(numeric, (0.0, 1.0))
    if bad.any():
        raise ModelError(f"y must hold only 0 and 1; {int(bad.sum())} row(s) hold something else")
    return numeric.astype(np.int8)


def group_ids(groups: Any, *, n_rows: int) -> np.ndarray:
    """Patient ids, one per row, with no missing values (any hashable type)."""
    array = _as_1d(groups, name="groups", n_rows=n_rows)
    missing = pd.isna(array)
    if missing.any():
        raise ModelError(f"groups (patient ids) has {int(missing.sum())} missing value(s)")
    return array


@dataclass(frozen=True)
class DataFingerprint:
    """What a model was trained on, without the data itself.

    `x_sha256` hashes the float32 feature matrix (C order, the model's column order,
    rows in the order training read them, NaN as stored by numpy); `y_sha256` hashes the labels as int8. Two fits with
    identical data give identical hashes, so a retrain on unchanged data is visible.
    """

    rows: int
    patients: int
    positives: int
    features: int
    x_sha256: str
    y_sha256: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers and strings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataFingerprint:
        """Inverse of to_dict."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def fingerprint(matrix: np.ndarray, y: np.ndarray, groups: np.ndarray) -> DataFingerprint:
    """Counts and content hashes of a training set (no identifiers or values are kept)."""
    return DataFingerprint(
        rows=int(matrix.shape[0]),
        patients=int(len(pd.unique(groups))),
        positives=int(np.sum(y == 1)),
        features=int(matrix.shape[1]),
        x_sha256=hashlib.sha256(np.ascontiguousarray(matrix, dtype=np.float32).tobytes()).hexdigest(),
        y_sha256=hashlib.sha256(np.ascontiguousarray(y, dtype=np.int8).tobytes()).hexdigest(),
    )
