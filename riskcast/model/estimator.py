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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin

from riskcast.errors import ModelError
from riskcast.model.calibration import CALIBRATION_METHODS, fit_calibrator
from riskcast.model.device import choose_device
from riskcast.model.dataset import (
    CALIBRATION,
    ROLE_NAMES,
    TRAIN,
    VALIDATION,
    ArrayDataset,
    Dataset,
    RowRoles,
    RoleView,
    assign_roles,
    index_dataset,
)
from riskcast.model.engines import BoosterSettings, Engine, engine_for, stopping_metric_name
from riskcast.model.inputs import (
    DataFingerprint,
    binary_labels,
    feature_names_of,
    float32_matrix,
    group_ids,
)
from riskcast.model.operating_point import (
    ALERT_BUDGET,
    SENSITIVITY,
    UTILITY,
    OperatingPoint,
    threshold_for_alert_budget,
    threshold_for_sensitivity,
    threshold_for_utility,
)
from riskcast.model.page_cache import page_cache
from riskcast.model.splits import PatientSplit, assign_patient_roles
from riskcast.utility import row_utilities

logger = logging.getLogger(__name__)

THRESHOLD_RULES: tuple[str, ...] = (SENSITIVITY, ALERT_BUDGET, UTILITY, "none")
AUTO_ISOTONIC_MIN_POSITIVES = 1000  # calibration="auto" uses isotonic from this many positive rows
DEFAULT_THRESHOLD = 0.5  # used by predict() only when no operating point was chosen
AUTO = "auto"
# XGBoost's in-memory quantised matrix, per training cell (row x feature), as measured on
# PhysioNet set A (397,808 training rows x 516 features, mostly-missing labs: 2.4 GiB);
# dense matrices take about a third of that.
QUANTISED_BYTES_PER_CELL = 12.6
DEFAULT_MEMORY_BUDGET_GIB = 1.0


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


def _train_on_dask(
    address: str, engine_name: str, settings: BoosterSettings, train: RoleView, validation: RoleView | None, n_features: int
) -> Any:
    if engine_name != "xgboost":
        raise ModelError("distributed training needs --engine xgboost: lightgbm.dask has no supported early stopping")
    from riskcast.model.distributed import DaskXGBoostEngine, dask_client

    with dask_client(address) as client:
        return DaskXGBoostEngine(client, n_features).train(settings, train, validation)


