"""The two native boosters behind RiskModel, with one small interface.

Each engine trains with early stopping on validation patients, returns raw margins
(log-odds) and SHAP contributions through the library's own TreeSHAP, and reads and
writes its native file format. Nothing here knows about calibration or patients.

Training reads its rows chunk by chunk from a `RowSource` (riskcast.model.dataset.RoleView):
XGBoost through a `DataIter` into a `QuantileDMatrix` (or an `ExtMemQuantileDMatrix` that
keeps its pages on disk, when `external_memory` is set), LightGBM through `lgb.Sequence`
objects, one per chunk. Only the quantised matrix and one chunk of float32 rows are in
memory at a time; no pandas copy is made.

After training, a booster is cut to its best iteration and passed through its native
serialised form once, so the booster in memory is exactly what a saved artefact holds:
a reloaded model predicts bit-for-bit the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from riskcast.errors import ModelError


# Early-stopping metrics in engine-neutral names -> each library's own name. Log loss watches
# the probabilities; AUROC and AUPRC watch only the ranking, which calibration does not change.
STOPPING_METRICS = {
    "logloss": {"xgboost": "logloss", "lightgbm": "binary_logloss"},
    "auc": {"xgboost": "auc", "lightgbm": "auc"},
    "aucpr": {"xgboost": "aucpr", "lightgbm": "average_precision"},
}
MAXIMISED_METRICS = frozenset({"auc", "aucpr"})
"""The stopping metrics that improve upwards (log loss improves downwards)."""


def stopping_metric_name(metric: str, engine: str) -> str:
    """The library's name for early-stopping metric `metric` (one of STOPPING_METRICS)."""
    if metric not in STOPPING_METRICS:
        raise ModelError(f"stopping_metric must be one of {tuple(STOPPING_METRICS)} (got {metric!r})")
    return STOPPING_METRICS[metric][engine]


PROGRESS_EVERY_ROUNDS = 25
"""How often, in boosting rounds, training says how far it has got."""

Progress = Callable[[str], None]


class RoundReporter:
    """Every `every` rounds, says which round boosting is at and how the early-stopping
    metric stands on the validation rows (an aggregate: no patient's value is named).

    At hospital scale one round can take seconds and a fit an hour; without this the
    command is silent for all of it.
    """

    def __init__(self, progress: Progress, *, limit: int, metric: str, every: int = PROGRESS_EVERY_ROUNDS) -> None:
        self.progress, self.limit, self.metric, self.every = progress, limit, metric, every
        self.higher_is_better = metric in MAXIMISED_METRICS
        self.best: float | None = None
        self.best_round = 0

    def record(self, iteration: int, value: float | None) -> None:
        """After 0-based round `iteration`, with its validation metric (None: no validation rows)."""
        round_number = iteration + 1
        if value is not None and (self.best is None or (value > self.best if self.higher_is_better else value < self.best)):
            self.best, self.best_round = value, round_number
        if round_number % self.every:
            return
        message = f"boosting round {round_number} of at most {self.limit}"
        if value is not None and self.best is not None:
            message += f": validation {self.metric} {value:.5f} (best {self.best:.5f} at round {self.best_round})"
        self.progress(message)


@dataclass(frozen=True)
class BoosterSettings:
    """Hyperparameters in engine-neutral names (see RiskModel for their meaning)."""

    n_estimators: int
    learning_rate: float
    max_depth: int
    num_leaves: int
    min_child_weight: float
    subsample: float
    colsample: float
    early_stopping_rounds: int | None
    random_state: int
    n_jobs: int | None
    device: str
    reg_lambda: float = 1.0
    stopping_metric: str = "logloss"  # what early stopping watches on the validation rows (STOPPING_METRICS)
    external_memory: bool = False
    external_memory_validation: bool = False  # the early-stopping rows page too (at scale, a fifth of the data)
    cache_dir: str | None = None  # where ExtMemQuantileDMatrix keeps its pages


