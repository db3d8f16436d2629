"""Split rows into train / early-stopping validation / calibration sets by PATIENT.

Hourly rows of one patient are highly correlated; if a patient had rows on both sides
of a split, the held-out scores would be optimistic and the calibration would be fitted
on data the booster had effectively seen. So whole patients are assigned to one set.

The split is stratified on "patient ever has a positive row" so every set gets positive
patients when there are enough of them, and it is deterministic for a given
`random_state` and the same set of patient ids (whatever their row order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskcast.errors import ModelError


@dataclass(frozen=True)
class PatientSplit:
    """Row positions (into the training X) of each set; no patient is in two sets."""

    train: np.ndarray
    validation: np.ndarray
    calibration: np.ndarray

    @property
    def held_out(self) -> np.ndarray:
        """Rows for choosing the operating point: calibration rows, else validation rows."""
        return self.calibration if len(self.calibration) else self.validation


def _check_fraction(value: float, *, name: str) -> float:
    if not (0.0 <= float(value) < 1.0):
        raise ModelError(f"{name} must be in [0, 1) (got {value!r})")
    return float(value)


def split_patients(
    groups: np.ndarray,
    y: np.ndarray,
    *,
    validation_fraction: float,
    calibration_fraction: float,
    random_state: int | None,
) -> PatientSplit:
    """Assign each patient to train, validation or calibration; return row positions.

    Fractions are of patients, not rows, within each stratum (patients with / without
    any positive row), rounded to whole patients; a non-zero fraction gets at least one
    patient of a stratum that has at least three. Training keeps the rest.
    """
    codes, uniques = pd.factorize(groups, sort=True)
    patient_positive = np.zeros(len(uniques), dtype=bool)
    np.logical_or.at(patient_positive, codes, y == 1)
    assignment = assign_patient_roles(
        patient_positive,
        validation_fraction=validation_fraction,
        calibration_fraction=calibration_fraction,
        random_state=random_state,
    )
    row_set = assignment[codes]
    return PatientSplit(
        train=np.flatnonzero(row_set == 0),
        validation=np.flatnonzero(row_set == 1),
        calibration=np.flatnonzero(row_set == 2),
    )


def assign_patient_roles(
    patient_positive: np.ndarray,
    *,
    validation_fraction: float,
    calibration_fraction: float,
    random_state: int | None,
) -> np.ndarray:
    """Per patient (in sorted patient-id order): 0 train, 1 validation, 2 calibration.

    The same patients and seed give the same assignment whatever order or chunks the rows
    came in (see split_patients for the rule).
    """
    validation_fraction = _check_fraction(validation_fraction, name="validation_fraction")
    calibration_fraction = _check_fraction(calibration_fraction, name="calibration_fraction")
    if validation_fraction + calibration_fraction >= 0.9:
        raise ModelError(
            "validation_fraction + calibration_fraction must leave at least 10% of patients "
            f"for training (got {validation_fraction} + {calibration_fraction})"
        )
    n_patients = len(patient_positive)
    if n_patients < 3 and (validation_fraction or calibration_fraction):
        raise ModelError(f"need at least 3 patients to split train/validation/calibration (got {n_patients})")
    rng = np.random.default_rng(random_state)
    assignment = np.zeros(n_patients, dtype=np.int8)  # 0 train, 1 validation, 2 calibration
    for stratum in (np.flatnonzero(patient_positive), np.flatnonzero(~patient_positive)):
        order = rng.permutation(stratum)
        n = len(order)
        n_cal = _share(n, calibration_fraction)
        n_val = _share(n, validation_fraction)
        assignment[order[:n_cal]] = 2
        assignment[order[n_cal : n_cal + n_val]] = 1
    return assignment


def _share(n: int, fraction: float) -> int:
    if fraction == 0.0 or n == 0:
        return 0
    count = int(round(n * fraction))
    return max(count, 1) if n >= 3 else count
