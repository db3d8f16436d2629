"""RiskModel: a calibrated gradient-boosted risk model as an ordinary scikit-learn estimator.

`fit(X, y, *, groups)` takes numeric features (pandas or polars; NaN or null means "not
measured"), 0/1 outcomes and one patient id per row. It then:

1. splits PATIENTS (never rows) into train / early-stopping validation / calibration
   sets (see riskcast.model.splits);
2. weights positive training rows by `scale_pos_weight` ("auto": negatives/positives
   among the training rows) and weights validation rows the same way, so early stopping
   watches the same loss the booster minimises;
3. trains the native booster (xgboost.train or lightgbm.train) with early stopping on
   the validation patients;
4. fits the calibrator (isotonic, Platt or none) on the calibration patients' margins;
5. chooses the operating threshold on the calibration patients (`threshold_rule`).

Nothing happens in `__init__`; learned attributes end in `_`, so `sklearn.clone` and
`set_params` work. The model never reads files or the clock: see artefact.py for I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin

from riskcast.errors import ModelError
from riskcast.model.calibration import CALIBRATION_METHODS, fit_calibrator
from riskcast.model.device import choose_device
from riskcast.model.engines import BoosterSettings, TrainingSet, engine_for
from riskcast.model.inputs import (
    binary_labels,
    feature_matrix,
    feature_names_of,
    fingerprint,
    group_ids,
)
from riskcast.model.operating_point import (
    ALERT_BUDGET,
    SENSITIVITY,
    OperatingPoint,
    threshold_for_alert_budget,
    threshold_for_sensitivity,
)
from riskcast.model.splits import split_patients

logger = logging.getLogger(__name__)

THRESHOLD_RULES: tuple[str, ...] = (SENSITIVITY, ALERT_BUDGET, "none")
AUTO_ISOTONIC_MIN_POSITIVES = 1000  # calibration="auto" uses isotonic from this many positive rows
DEFAULT_THRESHOLD = 0.5  # used by predict() only when no operating point was chosen


@dataclass(frozen=True)
class SearchTrial:
    """One candidate of a hyperparameter search and its validation log loss (lower is better)."""

    params: dict[str, Any]
    validation_log_loss: float
    n_rounds: int


def _weighted_log_loss(y: np.ndarray, margin: np.ndarray, weight: np.ndarray) -> float:
    p = np.clip(expit(margin), 1e-15, 1 - 1e-15)
    losses = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return float(np.sum(weight * losses) / np.sum(weight))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


class RiskModel(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees (xgboost or lightgbm) + a calibrator + an operating threshold.

    Parameters
    ----------
    engine : "xgboost" | "lightgbm"
    device : "auto" | "cpu" | "cuda" -- "auto" uses a CUDA GPU when the engine can.
    n_estimators : maximum boosting rounds (early stopping usually stops sooner).
    learning_rate : shrinkage per round.
    max_depth : tree depth (xgboost only).
    num_leaves : leaves per tree (lightgbm only; it grows trees leaf-wise).
    min_child_weight : minimum hessian sum in a leaf (lightgbm: min_sum_hessian_in_leaf).
    subsample : fraction of rows per tree; colsample : fraction of columns per tree.
    early_stopping_rounds : stop after this many rounds without validation improvement;
        None trains all n_estimators rounds.
    validation_fraction, calibration_fraction : fractions of PATIENTS held out for early
        stopping and for calibration + threshold choice.
    calibration : "isotonic" | "platt" | "none".
    scale_pos_weight : "auto" (negatives/positives in the training rows), a number, or
        None (no class weighting).
    threshold_rule : "sensitivity" (flag at least `threshold_target` of positive rows),
        "alert_budget" (at most `threshold_target` alert episodes per 100 patient-days;
        needs `encounter_ids` in fit) or "none" (predict() uses 0.5).
    threshold_target : the target for `threshold_rule`.
    random_state : seed for the patient split and the booster.
    n_jobs : CPU threads for training and prediction; None lets the engine use every core
        (on a small or busy machine, 1 is often faster for small data).

    Learned attributes
    ------------------
    booster_ : the native booster, cut to its best round; n_rounds_ : that round count.
    calibrator_ : margin -> probability; operating_point_ / threshold_ : the flag threshold
        (threshold_ is 0.5 when threshold_rule="none").
    feature_names_in_, n_features_in_, classes_ : as in scikit-learn.
    device_, device_message_ : the device used, and why.
    scale_pos_weight_ : the positive-class weight used.
    split_ : row positions of the train / validation / calibration patients (None after
        load_model). fingerprint_ : counts and hashes of the training data.
    training_metrics_ : per-set counts, validation log loss, Brier before/after calibration.
    search_trials_ : after search(), every candidate and its validation loss.
    """

    def __init__(
        self,
        engine: str = "xgboost",
        device: str = "auto",
        n_estimators: int = 600,
        learning_rate: float = 0.05,
        max_depth: int = 6,
        num_leaves: int = 31,
        min_child_weight: float = 1.0,
        subsample: float = 0.8,
        colsample: float = 0.8,
        early_stopping_rounds: int | None = 50,
        validation_fraction: float = 0.2,
        calibration: str = "isotonic",
        calibration_fraction: float = 0.2,
        scale_pos_weight: str | float | None = "auto",
        threshold_rule: str = SENSITIVITY,
        threshold_target: float = 0.8,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.engine = engine
        self.device = device
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.num_leaves = num_leaves
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample = colsample
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.scale_pos_weight = scale_pos_weight
        self.threshold_rule = threshold_rule
        self.threshold_target = threshold_target
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting

    def _check_params(self) -> None:
        engine_for(self.engine)
        if self.calibration not in (*CALIBRATION_METHODS, "auto"):
            raise ModelError(f"calibration must be one of {(*CALIBRATION_METHODS, 'auto')} (got {self.calibration!r})")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ModelError(f"threshold_rule must be one of {THRESHOLD_RULES} (got {self.threshold_rule!r})")
        if not (isinstance(self.n_estimators, int | np.integer) and self.n_estimators >= 1):
            raise ModelError(f"n_estimators must be a positive integer (got {self.n_estimators!r})")
        if self.calibration != "none" and not self.calibration_fraction:
            raise ModelError(
                f"calibration={self.calibration!r} needs calibration patients: set calibration_fraction > 0 "
                "or calibration='none'"
            )
        spw = self.scale_pos_weight
        if not (spw is None or spw == "auto" or (isinstance(spw, int | float) and spw > 0)):
            raise ModelError(f"scale_pos_weight must be 'auto', a positive number or None (got {spw!r})")

    def _calibration_method(self, y_calibration: np.ndarray) -> str:
        """"auto": isotonic with enough positive rows to shape its steps, else Platt.

        Isotonic regression on a few hundred positives collapses risk into a handful of
        levels (ties that cost discrimination and make thresholds coarse); Platt's two
        parameters need far fewer.
        """
        if self.calibration != "auto":
            return self.calibration
        return "isotonic" if int(np.sum(y_calibration)) >= AUTO_ISOTONIC_MIN_POSITIVES else "platt"

    def _positive_weight(self, y_train: np.ndarray) -> float:
        if self.scale_pos_weight is None:
            return 1.0
        if self.scale_pos_weight == "auto":
            n_pos = int(np.sum(y_train == 1))
            return float(len(y_train) - n_pos) / n_pos
        return float(self.scale_pos_weight)

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        groups: Any,
        encounter_ids: Any = None,
        hours_per_row: float = 1.0,
    ) -> RiskModel:
        """Train, calibrate and choose the threshold; returns self.

        X: numeric features, one row per encounter-hour (all columns are used as
        features, in this order); y: 0/1 outcome per row; groups: patient id per row;
        encounter_ids: encounter per row, rows in time order within an encounter
        (needed only for threshold_rule="alert_budget"); hours_per_row: exposure time a
        row stands for, for alert rates.
        """
        self._check_params()
        names = feature_names_of(X)
        if not names:
            raise ModelError("X has no feature columns")
        matrix = feature_matrix(X, names)
        labels = binary_labels(y, n_rows=len(matrix))
        patients = group_ids(groups, n_rows=len(matrix))
        n_pos = int(labels.sum())
        if n_pos == 0 or n_pos == len(labels):
            raise ModelError(f"y has {n_pos} positive row(s) out of {len(labels)}; training needs both outcomes")
        if self.threshold_rule == ALERT_BUDGET and encounter_ids is None:
            raise ModelError("threshold_rule='alert_budget' needs encounter_ids in fit()")
        if encounter_ids is not None:
            encounter_ids = np.asarray(encounter_ids)
            if len(encounter_ids) != len(matrix):
                raise ModelError(f"encounter_ids has {len(encounter_ids)} values but X has {len(matrix)} rows")

        choice = choose_device(self.device, engine=self.engine)
        logger.info("training %s", choice.message)
        split = split_patients(
            patients,
            labels,
            validation_fraction=self.validation_fraction,
            calibration_fraction=self.calibration_fraction,
            random_state=self.random_state,
        )
        y_train = labels[split.train]
        if y_train.sum() == 0:
            raise ModelError(f"the training patients ({len(split.train)} rows) have no positive rows")
        positive_weight = self._positive_weight(y_train)

        def training_set(rows: np.ndarray) -> TrainingSet:
            y_rows = labels[rows].astype(np.float64)
            return TrainingSet(matrix[rows], y_rows, np.where(y_rows == 1, positive_weight, 1.0))

        engine = engine_for(self.engine)
        settings = BoosterSettings(
            n_estimators=int(self.n_estimators),
            learning_rate=float(self.learning_rate),
            max_depth=int(self.max_depth),
            num_leaves=int(self.num_leaves),
            min_child_weight=float(self.min_child_weight),
            subsample=float(self.subsample),
            colsample=float(self.colsample),
            early_stopping_rounds=self.early_stopping_rounds,
            random_state=int(self.random_state),
            n_jobs=self.n_jobs,
            device=choice.device,
        )
        validation = training_set(split.validation) if len(split.validation) else None
        trained = engine.train(settings, training_set(split.train), validation)

        self.booster_ = trained.booster
        self.n_rounds_ = trained.n_rounds
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.classes_ = np.array([0, 1])
        self.device_ = choice.device
        self.device_message_ = choice.message
        self.scale_pos_weight_ = positive_weight
        self.split_ = split
        self.fingerprint_ = fingerprint(matrix, labels, patients)

        metrics: dict[str, Any] = {"n_rounds": trained.n_rounds, "scale_pos_weight": positive_weight}
        for set_name, rows in (("train", split.train), ("validation", split.validation), ("calibration", split.calibration)):
            metrics[f"{set_name}_rows"] = int(len(rows))
            metrics[f"{set_name}_patients"] = int(len(pd.unique(patients[rows])))
            metrics[f"{set_name}_positives"] = int(labels[rows].sum())
        if validation is not None:
            val_margin = engine.margin(self.booster_, validation.X, n_jobs=self.n_jobs)
            metrics["validation_log_loss"] = _weighted_log_loss(validation.y, val_margin, validation.weight)

        calibration_rows = split.calibration
        if self.calibration != "none":
            cal_margin = engine.margin(self.booster_, matrix[calibration_rows], n_jobs=self.n_jobs)
            cal_y = labels[calibration_rows]
            self.calibration_method_ = self._calibration_method(cal_y)
            self.calibrator_ = fit_calibrator(cal_margin, cal_y, method=self.calibration_method_)
            metrics["calibration_brier_uncalibrated"] = _brier(cal_y, expit(cal_margin))
            metrics["calibration_brier_calibrated"] = _brier(cal_y, self.calibrator_.predict(cal_margin))
        else:
            self.calibration_method_ = "none"
            self.calibrator_ = fit_calibrator(np.zeros(0), np.zeros(0), method="none")
        self.training_metrics_ = metrics

        self.operating_point_ = None
        if self.threshold_rule != "none":
            rows = split.held_out
            if len(rows) == 0:
                raise ModelError(
                    f"threshold_rule={self.threshold_rule!r} needs held-out patients: "
                    "set calibration_fraction or validation_fraction > 0"
                )
            risk = self._proba_from_matrix(matrix[rows])
            if self.threshold_rule == SENSITIVITY:
                self.operating_point_ = threshold_for_sensitivity(risk, labels[rows], target=self.threshold_target)
            else:
                self.operating_point_ = threshold_for_alert_budget(
                    risk,
                    encounter_ids=encounter_ids[rows],
                    hours_per_row=hours_per_row,
                    alerts_per_100_patient_days=self.threshold_target,
                )
        self.threshold_ = DEFAULT_THRESHOLD if self.operating_point_ is None else self.operating_point_.threshold
        logger.info("trained %s: %d rounds on %d rows", self.engine, trained.n_rounds, len(split.train))
        return self

    def search(
        self,
        X: Any,
        y: Any,
        *,
        groups: Any,
        n_iter: int = 8,
        encounter_ids: Any = None,
        hours_per_row: float = 1.0,
    ) -> RiskModel:
        """Small random search, then refit with the best parameters; returns self.

        The current parameters compete as the first candidate, then `n_iter` random
        draws over learning rate, tree size, min_child_weight, subsample and colsample.
        Each candidate is scored by the weighted log loss on the validation PATIENTS of
        the model's own split (identical for every candidate, since the split depends
        only on random_state and the patients). All trials are kept in `search_trials_`.
        """
        if not self.validation_fraction:
            raise ModelError("search() needs validation patients: set validation_fraction > 0")
        from sklearn.base import clone
        from sklearn.model_selection import ParameterSampler

        space: dict[str, list[Any]] = {
            "learning_rate": [0.02, 0.05, 0.1],
            "min_child_weight": [1.0, 5.0, 20.0],
            "subsample": [0.7, 0.85, 1.0],
            "colsample": [0.5, 0.8, 1.0],
        }
        if self.engine == "lightgbm":
            space["num_leaves"] = [15, 31, 63]
        else:
            space["max_depth"] = [3, 4, 6, 8]
        baseline = {k: v for k, v in self.get_params().items() if k in space}
        candidates = [baseline, *ParameterSampler(space, n_iter=n_iter, random_state=self.random_state)]
        trials = []
        for params in candidates:
            candidate = clone(self).set_params(**params)
            candidate.fit(X, y, groups=groups, encounter_ids=encounter_ids, hours_per_row=hours_per_row)
            trials.append(
                SearchTrial(
                    params=dict(params),
                    validation_log_loss=candidate.training_metrics_["validation_log_loss"],
                    n_rounds=candidate.n_rounds_,
                )
            )
        best = min(trials, key=lambda trial: trial.validation_log_loss)
        logger.info("search: best of %d candidates has validation log loss %.5f", len(trials), best.validation_log_loss)
        self.set_params(**best.params)
        self.fit(X, y, groups=groups, encounter_ids=encounter_ids, hours_per_row=hours_per_row)
        self.search_trials_ = tuple(trials)
        return self

    # --------------------------------------------------------------- predicting

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise ModelError("this RiskModel is not fitted: call fit() or load_model() first")

    def _matrix(self, X: Any) -> np.ndarray:
        self._check_fitted()
        return feature_matrix(X, list(self.feature_names_in_))

    def _proba_from_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrator_.predict(engine_for(self.engine).margin(self.booster_, matrix, n_jobs=self.n_jobs))

    def predict_margin(self, X: Any) -> np.ndarray:
        """Raw booster output (log-odds, before calibration), one float64 per row."""
        return engine_for(self.engine).margin(self.booster_, self._matrix(X), n_jobs=self.n_jobs)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probabilities, shape (n, 2): column 1 is the risk of the outcome."""
        risk = self._proba_from_matrix(self._matrix(X))
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X: Any) -> np.ndarray:
        """1 where the calibrated risk is >= the operating threshold, else 0."""
        return (self.predict_proba(X)[:, 1] >= self.threshold_).astype(np.int64)

    def contributions(self, X: Any) -> np.ndarray:
        """Native TreeSHAP contributions to the margin, shape (n, n_features + 1).

        Columns follow `feature_names_in_`; the last column is the bias (expected
        margin). Each row sums to `predict_margin` (log-odds, not probability).
        """
        return engine_for(self.engine).contributions(self.booster_, self._matrix(X), n_jobs=self.n_jobs)

    def set_operating_point(self, point: OperatingPoint) -> RiskModel:
        """Replace the operating point (e.g. one chosen on other data); returns self."""
        self._check_fitted()
        if not isinstance(point, OperatingPoint):
            raise ModelError(f"expected an OperatingPoint (got {type(point).__name__})")
        self.operating_point_ = point
        self.threshold_ = point.threshold
        return self