class RowSource(Protocol):
    """Training rows in chunks (see riskcast.model.dataset.RoleView)."""

    def chunks_with_rows(self) -> list[int]: ...

    def data(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def targets(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...

    def rows_in(self, index: int) -> int: ...


@dataclass(frozen=True)
class Trained:
    """A booster cut to its best iteration, and how many rounds that is."""

    booster: Any
    n_rounds: int


class XGBoostEngine:
    """xgboost: hist trees, QuantileDMatrix for training, UBJSON on disk."""

    name = "xgboost"
    booster_file = "booster.ubj"

    @staticmethod
    def train(
        settings: BoosterSettings, train: RowSource, validation: RowSource | None, *, progress: Progress | None = None
    ) -> Trained:
        """Train with early stopping on `validation` (when given) and cut to the best round;
        `progress` hears every PROGRESS_EVERY_ROUNDS rounds how far it has got."""
        import xgboost as xgb

        params = {
            "objective": "binary:logistic",
            "eval_metric": stopping_metric_name(settings.stopping_metric, "xgboost"),
            "tree_method": "hist",
            "device": settings.device,
            "learning_rate": settings.learning_rate,
            "max_depth": settings.max_depth,
            "min_child_weight": settings.min_child_weight,
            "subsample": settings.subsample,
            "colsample_bytree": settings.colsample,
            "lambda": settings.reg_lambda,
            "seed": settings.random_state,
            "nthread": settings.n_jobs or 0,
        }
        nthread = settings.n_jobs or 0
        cache = str(Path(settings.cache_dir or ".") / "xgb-cache")
        if settings.external_memory:
            dtrain = xgb.ExtMemQuantileDMatrix(_chunk_iter(train, cache_prefix=cache), nthread=nthread)
        else:
            dtrain = xgb.QuantileDMatrix(_chunk_iter(train), nthread=nthread)
        evals, early = [], None
        if validation is not None:
            if settings.external_memory_validation:
                dval = xgb.ExtMemQuantileDMatrix(_chunk_iter(validation, cache_prefix=cache + "-validation"),
                                                 ref=dtrain, nthread=nthread)
            else:
                dval = xgb.QuantileDMatrix(_chunk_iter(validation), ref=dtrain, nthread=nthread)
            evals, early = [(dval, "validation")], settings.early_stopping_rounds
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=settings.n_estimators,
            evals=evals,
            early_stopping_rounds=early,
            verbose_eval=False,
            callbacks=[_xgboost_reporter(RoundReporter(progress, limit=settings.n_estimators,
                                                       metric=settings.stopping_metric))] if progress else None,
        )
        n_rounds = booster.best_iteration + 1 if early else booster.num_boosted_rounds()
        booster = booster[:n_rounds]
        return Trained(XGBoostEngine.from_bytes(XGBoostEngine.to_bytes(booster), device=settings.device), n_rounds)

    @staticmethod
    def _dmatrix(booster: Any, X: np.ndarray, n_jobs: int | None) -> Any:
        import xgboost as xgb

        booster.set_param({"nthread": n_jobs or 0})
        return xgb.DMatrix(X, missing=np.nan, nthread=n_jobs or 0)

    @staticmethod
    def margin(booster: Any, X: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
        """Raw log-odds per row (float64 of xgboost's float32)."""
        dmatrix = XGBoostEngine._dmatrix(booster, X, n_jobs)
        return booster.predict(dmatrix, output_margin=True).astype(np.float64)

    @staticmethod
    def contributions(booster: Any, X: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
        """TreeSHAP values (n, p + 1); the last column is the bias; rows sum to the margin."""
        dmatrix = XGBoostEngine._dmatrix(booster, X, n_jobs)
        return booster.predict(dmatrix, pred_contribs=True).astype(np.float64)

    @staticmethod
    def n_features(booster: Any) -> int:
        """How many input columns the booster expects."""
        return int(booster.num_features())

    @staticmethod
    def to_bytes(booster: Any) -> bytes:
        """The booster in UBJSON."""
        return bytes(booster.save_raw(raw_format="ubj"))

    @staticmethod
    def from_bytes(data: bytes, *, device: str) -> Any:
        """A booster from UBJSON bytes, set to predict on `device`."""
        import xgboost as xgb

        booster = xgb.Booster(model_file=bytearray(data))
        booster.set_param({"device": device})
        return booster

    @staticmethod
    def save(booster: Any, path: Path) -> None:
        """Write the native file (`booster.ubj`)."""
        booster.save_model(str(path))

    @staticmethod
    def load(path: Path, *, device: str) -> Any:
        """Read the native file."""
        return XGBoostEngine.from_bytes(path.read_bytes(), device=device)


class LightGBMEngine:
    """lightgbm: leaf-wise trees, text model on disk."""

    name = "lightgbm"
    booster_file = "booster.txt"

    @staticmethod
    def train(
        settings: BoosterSettings, train: RowSource, validation: RowSource | None, *, progress: Progress | None = None
    ) -> Trained:
        """Train with early stopping on `validation` (when given) and cut to the best round;
        `progress` hears every PROGRESS_EVERY_ROUNDS rounds how far it has got."""
        import lightgbm as lgb

        params = {
            "objective": "binary",
            "metric": stopping_metric_name(settings.stopping_metric, "lightgbm"),
            "device_type": settings.device,
            "learning_rate": settings.learning_rate,
            "num_leaves": settings.num_leaves,
            "min_sum_hessian_in_leaf": settings.min_child_weight,
            "bagging_fraction": settings.subsample,
            "bagging_freq": 1 if settings.subsample < 1.0 else 0,
            "feature_fraction": settings.colsample,
            "lambda_l2": settings.reg_lambda,
            "seed": settings.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": settings.n_jobs or 0,
            "verbose": -1,
        }
        dtrain = _lightgbm_dataset(train, reference=None)
        valid_sets, callbacks, stopping = [], [], False
        if validation is not None:
            valid_sets = [_lightgbm_dataset(validation, reference=dtrain)]
            if settings.early_stopping_rounds:
                callbacks, stopping = [lgb.early_stopping(settings.early_stopping_rounds, verbose=False)], True
        if progress:
            callbacks.append(_lightgbm_reporter(RoundReporter(progress, limit=settings.n_estimators,
                                                              metric=settings.stopping_metric)))
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=settings.n_estimators,
            valid_sets=valid_sets,
            valid_names=["validation"] if valid_sets else None,
            callbacks=callbacks,
        )
        n_rounds = booster.best_iteration if stopping and booster.best_iteration > 0 else booster.current_iteration()
        text = booster.model_to_string(num_iteration=n_rounds)
        return Trained(LightGBMEngine.from_bytes(text.encode("utf-8"), device=settings.device), n_rounds)

    @staticmethod
    def margin(booster: Any, X: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
        """Raw log-odds per row (float64)."""
        return np.asarray(booster.predict(X, raw_score=True, num_threads=n_jobs or 0), dtype=np.float64)

    @staticmethod
    def contributions(booster: Any, X: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
        """TreeSHAP values (n, p + 1); the last column is the bias; rows sum to the margin."""
        return np.asarray(booster.predict(X, pred_contrib=True, num_threads=n_jobs or 0), dtype=np.float64)

    @staticmethod
    def n_features(booster: Any) -> int:
        """How many input columns the booster expects."""
        return int(booster.num_feature())

    @staticmethod
    def to_bytes(booster: Any) -> bytes:
        """The booster as LightGBM model text (UTF-8)."""
        return booster.model_to_string().encode("utf-8")

    @staticmethod
    def from_bytes(data: bytes, *, device: str) -> Any:
        """A booster from model text (lightgbm always predicts on the CPU)."""
        import lightgbm as lgb

        return lgb.Booster(model_str=data.decode("utf-8"))

    @staticmethod
    def save(booster: Any, path: Path) -> None:
        """Write the native file (`booster.txt`)."""
        booster.save_model(str(path))

    @staticmethod
    def load(path: Path, *, device: str) -> Any:
        """Read the native file."""
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))


def _xgboost_reporter(reporter: RoundReporter) -> Any:
    """An xgboost training callback that passes each round's validation metric to `reporter`."""
    import xgboost as xgb

    class Report(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, list[float]]]) -> bool:
            history = next(iter(evals_log.get("validation", {}).values()), None)
            reporter.record(epoch, float(history[-1]) if history else None)
            return False  # never asks to stop: early stopping decides that

    return Report()


