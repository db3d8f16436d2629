"""Patient-bootstrap intervals, vectorised.

95% percentile bootstrap intervals that resample *patients* (all their rows in or out
together; hours of one patient are not independent), 200 resamples by default. Rows are
summed once into counts per (patient, group) cell (``riskcast.fairness.metrics.COUNTS``), a
resample is a vector of patient multiplicities, and every group's counts in every resample
come from one sparse matrix product. The same resamples serve every group and feature, so a
difference between two groups is *paired*: its interval is the percentile interval of the
replicate differences. (AUROC intervals come from ``riskcast.evaluate.discrimination``
within each group.)
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import sparse

from riskcast.fairness.metrics import COUNTS


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring NaN replicates; NaN when under half are valid."""
    if replicates.shape[0] == 0:
        shape = replicates.shape[1:]
        return np.full(shape, np.nan), np.full(shape, np.nan)
    alpha = (1.0 - confidence) / 2.0
    valid = np.isfinite(replicates)
    enough = valid.sum(axis=0) >= max(1, replicates.shape[0] // 2)
    with np.errstate(all="ignore"):
        safe = np.where(valid, replicates, np.nan)
        if not enough.any():
            nan = np.full(replicates.shape[1:], np.nan)
            return nan, nan.copy()
        low = np.full(replicates.shape[1:], np.nan)
        high = np.full(replicates.shape[1:], np.nan)
        low[enough] = np.nanquantile(safe[:, enough], alpha, axis=0)
        high[enough] = np.nanquantile(safe[:, enough], 1.0 - alpha, axis=0)
    return low, high


def patient_multiplicities(n_patients: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_patients) bootstrap multiplicities: how often each patient is drawn per resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(n_boot, n_patients))
    offsets = (np.arange(n_boot, dtype=np.int64) * n_patients)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_patients)
    return counts.reshape(n_boot, n_patients).astype(np.float32)


def group_counts(
    rows: pl.DataFrame, group_codes: np.ndarray, n_groups: int, multiplicities: np.ndarray, n_patients: int
) -> tuple[np.ndarray, np.ndarray]:
    """Summed counts per group: (n_groups, K) for the data and (n_boot, n_groups, K) per resample.

    Rows are summed into (patient, group) cells once; a cell's counts enter a resample as
    often as its patient was drawn, so each resample is one sparse product.
    """
    cells = (
        rows.select("_patient", *[f"_{c}" for c in COUNTS])
        .with_columns(_group=pl.Series(group_codes, dtype=pl.Int64))
        .group_by("_patient", "_group")
        .agg(pl.col(f"_{c}").sum() for c in COUNTS)
    )
    n_counts = len(COUNTS)
    patient = cells.get_column("_patient").to_numpy()
    group = cells.get_column("_group").to_numpy()
    values = cells.select(f"_{c}" for c in COUNTS).to_numpy().astype(np.float64)
    matrix = sparse.csr_matrix(
        (values.ravel(), (np.repeat(patient, n_counts), (group[:, None] * n_counts + np.arange(n_counts)).ravel())),
        shape=(n_patients, n_groups * n_counts),
    )
    point = np.asarray(matrix.sum(axis=0)).reshape(n_groups, n_counts)
    if multiplicities.shape[0] == 0:
        return point, np.zeros((0, n_groups, n_counts))
    boot = np.asarray(matrix.T @ multiplicities.T.astype(np.float64)).T
    return point, boot.reshape(multiplicities.shape[0], n_groups, n_counts)

