"""How good are the scores? Discrimination, calibration, alert-level metrics, baselines.

- ``metrics``: every measure over a predictions frame (described there), ``evaluate`` for the
  whole report, ``jsonable``, which turns any result into plain JSON, and ``from_jsonable``,
  which reads it back;
- ``markdown``: the report as Markdown (``EvaluationReport.to_markdown``).

The PhysioNet 2019 utility is riskcast.utility's physionet_utility; ``predictions_utility`` here reads it off a
predictions frame. The names callers use are re-exported here.
"""

from riskcast.evaluate.metrics import (
    DEFAULT_BASELINES,
    DEFAULT_DETECTION_WINDOW_HOURS,
    ENCOUNTER,
    EVENT_TIME,
    HOURS_PER_ROW,
    LABEL,
    PATIENT,
    SCORE,
    SEPSIS_LABEL,
    TIME,
    AlertMetrics,
    BaselineComparison,
    CalibrationResult,
    Discrimination,
    EvaluationReport,
    alert_metrics,
    calibration,
    compare_at_same_alert_rate,
    discrimination,
    evaluate,
    from_jsonable,
    jsonable,
    predictions_utility,
    threshold_at_alert_rate,
)
from riskcast.evaluate.markdown import evaluation_markdown

__all__ = [
    "DEFAULT_BASELINES",
    "DEFAULT_DETECTION_WINDOW_HOURS",
    "ENCOUNTER",
    "EVENT_TIME",
    "HOURS_PER_ROW",
    "LABEL",
    "PATIENT",
    "SCORE",
    "SEPSIS_LABEL",
    "TIME",
    "AlertMetrics",
    "BaselineComparison",
    "CalibrationResult",
    "Discrimination",
    "EvaluationReport",
    "alert_metrics",
    "calibration",
    "compare_at_same_alert_rate",
    "discrimination",
    "evaluate",
    "evaluation_markdown",
    "from_jsonable",
    "jsonable",
    "predictions_utility",
    "threshold_at_alert_rate",
]