def _lightgbm_reporter(reporter: RoundReporter) -> Callable[[Any], None]:
    """A lightgbm callback that passes each round's validation metric to `reporter`."""

    def report(env: Any) -> None:
        values = [result[2] for result in env.evaluation_result_list or [] if result[0] == "validation"]
        reporter.record(env.iteration - env.begin_iteration, float(values[0]) if values else None)

    return report


def _chunk_iter_class() -> type:
    import xgboost as xgb

    class ChunkIter(xgb.DataIter):
        """A RowSource's chunks, one at a time, for XGBoost's iterator-built matrices."""

        def __init__(self, source: RowSource, cache_prefix: str | None = None) -> None:
            self.source = source
            self.chunks = source.chunks_with_rows()
            self.position = 0
            super().__init__(cache_prefix=cache_prefix, release_data=True)

        def next(self, input_data: Any) -> bool:
            if self.position == len(self.chunks):
                return False
            X, y, weight = self.source.data(self.chunks[self.position])
            input_data(data=X, label=y, weight=weight)
            self.position += 1
            return True

        def reset(self) -> None:
            self.position = 0

    return ChunkIter


def _chunk_iter(source: RowSource, cache_prefix: str | None = None) -> Any:
    return _chunk_iter_class()(source, cache_prefix)


