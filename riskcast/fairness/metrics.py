"""What the audit measures, and how: each metric's name and label, computed from counts.

Per group (and overall), at the model's operating point (flagged = risk >= threshold), over
the group's hourly rows: selection (alert) rate, sensitivity (true-positive rate),
false-positive rate, PPV and false-negative rate, as a Fairlearn ``MetricFrame`` (over
confusion cells weighted by their row counts, which gives exactly the rows' values in
milliseconds); calibration-in-the-large; alert episodes per 100 patient-days
(``riskcast.alert_burden``); and how often the patient was measured: heart-rate observations
per day (the mean over hours of ``heart_rate_count_24h``) and the share of hours whose last
heart rate was more than 4 h old. A group measured less often is scored on staler data,
which is how a process difference becomes a model difference. Beside them, from
``riskcast.evaluate``: AUROC (``discrimination``), ECE (``calibration``), median alert lead
time and the share of events flagged (``alert_metrics``: first flag in the 48 h before the
event).

The metrics with a bootstrap interval (BOOTSTRAP_METRICS) are ratios of counts summed over
rows (COUNTS), so that a bootstrap resample needs only the counts re-summed
(``riskcast.fairness.bootstrap``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl
from fairlearn.metrics import (
    MetricFrame,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import precision_score

from riskcast import alert_burden
from riskcast.errors import EvaluationError
from riskcast.evaluate import (
    ENCOUNTER,
    EVENT_TIME,
    LABEL,
    PATIENT,
    SCORE,
    TIME,
    alert_metrics,
    calibration,
    discrimination,
)

INTERSECTION = " & "
"""What joins the groups of two features into the name of their intersection."""

# Metrics with a patient-bootstrap interval, computed from summed counts (see metrics_from_counts).
RATE_METRICS = ("selection_rate", "sensitivity", "false_positive_rate", "ppv", "false_negative_rate")
BOOTSTRAP_METRICS = (
    *RATE_METRICS,
    "calibration_in_the_large",
    "alerts_per_100_patient_days",
    "measurements_per_day",
    "share_hours_unmeasured",
)
# Metrics from riskcast.evaluate, per group: AUROC has its own interval; the others are points.
POINT_METRICS = ("auroc", "ece", "median_lead_time_hours", "encounter_sensitivity")
EVALUATED_METRICS = ("auroc", "auroc_low", "auroc_high", "ece", "median_lead_time_hours", "encounter_sensitivity")
"""What riskcast.evaluate gives per group, in the reports' order: POINT_METRICS and AUROC's interval."""
METRIC_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "selection_rate": "alert (selection) rate, hours",
        "sensitivity": "sensitivity, hours",
        "false_positive_rate": "false-positive rate, hours",
        "ppv": "PPV, hours",
        "false_negative_rate": "false-negative rate, hours",
        "calibration_in_the_large": "calibration-in-the-large",
        "alerts_per_100_patient_days": "alerts per 100 patient-days",
        "measurements_per_day": "heart-rate observations per day",
        "share_hours_unmeasured": "hours with heart rate > 4 h old",
        "auroc": "AUROC",
        "ece": "ECE",
        "median_lead_time_hours": "median lead time (h)",
        "encounter_sensitivity": "events flagged within 48 h",
    }
)
COUNTS = (
    "rows",
    "positives",
    "flagged",
    "true_positives",
    "false_positives",
    "risk_sum",
    "episodes",
    "measurement_sum",
    "unmeasured_hours",
)
"""The per-row counts every BOOTSTRAP_METRICS value is a ratio of, in the order of the counts axis."""


def divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, NaN where the denominator is not positive."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def metrics_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """BOOTSTRAP_METRICS from summed counts (last axis in COUNTS order); NaN for empty denominators."""
    c = {name: counts[..., i] for i, name in enumerate(COUNTS)}
    negatives = c["rows"] - c["positives"]
    return {
        "selection_rate": divide(c["flagged"], c["rows"]),
        "sensitivity": divide(c["true_positives"], c["positives"]),
        "false_positive_rate": divide(c["false_positives"], negatives),
        "ppv": divide(c["true_positives"], c["flagged"]),
        "false_negative_rate": divide(c["positives"] - c["true_positives"], c["positives"]),
        "calibration_in_the_large": divide(c["risk_sum"] - c["positives"], c["rows"]),
        "alerts_per_100_patient_days": alert_burden.alerts_per_100_patient_days(
            c["episodes"], alert_burden.patient_days(np.asarray(c["rows"], dtype=np.float64))
        ),
        "measurements_per_day": divide(c["measurement_sum"], c["rows"]),
        "share_hours_unmeasured": divide(c["unmeasured_hours"], c["rows"]),
    }


# --------------------------------------------------------------------------- Fairlearn


def _precision(y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    return float(precision_score(y_true, y_pred, sample_weight=sample_weight, zero_division=np.nan))


FAIRLEARN_METRICS = MappingProxyType(
    {
        "selection_rate": selection_rate,
        "sensitivity": true_positive_rate,
        "false_positive_rate": false_positive_rate,
        "ppv": _precision,
        "false_negative_rate": false_negative_rate,
    }
)


def metric_frame(cells: pl.DataFrame, columns: Sequence[str]) -> MetricFrame:
    """A Fairlearn MetricFrame of the rate metrics over confusion cells weighted by their row counts.

    ``cells`` has ``label``, ``flagged`` (0/1), the group ``columns`` and ``weight`` (how many
    hourly rows share that combination). Weighted cells give exactly the metrics of the rows
    (each metric is a ratio of weighted counts) at a fraction of the cost: MetricFrame hands
    every row to every metric in Python objects, which takes minutes on a million rows.
    """
    weight = cells.get_column("weight").to_numpy().astype(np.float64)
    return MetricFrame(
        metrics=dict(FAIRLEARN_METRICS),
        y_true=cells.get_column("label").to_numpy().astype(np.int64),
        y_pred=cells.get_column("flagged").to_numpy().astype(np.int64),
        sensitive_features=cells.select(columns).to_pandas(),
        sample_params={name: {"sample_weight": weight} for name in FAIRLEARN_METRICS},
    )


def group_name(key: Any) -> str:
    """A MetricFrame group key as the audit names the group: "White", or "White & female" for a pair."""
    return INTERSECTION.join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def fairlearn_rates(
    rows: pl.DataFrame, columns: tuple[str, ...], names: np.ndarray, keep: pl.Series
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """RATE_METRICS per group from a MetricFrame over the kept rows, and its between-group summary.

    Groups not kept (suppressed) are NaN. The summary holds the equalized-odds difference (the
    larger between-group range of sensitivity and false-positive rate, as Fairlearn's
    equalized_odds_difference) and the demographic-parity ratio (smallest over largest
    selection rate).
    """
    rates = {m: np.full(names.size, np.nan) for m in RATE_METRICS}
    cells = (
        rows.filter(keep)
        .select(*columns, LABEL, flagged=pl.col("_flag").cast(pl.Int8))
        .group_by(*columns, LABEL, "flagged")
        .agg(weight=pl.len())
        .sort(*columns, LABEL, "flagged")
    )
    mf = metric_frame(cells, columns)
    index = {label: i for i, label in enumerate(names)}
    for key, values in mf.by_group.iterrows():
        position = index.get(group_name(key))
        if position is None:  # an empty combination of two features' levels
            continue
        for metric in RATE_METRICS:
            rates[metric][position] = float(values[metric])
    difference = mf.difference(method="between_groups")
    ratio = mf.ratio(method="between_groups")
    summary = {
        "equalized_odds_difference": float(max(difference["sensitivity"], difference["false_positive_rate"])),
        "demographic_parity_ratio": float(ratio["selection_rate"]),
    }
    return rates, summary


# --------------------------------------------------------------------------- riskcast.evaluate


def evaluated_groups(
    rows: pl.DataFrame, codes: np.ndarray, reported: np.ndarray, *, threshold: float, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """riskcast.evaluate per reported group: AUROC with its interval, ECE, median lead time, events flagged."""
    extra = {m: np.full(codes.max() + 1, np.nan) for m in EVALUATED_METRICS}
    evaluation_rows = rows.select(ENCOUNTER, PATIENT, TIME, EVENT_TIME, SCORE, LABEL)
    for g in reported:
        group_rows = evaluation_rows.filter(pl.Series(codes == g))
        try:
            d = discrimination(group_rows, n_boot=n_boot, seed=seed)
            extra["auroc"][g], (extra["auroc_low"][g], extra["auroc_high"][g]) = d.auroc, d.auroc_ci
        except EvaluationError:  # one class only: AUROC undefined
            pass
        extra["ece"][g] = calibration(group_rows).ece
        alerts = alert_metrics(group_rows, threshold=threshold)
        extra["median_lead_time_hours"][g] = alerts.median_lead_time_hours
        extra["encounter_sensitivity"][g] = alerts.encounter_sensitivity
    return extra