def _held_out_margins(dataset: Dataset, roles: RowRoles, engine: Engine, booster: Any, *, n_jobs: int | None) -> dict[str, np.ndarray]:
    """Margins, labels, roles, encounter ids and row positions of the validation and
    calibration rows, predicted chunk by chunk."""
    parts: dict[str, list[np.ndarray]] = {"margin": [], "y": [], "scoring_labels": [], "role": [], "encounter_ids": [],
                                          "position": []}
    offset = 0
    for index in range(dataset.n_chunks):
        chunk_roles = roles.chunk_roles[index]
        keep = chunk_roles != TRAIN
        if keep.any():
            chunk = dataset.chunk(index)
            parts["margin"].append(engine.margin(booster, np.ascontiguousarray(chunk.X[keep]), n_jobs=n_jobs))
            parts["y"].append(np.asarray(chunk.y)[keep].astype(np.int8))
            scoring = chunk.y if chunk.scoring_labels is None else chunk.scoring_labels
            parts["scoring_labels"].append(np.asarray(scoring)[keep].astype(np.int8))
            parts["role"].append(chunk_roles[keep])
            ids = chunk.encounter_ids if chunk.encounter_ids is not None else np.full(chunk.n_rows, None, dtype=object)
            parts["encounter_ids"].append(np.asarray(ids)[keep])
            parts["position"].append(offset + np.flatnonzero(keep))
        offset += len(chunk_roles)
    empty = {"margin": np.float64, "y": np.int8, "scoring_labels": np.int8, "role": np.int8, "encounter_ids": object,
             "position": np.int64}
    return {k: (np.concatenate(v) if v else np.zeros(0, dtype=empty[k])) for k, v in parts.items()}


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
    reg_lambda : L2 penalty on leaf weights (xgboost lambda, lightgbm lambda_l2).
    early_stopping_rounds : stop after this many rounds without validation improvement;
        None trains all n_estimators rounds.
    stopping_metric : what early stopping watches on the validation patients: "logloss"
        (the probabilities), "auc" or "aucpr" (the ranking only; calibration fixes the
        probabilities afterwards).
    validation_fraction, calibration_fraction : fractions of PATIENTS held out for early
        stopping and for calibration + threshold choice.
    calibration : "isotonic" | "platt" | "none".
    scale_pos_weight : "auto" (negatives/positives in the training rows), a number, or
        None (no class weighting).
    threshold_rule : "sensitivity" (flag at least `threshold_target` of positive rows),
        "alert_budget" (at most `threshold_target` alert episodes per 100 patient-days;
        needs `encounter_ids` in fit), "utility" (the threshold maximising the PhysioNet
        2019 utility on the calibration patients; y must then be the challenge's hourly
        SepsisLabel on every hour of each stay, and fit needs `encounter_ids`) or "none"
        (predict() uses 0.5).
    threshold_target : the target for `threshold_rule`.
    random_state : seed for the patient split and the booster.
    n_jobs : CPU threads for training and prediction; None lets the engine use every core
        (on a small or busy machine, 1 is often faster for small data).
    negative_fraction : train on this share of the negative training rows (each kept one
        weighted by the inverse), to train faster on years of data. Early stopping watches
        the same share of the early-stopping patients' negative rows, weighted back alike:
        the booster scores them every round, so at scale they would cost more than the
        training rows themselves. Calibration, the threshold and evaluation always see
        every row. 1.0 keeps them all.
    external_memory : XGBoost keeps its quantised training matrix in pages on disk
        (ExtMemQuantileDMatrix under `cache_dir`, a temporary folder when None) when True,
        in memory when False; "auto" (the default) pages it when the matrix is estimated
        (QUANTISED_BYTES_PER_CELL a training cell) over `memory_budget_gib`, and the
        early-stopping rows' matrix likewise on its own estimate. Both give the
        same trees; paging trades time for memory. LightGBM and Dask ignore it.
    memory_budget_gib : the in-memory quantised matrix "auto" allows (GiB).
    dask_address : train the booster with xgboost.dask on this cluster ("tcp://host:8786",
        or "local[:N]" for a local cluster of N worker processes); the split, calibration
        and threshold stay local (riskcast.model.distributed). XGBoost only.

    Learned attributes
    ------------------
    booster_ : the native booster, cut to its best round; n_rounds_ : that round count.
    calibrator_ : margin -> probability; operating_point_ / threshold_ : the flag threshold
        (threshold_ is 0.5 when threshold_rule="none").
    feature_names_in_, n_features_in_, classes_ : as in scikit-learn.
    device_, device_message_ : the device used, and why.
    scale_pos_weight_ : the positive-class weight used.
    split_ : row positions of the train / validation / calibration patients, from
        row_roles_ (None after load_model). fingerprint_ : counts and hashes of the
        training data. threshold_rows_ / threshold_risk_ : the rows (positions) the
        threshold was chosen on and their calibrated risk. largest_chunk_rows_ : the most
        rows of one chunk held at once while training.
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
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 50,
        stopping_metric: str = "logloss",
        validation_fraction: float = 0.2,
        calibration: str = "isotonic",
        calibration_fraction: float = 0.2,
        scale_pos_weight: str | float | None = "auto",
        threshold_rule: str = SENSITIVITY,
        threshold_target: float = 0.8,
        random_state: int = 0,
        n_jobs: int | None = None,
        negative_fraction: float = 1.0,
        external_memory: bool | str = AUTO,
        memory_budget_gib: float = DEFAULT_MEMORY_BUDGET_GIB,
        cache_dir: str | None = None,
        dask_address: str | None = None,
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
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.stopping_metric = stopping_metric
        self.validation_fraction = validation_fraction
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.scale_pos_weight = scale_pos_weight
        self.threshold_rule = threshold_rule
        self.threshold_target = threshold_target
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.negative_fraction = negative_fraction
        self.external_memory = external_memory
        self.memory_budget_gib = memory_budget_gib
        self.cache_dir = cache_dir
        self.dask_address = dask_address

    # ------------------------------------------------------------------ fitting

    def _check_params(self) -> None:
        engine_for(self.engine)
        stopping_metric_name(self.stopping_metric, self.engine)
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
        if not (isinstance(self.external_memory, bool) or self.external_memory == AUTO):
            raise ModelError(f"external_memory must be True, False or 'auto' (got {self.external_memory!r})")
        if not (isinstance(self.memory_budget_gib, int | float) and self.memory_budget_gib > 0):
            raise ModelError(f"memory_budget_gib must be a positive number (got {self.memory_budget_gib!r})")
        spw = self.scale_pos_weight
        if not (spw is None or spw == "auto" or (isinstance(spw, int | float) and spw > 0)):
            raise ModelError(f"scale_pos_weight must be 'auto', a positive number or None (got {spw!r})")

    def _pages_to_disk(self, rows: int, n_features: int, *, what: str) -> tuple[bool, float]:
        """Whether XGBoost's quantised matrix of `rows` goes to disk, and its estimated in-memory size (GiB)."""
        estimated = rows * n_features * QUANTISED_BYTES_PER_CELL / 2**30
        if self.engine != "xgboost" or self.dask_address:
            return False, estimated
        if self.external_memory == AUTO:
            paged = estimated > float(self.memory_budget_gib)
            if paged:
                logger.info("the quantised %s matrix (about %.1f GiB) is over the %.1f GiB memory budget: "
                            "XGBoost pages it through external memory", what, estimated, float(self.memory_budget_gib))
            return paged, estimated
        return bool(self.external_memory), estimated

    def _calibration_method(self, y_calibration: np.ndarray) -> str:
        """"auto": isotonic with enough positive rows to shape its steps, else Platt.

        Isotonic regression on a few hundred positives collapses risk into a handful of
        levels (ties that cost discrimination and make thresholds coarse); Platt's two
        parameters need far fewer.
        """
        if self.calibration != "auto":
            return self.calibration
        return "isotonic" if int(np.sum(y_calibration)) >= AUTO_ISOTONIC_MIN_POSITIVES else "platt"

    def _positive_weight(self, n_rows: int, n_positive: int) -> float:
        if self.scale_pos_weight is None:
            return 1.0
        if self.scale_pos_weight == "auto":
            return float(n_rows - n_positive) / n_positive
        return float(self.scale_pos_weight)

    def _dataset(self, X: Any, y: Any, groups: Any, encounter_ids: Any) -> Dataset:
        """What fit() was given, as a chunked Dataset (in-memory inputs become one chunk)."""
        if hasattr(X, "chunk") and hasattr(X, "n_chunks"):
            if y is not None or groups is not None:
                raise ModelError("pass labels and patient ids inside the Dataset, not as y and groups")
            return X
        if y is None or groups is None:
            raise ModelError("fit() needs y (0/1 labels) and groups (a patient id per row)")
        names = feature_names_of(X)
        if not names:
            raise ModelError("X has no feature columns")
        matrix = float32_matrix(X, names)
        labels = binary_labels(y, n_rows=len(matrix))
        patients = group_ids(groups, n_rows=len(matrix))
        if encounter_ids is not None:
            encounter_ids = np.asarray(encounter_ids)
            if len(encounter_ids) != len(matrix):
                raise ModelError(f"encounter_ids has {len(encounter_ids)} values but X has {len(matrix)} rows")
        return ArrayDataset(matrix, labels, patients, feature_names=names, encounter_ids=encounter_ids)

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        groups: Any = None,
        encounter_ids: Any = None,
        hours_per_row: float = 1.0,
        progress: Callable[[str], None] | None = None,
    ) -> RiskModel:
        """Train, calibrate and choose the threshold; returns self.

        X: numeric features, one row per encounter-hour (all columns are used as
        features, in this order); y: 0/1 outcome per row; groups: patient id per row;
        encounter_ids: encounter per row, rows in time order within an encounter
        (needed for threshold_rule="alert_budget" and "utility"); hours_per_row: exposure
        time a row stands for, for alert rates.

        X may instead be a riskcast.model.dataset.Dataset (chunks of float32 rows with their
        labels, patients and encounters; y and groups then stay None): the boosters then
        read it chunk by chunk and only one chunk is in memory at a time. Both paths are the
        same code: in-memory inputs are a dataset of one chunk.

        progress: hears every few boosting rounds how far training has got (local engines
        only: on a Dask cluster the rounds run on the workers and are not reported).
        """
        self._check_params()
        dataset = self._dataset(X, y, groups, encounter_ids)
        names = list(dataset.feature_names)
        if not names:
            raise ModelError("X has no feature columns")
        index = index_dataset(dataset)
        n_pos = index.n_positive
        if n_pos == 0 or n_pos == index.n_rows:
            raise ModelError(f"y has {n_pos} positive row(s) out of {index.n_rows}; training needs both outcomes")
        if self.threshold_rule in (ALERT_BUDGET, UTILITY) and dataset.chunk(0).encounter_ids is None:
            raise ModelError(f"threshold_rule={self.threshold_rule!r} needs encounter_ids in fit()")
        if not (0.0 < float(self.negative_fraction) <= 1.0):
            raise ModelError(f"negative_fraction must be in (0, 1] (got {self.negative_fraction!r})")

        choice = choose_device(self.device, engine=self.engine)
        logger.info("training %s", choice.message)
        patient_roles = assign_patient_roles(
            index.patient_positives > 0,
            validation_fraction=self.validation_fraction,
            calibration_fraction=self.calibration_fraction,
            random_state=self.random_state,
        )
        roles = assign_roles(index, patient_roles)
        n_train = roles.rows(TRAIN)
        n_train_pos = int(sum(int(labels[r == TRAIN].sum()) for labels, r in zip(index.chunk_labels, roles.chunk_roles, strict=True)))
        if n_train_pos == 0:
            raise ModelError(f"the training patients ({n_train} rows) have no positive rows")
        positive_weight = self._positive_weight(n_train, n_train_pos)

        engine = engine_for(self.engine)
        def booster_rows(role: int) -> RoleView:
            """The rows the booster sees of one role: training and early stopping sample alike."""
            return RoleView(dataset, index, roles, [role], positive_weight=positive_weight,
                            negative_fraction=float(self.negative_fraction), seed=int(self.random_state))

        train_rows = booster_rows(TRAIN)
        validation = booster_rows(VALIDATION) if roles.rows(VALIDATION) else None
        paged, estimated_gib = self._pages_to_disk(train_rows.n_rows, len(names), what="training")
        paged_validation, _ = self._pages_to_disk(validation.n_rows if validation else 0, len(names), what="early-stopping")
        scratch = page_cache(self.cache_dir) if paged or paged_validation else None
        settings = BoosterSettings(
            n_estimators=int(self.n_estimators),
            learning_rate=float(self.learning_rate),
            max_depth=int(self.max_depth),
            num_leaves=int(self.num_leaves),
            min_child_weight=float(self.min_child_weight),
            subsample=float(self.subsample),
            colsample=float(self.colsample),
            reg_lambda=float(self.reg_lambda),
            early_stopping_rounds=self.early_stopping_rounds,
            stopping_metric=str(self.stopping_metric),
            random_state=int(self.random_state),
            n_jobs=self.n_jobs,
            device=choice.device,
            external_memory=paged,
            external_memory_validation=paged_validation,
            cache_dir=scratch.name if scratch is not None else None,
        )
        try:
            if self.dask_address:
                trained = _train_on_dask(self.dask_address, self.engine, settings, train_rows, validation, len(names))
            else:
                trained = engine.train(settings, train_rows, validation, progress=progress)
        finally:
            if scratch is not None:
                scratch.cleanup()

        self.booster_ = trained.booster
        self.n_rounds_ = trained.n_rounds
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.classes_ = np.array([0, 1])
        self.device_ = choice.device
        self.device_message_ = choice.message
        self.scale_pos_weight_ = positive_weight
        self.row_roles_ = np.concatenate(roles.chunk_roles)
        self.fingerprint_ = DataFingerprint(
            rows=index.n_rows, patients=len(index.patients), positives=n_pos, features=len(names),
            x_sha256=index.x_sha256, y_sha256=index.y_sha256,
        )
        self.largest_chunk_rows_ = max(index.largest_chunk_rows, train_rows.largest_chunk_rows)

        metrics: dict[str, Any] = {"n_rounds": trained.n_rounds, "scale_pos_weight": positive_weight,
                                   "external_memory": paged, "external_memory_validation": paged_validation,
                                   "quantised_matrix_gib_estimated": round(estimated_gib, 3)}
        for role, set_name in ROLE_NAMES.items():
            metrics[f"{set_name}_rows"] = roles.rows(role)
            metrics[f"{set_name}_patients"] = roles.patients(role)
            metrics[f"{set_name}_positives"] = int(sum(
                int(labels[r == role].sum()) for labels, r in zip(index.chunk_labels, roles.chunk_roles, strict=True)
            ))
        if self.negative_fraction < 1.0:
            metrics["negative_fraction"] = float(self.negative_fraction)
            metrics["validation_rows_used"] = validation.n_rows if validation else 0
            metrics["train_rows_used"] = train_rows.n_rows
        held = _held_out_margins(dataset, roles, engine, self.booster_, n_jobs=self.n_jobs)
        is_validation, is_calibration = held["role"] == VALIDATION, held["role"] == CALIBRATION
        if validation is not None:
            val_y = held["y"][is_validation].astype(np.float64)
            weight = np.where(val_y == 1, positive_weight, 1.0)
            metrics["validation_log_loss"] = _weighted_log_loss(val_y, held["margin"][is_validation], weight)

        if self.calibration != "none":
            cal_margin, cal_y = held["margin"][is_calibration], held["y"][is_calibration]
            self.calibration_method_ = self._calibration_method(cal_y)
            self.calibrator_ = fit_calibrator(cal_margin, cal_y, method=self.calibration_method_)
            metrics["calibration_brier_uncalibrated"] = _brier(cal_y, expit(cal_margin))
            metrics["calibration_brier_calibrated"] = _brier(cal_y, self.calibrator_.predict(cal_margin))
        else:
            self.calibration_method_ = "none"
            self.calibrator_ = fit_calibrator(np.zeros(0), np.zeros(0), method="none")
        self.training_metrics_ = metrics

        self.operating_point_ = None
        self.threshold_rows_ = np.zeros(0, dtype=np.int64)
        self.threshold_risk_ = np.zeros(0)
        if self.threshold_rule != "none":
            chosen = is_calibration if is_calibration.any() else is_validation
            if not chosen.any():
                raise ModelError(
                    f"threshold_rule={self.threshold_rule!r} needs held-out patients: "
                    "set calibration_fraction or validation_fraction > 0"
                )
            risk = self.calibrator_.predict(held["margin"][chosen])
            y_chosen = held["y"][chosen]
            if self.threshold_rule == SENSITIVITY:
                self.operating_point_ = threshold_for_sensitivity(risk, y_chosen, target=self.threshold_target)
            elif self.threshold_rule == ALERT_BUDGET:
                self.operating_point_ = threshold_for_alert_budget(
                    risk,
                    encounter_ids=held["encounter_ids"][chosen],
                    hours_per_row=hours_per_row,
                    alerts_per_100_patient_days=self.threshold_target,
                )
            else:
                utilities = row_utilities(held["scoring_labels"][chosen], held["encounter_ids"][chosen])
                self.operating_point_ = threshold_for_utility(risk, utilities)
            self.threshold_rows_ = held["position"][chosen]
            self.threshold_risk_ = risk
        self.threshold_ = DEFAULT_THRESHOLD if self.operating_point_ is None else self.operating_point_.threshold
        logger.info("trained %s: %d rounds on %d rows", self.engine, trained.n_rounds, n_train)
        return self

    @property
    def split_(self) -> PatientSplit | None:
        """Row positions (in the order fit read them) of the train / validation / calibration patients."""
        roles = getattr(self, "row_roles_", None)
        if roles is None:
            return None
        return PatientSplit(np.flatnonzero(roles == TRAIN), np.flatnonzero(roles == VALIDATION),
                            np.flatnonzero(roles == CALIBRATION))

    def search(
        self,
        X: Any,
        y: Any = None,
        *,
        groups: Any = None,
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
        return float32_matrix(X, list(self.feature_names_in_))

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

