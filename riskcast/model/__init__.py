"""Train, calibrate and predict deterioration risk; save models as plain files; keep a registry.

The model knows nothing of the store or the feature builder: it takes numeric features
(pandas or polars, NaN = missing), 0/1 outcomes and patient ids.
"""

from riskcast.model.artefact import load_model, save_model
from riskcast.model.calibration import fit_calibrator
from riskcast.model.device import DeviceChoice, choose_device, gpu_available, resolve_device
from riskcast.model.estimator import RiskModel, SearchTrial
from riskcast.model.inputs import DataFingerprint
from riskcast.model.operating_point import (
    OperatingPoint,
    alert_episodes,
    alert_rate_at,
    fixed_operating_point,
    threshold_for_alert_budget,
    threshold_for_sensitivity,
)
from riskcast.model.registry import ModelRegistry, VersionInfo
from riskcast.model.splits import PatientSplit, split_patients

__all__ = [
    "DataFingerprint",
    "DeviceChoice",
    "ModelRegistry",
    "OperatingPoint",
    "PatientSplit",
    "RiskModel",
    "SearchTrial",
    "VersionInfo",
    "alert_episodes",
    "alert_rate_at",
    "choose_device",
    "fit_calibrator",
    "fixed_operating_point",
    "gpu_available",
    "load_model",
    "resolve_device",
    "save_model",
    "split_patients",
    "threshold_for_alert_budget",
    "threshold_for_sensitivity",
]
