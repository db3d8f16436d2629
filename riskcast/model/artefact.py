"""A trained RiskModel as a directory of plain files, and back.

    booster.ubj | booster.txt   the booster in its native format (xgboost UBJSON, lightgbm text)
    calibrator.json             the calibrator as numbers (isotonic thresholds or Platt a, b)
    features.json               feature names, in the order the booster expects them
    config.json                 parameters, engine, device, threshold, library versions
    metrics.json                training metrics from fit + evaluation metrics passed in
    fingerprint.json            rows, patients, positives, features, sha256 of X and y
    model_card.json / .md       intended use, data, metrics, limits (from `metadata`)

Nothing is pickled, so an artefact can be read by a person, diffed, and loaded without
running code from the file. A reloaded model predicts bit-for-bit what the saved one did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from riskcast.errors import ModelError
from riskcast.model.calibration import calibrator_from_dict
from riskcast.model.device import choose_device
from riskcast.model.engines import engine_for, library_versions
from riskcast.model.estimator import RiskModel
from riskcast.model.inputs import DataFingerprint
from riskcast.model.operating_point import OperatingPoint

FORMAT = "riskcast-model"
FORMAT_VERSION = 1
CARD_SECTIONS = ("intended_use", "data", "metrics", "limits")
CARD_FILE = "model_card.json"
"""The model card, read back by riskcast.pipeline.reports (the owner of report files)."""
CARD_MARKDOWN_FILE = "model_card.md"
METRICS_FILE = "metrics.json"
_NOT_STATED = "not stated"


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays to Python, NaN/inf to None, dates to ISO text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [_jsonable(v) for v in (sorted(value) if isinstance(value, set) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ModelError(f"metadata value of type {type(value).__name__} cannot be written as JSON")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read JSON ({exc})") from exc


def _card(model: RiskModel, metadata: Mapping[str, Any], training: Mapping[str, Any]) -> dict[str, Any]:
    point = model.operating_point_
    return {
        "model": {
            "engine": model.engine,
            "device": model.device_,
            "n_rounds": model.n_rounds_,
            "n_features": model.n_features_in_,
            "calibration": getattr(model, "calibration_method_", model.calibration),
            "threshold": model.threshold_,
            "threshold_rule": None if point is None else point.rule,
            "threshold_target": None if point is None else point.target,
        },
        "intended_use": metadata.get("intended_use", _NOT_STATED),
        "data": {"description": metadata.get("data", _NOT_STATED), "fingerprint": model.fingerprint_.to_dict()},
        "metrics": {"training": dict(training), "evaluation": metadata.get("metrics", {})},
        "limits": metadata.get("limits", _NOT_STATED),
        "other": {k: v for k, v in metadata.items() if k not in CARD_SECTIONS},
    }


def _markdown_value(value: Any) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "- none\n"
        return "".join(f"- **{k}**: {json.dumps(_jsonable(v))}\n" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "".join(f"- {v}\n" for v in value) or "- none\n"
    return f"{value}\n"


def _card_markdown(card: Mapping[str, Any]) -> str:
    model = card["model"]
    lines = [
        f"# Model card: riskcast deterioration model ({model['engine']})\n",
        "## Intended use\n",
        _markdown_value(card["intended_use"]),
        "## Model\n",
        _markdown_value(model),
        "## Data\n",
        _markdown_value(card["data"]["description"]),
        "Training data fingerprint (counts and hashes only, no identifiers):\n",
        _markdown_value(card["data"]["fingerprint"]),
        "## Metrics\n",
        "Training (from fit; validation and calibration sets are held-out patients):\n",
        _markdown_value(card["metrics"]["training"]),
        "Evaluation:\n",
        _markdown_value(card["metrics"]["evaluation"]),
        "## Limits\n",
        _markdown_value(card["limits"]),
    ]
    if card["other"]:
        lines += ["## Other\n", _markdown_value(card["other"])]
    return "\n".join(lines)


def save_model(model: RiskModel, path: Path, *, metadata: Mapping[str, Any]) -> Path:
    """Write a fitted model to the directory `path` (created; must not hold files yet).

    `metadata` fills the model card: "intended_use", "data", "metrics" (evaluation
    metrics, also written to metrics.json) and "limits"; any other keys are kept under
    "other". Values must be JSON-like (numbers, text, lists, mappings, dates).
    """
    if not isinstance(model, RiskModel) or not hasattr(model, "booster_"):
        raise ModelError("save_model needs a fitted RiskModel")
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ModelError(f"{path}: already exists and is not an empty directory; refusing to overwrite a model")
    metadata = dict(metadata)
    _jsonable(metadata)  # fail before writing anything
    path.mkdir(parents=True, exist_ok=True)
    engine = engine_for(model.engine)
    engine.save(model.booster_, path / engine.booster_file)
    _write_json(path / "calibrator.json", model.calibrator_.to_dict())
    _write_json(path / "features.json", {"count": model.n_features_in_, "names": list(model.feature_names_in_)})
    point = model.operating_point_
    _write_json(
        path / "config.json",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "engine": model.engine,
            "booster_file": engine.booster_file,
            "device": model.device_,
            "n_rounds": model.n_rounds_,
            "scale_pos_weight": model.scale_pos_weight_,
            "threshold": model.threshold_,
            "operating_point": None if point is None else point.to_dict(),
            "params": model.get_params(),
            "versions": library_versions(),
        },
    )
    training = dict(getattr(model, "training_metrics_", {}))
    _write_json(path / METRICS_FILE, {"training": training, "evaluation": metadata.get("metrics", {})})
    _write_json(path / "fingerprint.json", model.fingerprint_.to_dict())
    card = _card(model, metadata, training)
    _write_json(path / CARD_FILE, card)
    (path / CARD_MARKDOWN_FILE).write_text(_card_markdown(card), encoding="utf-8")
    return path


REQUIRED_FILES = ("config.json", "calibrator.json", "features.json", "fingerprint.json")


def load_model(path: Path, *, device: str | None = None) -> RiskModel:
    """Read a model directory written by save_model; no pickle is involved.

    `device` is where xgboost predicts: None keeps the saved device when this machine
    has it (a CUDA-trained model falls back to the CPU on a machine without a GPU).
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: no model directory here")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"{path}: not a complete model artefact, missing {', '.join(missing)}")
    config = _read_json(path / "config.json")
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{path / 'config.json'}: format {config.get('format')!r} version {config.get('format_version')!r} "
            f"is not {FORMAT!r} version {FORMAT_VERSION}"
        )
    try:
        model = RiskModel(**config["params"])
    except TypeError as exc:
        raise ModelError(f"{path / 'config.json'}: parameters do not fit this riskcast version ({exc})") from exc
    engine = engine_for(model.engine)
    booster_path = path / engine.booster_file
    if not booster_path.is_file():
        raise ModelError(f"{path}: missing {engine.booster_file} for engine {model.engine!r}")
    if device is None:
        device = "cpu" if config.get("device") == "cpu" else "auto"
    choice = choose_device(device, engine=model.engine)
    booster = engine.load(booster_path, device=choice.device)
    names = _read_json(path / "features.json").get("names")
    if not isinstance(names, list) or not names:
        raise ModelError(f"{path / 'features.json'}: no feature names")
    if engine.n_features(booster) != len(names):
        raise ModelError(
            f"{path}: the booster expects {engine.n_features(booster)} features but features.json lists {len(names)}"
        )
    point = config.get("operating_point")
    model.booster_ = booster
    model.n_rounds_ = int(config["n_rounds"])
    model.feature_names_in_ = np.asarray(names, dtype=object)
    model.n_features_in_ = len(names)
    model.classes_ = np.array([0, 1])
    model.device_ = choice.device
    model.device_message_ = choice.message
    model.scale_pos_weight_ = float(config["scale_pos_weight"])
    model.calibrator_ = calibrator_from_dict(_read_json(path / "calibrator.json"))
    model.calibration_method_ = model.calibrator_.method
    model.operating_point_ = None if point is None else OperatingPoint.from_dict(point)
    model.threshold_ = float(config["threshold"])
    model.fingerprint_ = DataFingerprint.from_dict(_read_json(path / "fingerprint.json"))
    metrics_path = path / METRICS_FILE
    model.training_metrics_ = _read_json(metrics_path).get("training", {}) if metrics_path.is_file() else {}
    model.row_roles_ = None  # the row split belongs to the training data, which an artefact does not hold
    return model
