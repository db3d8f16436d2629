"""Training data the model reads in chunks: one chunk in memory at a time.

A `Dataset` is anything with `feature_names`, `n_chunks` and `chunk(i)`; each chunk is a
`Chunk` of float32 features, 0/1 labels, a patient id per row and, when alert budgets are
used, an encounter id per row (rows in time order within an encounter; an encounter never
spans two chunks). Reading a chunk twice gives the same rows in the same order, since the
boosters iterate more than once (XGBoost sketches, then quantises; LightGBM samples, then
pushes rows).

`ArrayDataset` wraps in-memory arrays (what `RiskModel.fit(X, y, groups=...)` is given);
riskcast.pipeline.training_data gives one over the feature store's shards. `RowRoles` is
the patient split: whole patients go to training, early-stopping validation or calibration,
and `RoleView` is the rows of one role, chunk by chunk, as the boosters take them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from riskcast.errors import ModelError

TRAIN, VALIDATION, CALIBRATION = 0, 1, 2
ROLE_NAMES = {TRAIN: "train", VALIDATION: "validation", CALIBRATION: "calibration"}


@dataclass(frozen=True)
class Chunk:
    """Rows of training data: X (n, p) float32 C-ordered with NaN for missing, y int8 0/1,
    a patient id per row and optionally an encounter id per row, and the labels a scoring
    rule reads when they are not y (the PhysioNet 2019 utility reads the hourly SepsisLabel)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    encounter_ids: np.ndarray | None = None
    scoring_labels: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])


class Dataset(Protocol):
    """Chunked training data (see the module docstring)."""

    feature_names: list[str]

    @property
    def n_chunks(self) -> int: ...

    def chunk(self, index: int) -> Chunk: ...


def iter_chunks(dataset: Dataset) -> Iterator[Chunk]:
    for index in range(dataset.n_chunks):
        yield dataset.chunk(index)


class ArrayDataset:
    """In-memory arrays as a Dataset, cut into chunks of `chunk_rows` (whole encounters kept
    together when encounter ids are given)."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray,
        *,
        feature_names: Sequence[str],
        encounter_ids: np.ndarray | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        self.X, self.y, self.groups, self.encounter_ids = X, y, groups, encounter_ids
        self.feature_names = list(feature_names)
        self._bounds = _chunk_bounds(len(X), chunk_rows, encounter_ids)

    @property
    def n_chunks(self) -> int:
        return len(self._bounds)

    def chunk(self, index: int) -> Chunk:
        start, stop = self._bounds[index]
        ids = None if self.encounter_ids is None else self.encounter_ids[start:stop]
        return Chunk(self.X[start:stop], self.y[start:stop], self.groups[start:stop], ids)


def _chunk_bounds(n_rows: int, chunk_rows: int | None, encounter_ids: np.ndarray | None) -> list[tuple[int, int]]:
    if not chunk_rows or chunk_rows >= n_rows:
        return [(0, n_rows)]
    cuts = list(range(chunk_rows, n_rows, chunk_rows))
    if encounter_ids is not None:  # move each cut forward to the next encounter boundary
        changes = np.flatnonzero(encounter_ids[1:] != encounter_ids[:-1]) + 1
        cuts = sorted({int(changes[np.searchsorted(changes, c)]) for c in cuts if np.searchsorted(changes, c) < len(changes)})
    edges = [0, *cuts, n_rows]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


@dataclass(frozen=True)
class DatasetIndex:
    """What one pass over a dataset learns without keeping the features: per patient, rows
    and positive rows; per chunk, each row's label and patient (as an index into `patients`);
    and a content hash of the features and labels in chunk order."""

    patients: np.ndarray  # sorted unique patient ids
    patient_rows: np.ndarray
    patient_positives: np.ndarray
    chunk_labels: tuple[np.ndarray, ...]
    chunk_patients: tuple[np.ndarray, ...]
    x_sha256: str
    y_sha256: str
    largest_chunk_rows: int

    @property
    def n_rows(self) -> int:
        return int(self.patient_rows.sum())

    @property
    def n_positive(self) -> int:
        return int(self.patient_positives.sum())


def index_dataset(dataset: Dataset) -> DatasetIndex:
    """One pass over the chunks (see DatasetIndex); checks labels and patient ids at the door."""
    if dataset.n_chunks == 0:
        raise ModelError("the training data has no rows")
    x_hash, y_hash = hashlib.sha256(), hashlib.sha256()
    labels, local_patients, local_uniques = [], [], []
    largest = 0
    width = len(dataset.feature_names)
    for chunk in iter_chunks(dataset):
        X = chunk.X
        if X.ndim != 2 or X.shape[1] != width:
            raise ModelError(f"a chunk of the training data has shape {X.shape}; expected {width} feature columns")
        if X.dtype != np.float32 or not X.flags.c_contiguous:
            raise ModelError("training chunks must hold C-ordered float32 features")
        y = np.asarray(chunk.y)
        if len(y) != len(X) or len(chunk.groups) != len(X):
            raise ModelError(f"a chunk has {len(X)} rows of features but {len(y)} labels and {len(chunk.groups)} patient ids")
        bad = ~np.isin(y, (0, 1))
        if bad.any():
            raise ModelError(f"y must hold only 0 and 1; {int(bad.sum())} row(s) hold something else")
        if pd.isna(chunk.groups).any():
            raise ModelError(f"groups (patient ids) has {int(pd.isna(chunk.groups).sum())} missing value(s)")
        if np.isinf(X).any():
            columns = np.flatnonzero(np.isinf(X).any(axis=0))
            names = ", ".join(repr(dataset.feature_names[i]) for i in columns[:10])
            raise ModelError(f"X has infinite values in {len(columns)} column(s): {names} "
                             "(use NaN for a value that is missing or undefined)")
        x_hash.update(X.tobytes())
        y8 = y.astype(np.int8)
        y_hash.update(y8.tobytes())
        codes, uniques = pd.factorize(chunk.groups)
        labels.append(y8)
        local_patients.append(codes.astype(np.int64))
        local_uniques.append(np.asarray(uniques, dtype=object))
        largest = max(largest, len(X))
    patients = np.unique(np.concatenate(local_uniques)) if local_uniques else np.array([], dtype=object)
    patient_rows = np.zeros(len(patients), dtype=np.int64)
    patient_positives = np.zeros(len(patients), dtype=np.int64)
    chunk_patients = []
    for codes, uniques, y8 in zip(local_patients, local_uniques, labels, strict=True):
        position = np.searchsorted(patients, uniques)[codes]
        np.add.at(patient_rows, position, 1)
        np.add.at(patient_positives, position, y8)
        chunk_patients.append(position)
    return DatasetIndex(
        patients, patient_rows, patient_positives, tuple(labels), tuple(chunk_patients),
        x_hash.hexdigest(), y_hash.hexdigest(), largest,
    )


@dataclass(frozen=True)
class RowRoles:
    """Each row's role (TRAIN, VALIDATION or CALIBRATION), chunk by chunk, from a patient split."""

    patient_roles: np.ndarray  # role per patient of the index
    chunk_roles: tuple[np.ndarray, ...]

    def rows(self, role: int) -> int:
        return int(sum(int((roles == role).sum()) for roles in self.chunk_roles))

    def patients(self, role: int) -> int:
        return int((self.patient_roles == role).sum())