class _ChunkCache:
    """The one chunk of rows LightGBM's sequences are reading (so only one is in memory)."""

    def __init__(self, source: RowSource) -> None:
        self.source = source
        self.index: int | None = None
        self.X: np.ndarray | None = None

    def rows(self, index: int) -> np.ndarray:
        if self.index != index:
            self.X = None
            self.X = self.source.data(index)[0]
            self.index = index
        assert self.X is not None
        return self.X


def _lightgbm_dataset(source: RowSource, *, reference: Any) -> Any:
    """A lightgbm.Dataset read from the source's chunks through lgb.Sequence objects."""
    import lightgbm as lgb

    cache = _ChunkCache(source)

    class ChunkSequence(lgb.Sequence):
        batch_size = 65_536

        def __init__(self, index: int, n_rows: int) -> None:
            self.index, self.n_rows = index, n_rows

        def __len__(self) -> int:
            return self.n_rows

        def __getitem__(self, item: Any) -> np.ndarray:
            # LightGBM samples rows as doubles; a batch at a time, so the copy stays small.
            return np.asarray(cache.rows(self.index)[item], dtype=np.float64)

    chunks = source.chunks_with_rows()
    sequences = [ChunkSequence(i, source.rows_in(i)) for i in chunks]
    targets = [source.targets(i) for i in chunks]
    label = np.concatenate([y for y, _ in targets])
    weight = np.concatenate([w for _, w in targets])
    return lgb.Dataset(sequences, label=label, weight=weight, reference=reference, params={"verbose": -1})


Engine = type[XGBoostEngine] | type[LightGBMEngine]
_ENGINES: dict[str, Engine] = {"xgboost": XGBoostEngine, "lightgbm": LightGBMEngine}


def engine_for(name: str) -> Engine:
    """The engine class for "xgboost" or "lightgbm"."""
    try:
        return _ENGINES[name]
    except KeyError:
        raise ModelError(f"engine must be one of {tuple(_ENGINES)} (got {name!r})") from None


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour a saved model depends on."""
    import platform

    import lightgbm
    import sklearn
    import xgboost

    import riskcast

    return {
        "riskcast": riskcast.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "xgboost": xgboost.__version__,
        "lightgbm": lightgbm.__version__,
    }
