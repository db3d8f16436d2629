"""Decide whether a booster trains on the CPU or a CUDA GPU.

"auto" means: CUDA when this machine has a GPU the engine can use, else CPU. Without an
NVIDIA driver the answer is CPU at once; with one, the only reliable test is to try: a
tiny training run on the GPU (milliseconds once CUDA is initialised).

- xgboost: trains with device="cuda"; when no GPU is visible it warns and falls back to
  the CPU on its own, so the probe reads back the device the booster really used.
- lightgbm: the PyPI wheels are built without CUDA; a CUDA build trains with
  device_type="cuda", any other build raises, and we use the CPU.

The probe result is cached per engine for the life of the process.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from riskcast.errors import ModelError

logger = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("xgboost", "lightgbm")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    """The device an engine will use, and why, in words a person can read."""

    engine: str
    requested: str
    device: str
    reason: str

    @property
    def message(self) -> str:
        """One line for logs and the CLI, e.g. 'xgboost on cpu (device='auto': ...)'."""
        return f"{self.engine} on {self.device} (device={self.requested!r}: {self.reason})"


def _probe_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    return X, (X[:, 0] > 0).astype(np.float64)


def _nvidia_driver_present() -> bool:
    """True when the CUDA driver library loads (no driver means no usable NVIDIA GPU)."""
    import ctypes
    import sys

    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def _cuda_probe(engine: str) -> tuple[bool, str]:
    """(usable, detail): can `engine` train on a CUDA GPU in this process?"""
    if not _nvidia_driver_present():
        return False, "no NVIDIA driver (libcuda) is installed"
    X, y = _probe_data()
    if engine == "xgboost":
        import xgboost as xgb

        if not xgb.build_info().get("USE_CUDA", False):
            return False, "this xgboost build has no CUDA support"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                booster = xgb.train(
                    {"device": "cuda", "tree_method": "hist", "objective": "binary:logistic", "verbosity": 0},
                    xgb.DMatrix(X, label=y),
                    num_boost_round=2,
                )
            used = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
        except Exception as exc:  # noqa: BLE001 - any failure means "no usable GPU"
            return False, f"a CUDA test run failed ({type(exc).__name__})"
        if used.startswith("cuda"):
            return True, "a CUDA GPU is available"
        return False, "no visible CUDA GPU"
    import lightgbm as lgb

    try:
        lgb.train(
            {"device_type": "cuda", "objective": "binary", "verbose": -1, "num_threads": 1},
            lgb.Dataset(X, label=y, params={"verbose": -1}),
            num_boost_round=2,
        )
    except lgb.basic.LightGBMError as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return False, f"lightgbm cannot train on CUDA here ({text})"
    return True, "a CUDA GPU is available to this lightgbm build"


def choose_device(requested: str, *, engine: str) -> DeviceChoice:
    """The device `engine` will train on for a request of "auto", "cpu" or "cuda".

    An explicit "cuda" that cannot be honoured raises ModelError (falling back to the
    CPU silently would turn a one-minute job into an hour without telling anyone).
    """
    if engine not in ENGINES:
        raise ModelError(f"engine must be one of {ENGINES} (got {engine!r})")
    if requested not in DEVICES:
        raise ModelError(f"device must be one of {DEVICES} (got {requested!r})")
    if requested == "cpu":
        return DeviceChoice(engine, requested, "cpu", "asked for the CPU")
    usable, detail = _cuda_probe(engine)
    if usable:
        return DeviceChoice(engine, requested, "cuda", detail)
    if requested == "cuda":
        raise ModelError(f"device='cuda' was requested for {engine} but {detail}; use device='auto' or 'cpu'")
    return DeviceChoice(engine, requested, "cpu", f"{detail}, using the CPU")


def resolve_device(requested: str, engine: str) -> str:
    """"cpu" or "cuda": the device `engine` will actually use (see choose_device)."""
    return choose_device(requested, engine=engine).device


def gpu_available(engine: str = "xgboost") -> bool:
    """True when `engine` can train on a CUDA GPU here (used by tests to skip)."""
    return _cuda_probe(engine)[0]
