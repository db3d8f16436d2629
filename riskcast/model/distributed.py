"""Training the booster on a Dask cluster: the same rows, the same artefact.

`DaskXGBoostEngine` trains with `xgboost.dask` from Dask DataFrames that have one partition
per chunk of the training data, each read by the worker it is pinned to (so each worker
reads its shards of the feature store itself: on several hosts the store must be on a
shared file system). Everything around the booster — the patient split, calibration, the
operating point, evaluation, the model card and the gates — runs locally exactly as for a
local fit, so a Dask-trained model is registered and judged like any other.

`lightgbm.dask` has no supported early stopping, so distributed training is XGBoost only.

Addresses: "tcp://host:8786" (a running `dask scheduler`), or "local" / "local:N" for a
`distributed.LocalCluster` of N worker processes on this machine (default 2), started without
work stealing. A scheduler of your own gives repeatable fits when it is started without it too
(`DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING=False dask scheduler`): under load the scheduler
otherwise moves a task, and with it a partition, to another worker, and the trees change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from riskcast.errors import ModelError
from riskcast.model.engines import BoosterSettings, RowSource, Trained, XGBoostEngine, stopping_metric_name

LOCAL = "local"
STEALING = "distributed.scheduler.work-stealing"


def parse_address(address: str) -> tuple[str, int | None]:
    """("local", workers) or (scheduler address, None)."""
    text = address.strip()
    if text == LOCAL or text.startswith(LOCAL + ":"):
        workers = text.partition(":")[2]
        if workers and not (workers.isdigit() and int(workers) >= 1):
            raise ModelError(f"--dask {address!r}: write local or local:N with N a number of workers, e.g. local:2")
        return LOCAL, int(workers) if workers else 2
    if "://" not in text and ":" not in text:
        raise ModelError(f"--dask {address!r} is neither local[:N] nor a scheduler address such as tcp://host:8786")
    return text, None


@contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A distributed.Client to the scheduler, or to a LocalCluster started (and stopped) here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask is a dependency
        raise ModelError("Dask is not installed: pip install 'dask[distributed]'") from exc
    import dask

    where, workers = parse_address(address)
    if where == LOCAL:
        # Without work stealing every task runs where its pinned chunk is, so the fit is
        # repeatable on a busy machine too (a stolen task moves a partition to another rank).
        with dask.config.set({STEALING: False}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
        return
    try:
        client = Client(where, timeout="30s")
    except OSError as exc:
        raise ModelError(f"cannot reach the Dask scheduler at {where} ({exc}); start one with `dask scheduler`") from exc
    try:
        yield client
    finally:
        client.close()


def _partition(source: RowSource, index: int, n_features: int) -> pd.DataFrame:
    """One chunk's selected rows as a pandas frame: features f0..fn, then label and weight."""
    X, y, weight = source.data(index)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(n_features)], copy=False)
    frame["label"] = y
    frame["weight"] = weight
    return frame


def _by_rank(workers: dict[str, Any]) -> list[str]:
    """Worker addresses in xgboost.dask's rank order: its tracker sorts the task ids
    "[xgboost.dask-{name}]:{address}" (xgboost/dask/__init__.py), so ranks follow the names."""
    return sorted(workers, key=lambda address: f"[xgboost.dask-{workers[address].get('name')}]:{address}")


def _dask_frame(client: Any, source: RowSource, n_features: int) -> Any:
    """The chunks as one Dask DataFrame, chunk i held by the worker of rank i mod n (round robin).

    Pinning the chunks makes a fit repeatable: xgboost.dask trains each worker on the
    partitions it holds and merges their quantile sketches in rank order, so the same chunks
    on the same ranks give the same sketch and the same trees, where placement left to the
    scheduler (or to address order, which is not rank order) changes from run to run."""
    import dask.dataframe as dd

    workers = _by_rank(client.scheduler_info()["workers"])
    if not workers:
        raise ModelError("the Dask cluster has no workers: start at least one `dask worker` for its scheduler")
    meta = pd.DataFrame({**{f"f{i}": pd.Series(dtype=np.float32) for i in range(n_features)},
                         "label": pd.Series(dtype=np.float32), "weight": pd.Series(dtype=np.float32)})
    shared = client.scatter(source, broadcast=True, hash=False)  # sent once, not with every chunk
    parts = [client.submit(_partition, shared, index, n_features, workers=[workers[position % len(workers)]],
                           allow_other_workers=False, pure=False)
             for position, index in enumerate(source.chunks_with_rows())]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


class DaskXGBoostEngine(XGBoostEngine):
    """XGBoost trained by xgboost.dask on a cluster; predicts and saves like XGBoostEngine."""

    def __init__(self, client: Any, n_features: int) -> None:
        self.client = client
        self.n_features = n_features

    def train(self, settings: BoosterSettings, train: RowSource, validation: RowSource | None) -> Trained:  # type: ignore[override]
        import xgboost.dask as dxgb

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
        }
        columns = [f"f{i}" for i in range(self.n_features)]
        frame = _dask_frame(self.client, train, self.n_features)
        dtrain = dxgb.DaskQuantileDMatrix(self.client, frame[columns], frame["label"], weight=frame["weight"])
        evals, early = [], None
        if validation is not None:
            held = _dask_frame(self.client, validation, self.n_features)
            dval = dxgb.DaskQuantileDMatrix(self.client, held[columns], held["label"], weight=held["weight"],
                                                ref=dtrain)
            evals, early = [(dval, "validation")], settings.early_stopping_rounds
        output = dxgb.train(self.client, params, dtrain, num_boost_round=settings.n_estimators, evals=evals,
                                early_stopping_rounds=early, verbose_eval=False)
        booster = output["booster"]
        n_rounds = booster.best_iteration + 1 if early else booster.num_boosted_rounds()
        booster = booster[:n_rounds]
        booster.feature_names = None  # the frames' f0..fn: the local booster takes plain arrays
        booster.feature_types = None
        return Trained(XGBoostEngine.from_bytes(XGBoostEngine.to_bytes(booster), device=settings.device), n_rounds)
