"""Map a booster's raw margin (log-odds) to a calibrated probability.

Calibrators are fitted on patients the booster never trained on, and are stored as a
handful of plain numbers in JSON (never pickle):

- isotonic: a monotone step-and-ramp function, the X/Y threshold arrays of
  scikit-learn's IsotonicRegression, evaluated with `np.interp` (flat beyond the ends);
- platt: p = 1 / (1 + exp(-(a * margin + b))), a logistic regression on the margin;
- none: p = 1 / (1 + exp(-margin)), the booster's own probability. With class weights
  (scale_pos_weight) this over-states risk, which is why "none" is not the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import expit

from riskcast.errors import ModelError

CalibrationMethod = Literal["isotonic", "platt", "none"]
CALIBRATION_METHODS: tuple[str, ...] = ("isotonic", "platt", "none")


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Piecewise-linear monotone map from margin to probability (thresholds as floats)."""

    x_thresholds: tuple[float, ...]
    y_thresholds: tuple[float, ...]
    method: str = "isotonic"

    def predict(self, margin: np.ndarray) -> np.ndarray:
        """Probability for each margin (float64)."""
        return np.interp(
            np.asarray(margin, dtype=np.float64),
            np.asarray(self.x_thresholds, dtype=np.float64),
            np.asarray(self.y_thresholds, dtype=np.float64),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {"method": self.method, "x_thresholds": list(self.x_thresholds), "y_thresholds": list(self.y_thresholds)}


@dataclass(frozen=True)
class PlattCalibrator:
    """Logistic map p = expit(a * margin + b)."""

    a: float
    b: float
    method: str = "platt"

    def predict(self, margin: np.ndarray) -> np.ndarray:
        """Probability for each margin (float64)."""
        return expit(self.a * np.asarray(margin, dtype=np.float64) + self.b)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {"method": self.method, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class IdentityCalibrator:
    """No calibration: the logistic function of the margin."""

    method: str = "none"

    def predict(self, margin: np.ndarray) -> np.ndarray:
        """Probability for each margin (float64)."""
        return expit(np.asarray(margin, dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {"method": self.method}


Calibrator = IsotonicCalibrator | PlattCalibrator | IdentityCalibrator


def fit_calibrator(margin: np.ndarray, y: np.ndarray, *, method: str) -> Calibrator:
    """Fit a calibrator of `method` on held-out margins and 0/1 outcomes.

    Needs both outcomes among the rows (except for "none"), else ModelError.
    """
    if method not in CALIBRATION_METHODS:
        raise ModelError(f"calibration must be one of {CALIBRATION_METHODS} (got {method!r})")
    if method == "none":
        return IdentityCalibrator()
    margin = np.asarray(margin, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ModelError(
            f"cannot fit {method} calibration: the calibration patients have {n_pos} positive "
            f"row(s) out of {len(y)} (need both outcomes; use more patients or calibration='none')"
        )
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
        return IsotonicCalibrator(
            x_thresholds=tuple(float(v) for v in iso.X_thresholds_),
            y_thresholds=tuple(float(v) for v in iso.y_thresholds_),
        )
    from sklearn.linear_model import LogisticRegression

    logistic = LogisticRegression(C=np.inf).fit(margin.reshape(-1, 1), y)
    return PlattCalibrator(a=float(logistic.coef_[0, 0]), b=float(logistic.intercept_[0]))


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """Rebuild a calibrator from `to_dict()` output (e.g. calibrator.json)."""
    try:
        method = data["method"]
        if method == "isotonic":
            x = tuple(float(v) for v in data["x_thresholds"])
            y = tuple(float(v) for v in data["y_thresholds"])
            if len(x) != len(y) or not x:
                raise ModelError("isotonic calibrator needs equal, non-empty x_thresholds and y_thresholds")
            return IsotonicCalibrator(x_thresholds=x, y_thresholds=y)
        if method == "platt":
            return PlattCalibrator(a=float(data["a"]), b=float(data["b"]))
        if method == "none":
            return IdentityCalibrator()
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"calibrator is malformed: {exc!r}") from exc
    raise ModelError(f"calibrator method must be one of {CALIBRATION_METHODS} (got {method!r})")