def assign_roles(index: DatasetIndex, patient_roles: np.ndarray) -> RowRoles:
    return RowRoles(patient_roles, tuple(patient_roles[p].astype(np.int8) for p in index.chunk_patients))


class RoleView:
    """The rows of some roles of a dataset, chunk by chunk, with per-row weights.

    negative_fraction < 1 keeps that share of the negative rows (a fixed random choice per
    chunk and seed, the same on every pass) and weights each kept negative by its inverse,
    so the booster's loss stays the same in expectation.
    """

    def __init__(
        self,
        dataset: Dataset,
        index: DatasetIndex,
        roles: RowRoles,
        wanted: Sequence[int],
        *,
        positive_weight: float = 1.0,
        negative_fraction: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.dataset, self.index, self.roles = dataset, index, roles
        self.wanted = tuple(wanted)
        self.positive_weight = float(positive_weight)
        self.negative_fraction = float(negative_fraction)
        self.seed = int(seed)
        self.largest_chunk_rows = 0

    @property
    def n_chunks(self) -> int:
        return self.dataset.n_chunks

    def mask(self, index: int) -> np.ndarray:
        keep = np.isin(self.roles.chunk_roles[index], self.wanted)
        if self.negative_fraction < 1.0:
            rng = np.random.default_rng([self.seed, index])
            negative = self.index.chunk_labels[index] == 0
            keep &= ~negative | (rng.random(len(keep)) < self.negative_fraction)
        return keep

    def targets(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(y as float32, weight as float32) of the chunk's selected rows, without reading X."""
        keep = self.mask(index)
        y = self.index.chunk_labels[index][keep].astype(np.float32)
        negative_weight = 1.0 / self.negative_fraction
        return y, np.where(y == 1, self.positive_weight, negative_weight).astype(np.float32)

    def rows_in(self, index: int) -> int:
        return int(self.mask(index).sum())

    @property
    def n_rows(self) -> int:
        return sum(self.rows_in(i) for i in range(self.n_chunks))

    def data(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, weight) of the chunk's selected rows."""
        chunk = self.dataset.chunk(index)
        keep = self.mask(index)
        self.largest_chunk_rows = max(self.largest_chunk_rows, chunk.n_rows)
        y, weight = self.targets(index)
        return np.ascontiguousarray(chunk.X[keep]), y, weight

    def chunks_with_rows(self) -> list[int]:
        return [i for i in range(self.n_chunks) if self.rows_in(i)]


def gather(dataset: Dataset, roles: RowRoles, wanted: Sequence[int], *, fields: Sequence[str] = ("X",)) -> dict[str, Any]:
    """Concatenate some fields of the rows of the given roles (for small held-out sets)."""
    parts: dict[str, list[np.ndarray]] = {f: [] for f in fields}
    for index in range(dataset.n_chunks):
        keep = np.isin(roles.chunk_roles[index], wanted)
        if not keep.any():
            continue
        chunk = dataset.chunk(index)
        for field in fields:
            parts[field].append(np.asarray(getattr(chunk, field))[keep])
    return {f: (np.concatenate(v) if v else np.array([])) for f, v in parts.items()}
