"""Is the model fair? The operating point audited by group, with intervals, gates and mitigation.

``audit`` takes an *audit frame*: the predictions frame of ``riskcast.evaluate`` (one row per
encounter-hour: ``encounter_id``, ``patient_id``, ``time`` (UTC), ``risk``, ``label``,
``event_time``) plus the sensitive attributes to audit by (``sex``, ``age_band``,
``race_ethnicity``, ``site``, ``ward``: the feature matrix's meta columns) and, when present,
the measurement columns of one vital (``heart_rate_count_24h``, ``heart_rate_hours_since``).
A null attribute is its own group, "not recorded". Nothing here reads files, the clock or
the database; results are frozen dataclasses with ``to_dict()`` (JSON-ready).

What is measured, per group of each feature (and of each pair of features on request)
-----------------------------------------------------------------------------------
At the model's operating point (flagged = risk >= threshold), over the group's hourly rows,
as a Fairlearn ``MetricFrame``: selection (alert) rate, sensitivity (true-positive rate),
false-positive rate, PPV and false-negative rate (the MetricFrame runs over confusion cells
weighted by their row counts, which gives exactly the rows' values in milliseconds). Beside them: AUROC
(``riskcast.evaluate.discrimination``), ECE and calibration-in-the-large
(``riskcast.evaluate.calibration``), median alert lead time (``riskcast.evaluate.alert_metrics``:
first flag in the 48 h before the event), alert episodes per 100 patient-days, and how often the
patient was measured: heart-rate observations per day (the mean over hours of
``heart_rate_count_24h``) and the share of hours whose last heart rate was more than 4 h old.
A group measured less often is scored on staler data, which is how a process difference
becomes a model difference.

Intervals
---------
95% percentile bootstrap intervals that resample *patients* (all their rows in or out
together; hours of one patient are not independent), 200 resamples by default. The bootstrap
is vectorised: rows are summed once into counts per (patient, group) cell (rows, positives,
flagged, true and false positives, risk, alert episodes, measurements), a resample is a
vector of patient multiplicities, and every group's counts in every resample come from one
sparse matrix product. The same resamples serve every group and feature, so a difference
between two groups is *paired*: its interval is the percentile interval of the replicate
differences. (AUROC intervals come from ``evaluate.discrimination`` within each group.)

Small cells
-----------
A group with fewer than ``min_patients`` patients or fewer than ``min_events`` events
(encounters with at least one positive hour) is *suppressed*: no metric and no count is
reported for it ("suppressed (n<10)"), it never serves as the reference, and it takes no part
in gates, disparity summaries or mitigation. Its rows still count in the overall figures.

Disparities and gates
---------------------
Each reported group is compared with a reference group (the largest reported group by
patients, unless one is named): differences and ratios of each metric, with paired bootstrap
intervals; per feature the equalized-odds difference (the larger of the between-group ranges
of sensitivity and false-positive rate) and the demographic-parity ratio (smallest over
largest selection rate), from ``MetricFrame.difference`` / ``ratio``.

Gates (``schemas/fairness_gates.yaml``) hold each comparison to bounds and give pass / warn /
fail with the reason in words. **A gate fails only when its estimate is beyond the fail bound
and the 95% interval excludes no difference** (the interval of the difference to the reference
excludes 0; for a group's own calibration-in-the-large, the interval excludes 0). An estimate
beyond the fail bound whose interval includes no difference is a *warn*, saying so: with few
events a sensitivity ratio of 0.7 can be noise, and noise must not fail a model. Estimates
beyond a warn bound warn. Gates on feature pairs (intersections) never fail, only warn: they
are many small comparisons, and some will cross a bound by chance.

Mitigation, for discussion
--------------------------
For features with a failed gate (or those asked for), Fairlearn's ``ThresholdOptimizer``
(prefit on the calibrated risk, ``true_positive_rate_parity`` by default, objective balanced
accuracy) is fitted on the same rows, and so is a simpler rule (per-group thresholds giving
every group the reference group's sensitivity); the report shows what each would change,
group by group, including the alert burden. Neither is ever applied: group-specific thresholds need the
sensitive attribute at scoring time, and are fitted here on the evaluation rows themselves.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from fairlearn.metrics import (
    MetricFrame,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from fairlearn.postprocessing import ThresholdOptimizer
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import precision_score

from riskcast import alert_burden
from riskcast.config import read_yaml_config
from riskcast.errors import ConfigError, EvaluationError
from riskcast.evaluate import alert_metrics, calibration, discrimination

SCORE = "risk"
LABEL = "label"
PATIENT = "patient_id"
ENCOUNTER = "encounter_id"
TIME = "time"
EVENT_TIME = "event_time"

SENSITIVE_FEATURES = ("sex", "age_band", "race_ethnicity", "site", "ward")
NOT_RECORDED = "not recorded"
INTERSECTION = " & "
DEFAULT_GATES_FILE = "fairness_gates.yaml"
MEASUREMENT_VARIABLE = "heart_rate"
MEASUREMENT_GAP_HOURS = 4.0
MITIGATION_CONSTRAINTS = ("true_positive_rate_parity",)
MITIGATION_OBJECTIVE = "balanced_accuracy_score"
MITIGATION_RISK_DECIMALS = 4


class Verdict(StrEnum):
    """A gate's outcome; an audit's verdict is its worst gate's."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


_SEVERITY = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.FAIL: 2}

# Metrics with a patient-bootstrap interval, computed from summed counts (see _metrics_from_counts).
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
COMPARES = ("ratio_to_reference", "difference_to_reference", "value")
_COUNTS = (
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


# --------------------------------------------------------------------------- JSON


def _jsonable(value: Any) -> Any:
    """Plain Python for json.dumps: NaN/inf -> None, numpy -> builtins, frames -> rows."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, pl.DataFrame):
        return [_jsonable(row) for row in value.to_dicts()]
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


# --------------------------------------------------------------------------- gates: configuration


@dataclass(frozen=True)
class Gate:
    """One bound a group's metric is held to (one entry of schemas/fairness_gates.yaml).

    ``compare``: ``ratio_to_reference`` (group / reference), ``difference_to_reference``
    (group - reference) or ``value`` (the group's own value). A ``*_below`` bound is broken by
    a smaller estimate, ``*_above`` by a larger one. ``fail_*`` bounds are allowed only where
    an interval exists to test no difference against (the bootstrap metrics).
    """

    name: str
    metric: str
    compare: str
    fail_below: float | None = None
    warn_below: float | None = None
    fail_above: float | None = None
    warn_above: float | None = None
    why: str = ""


@dataclass(frozen=True)
class GateConfig:
    """The gates and the audit's statistical settings."""

    gates: tuple[Gate, ...]
    min_patients: int = 10
    min_events: int = 10
    n_boot: int = 200
    confidence: float = 0.95
    source: str = f"schemas/{DEFAULT_GATES_FILE}"


_GATE_KEYS = {"metric", "compare", "fail_below", "warn_below", "fail_above", "warn_above", "why"}
_CONFIG_KEYS = {"min_patients", "min_events", "bootstrap_resamples", "confidence", "gates"}


def parse_gates(data: Any, *, source: str = DEFAULT_GATES_FILE) -> GateConfig:
    """A GateConfig from the parsed YAML mapping ``data``; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'gates' at the top level")
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
    raw_gates = data.get("gates") or {}
    if not isinstance(raw_gates, dict):
        raise ConfigError(f"{source}: gates: expected a mapping of gate name to its metric and bounds")
    gates = []
    for name, raw in raw_gates.items():
        where = f"{source}: gates.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping with metric, compare and bounds")
        unknown = sorted(set(raw) - _GATE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_GATE_KEYS)}")
        metric, compare = raw.get("metric"), raw.get("compare")
        known_metrics = (*BOOTSTRAP_METRICS, *POINT_METRICS)
        if metric not in known_metrics:
            raise ConfigError(f"{where}: metric {metric!r} is not one of {list(known_metrics)}")
        if compare not in COMPARES:
            raise ConfigError(f"{where}: compare {compare!r} is not one of {list(COMPARES)}")
        bounds: dict[str, float | None] = {}
        for key in ("fail_below", "warn_below", "fail_above", "warn_above"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
            bounds[key] = None if value is None else float(value)
        if not any(v is not None for v in bounds.values()):
            raise ConfigError(f"{where}: give at least one of fail_below, warn_below, fail_above, warn_above")
        has_fail = bounds["fail_below"] is not None or bounds["fail_above"] is not None
        if has_fail and metric not in BOOTSTRAP_METRICS:
            raise ConfigError(
                f"{where}: {metric} has no paired interval to tell a difference from noise, so it can only "
                f"warn (use warn_below / warn_above); metrics that can fail: {list(BOOTSTRAP_METRICS)}"
            )
        if has_fail and compare == "value" and metric != "calibration_in_the_large":
            raise ConfigError(
                f"{where}: compare 'value' can fail only for calibration_in_the_large (whose no-difference "
                "value is 0); compare other metrics with the reference group"
            )
        for low, high in (("fail_below", "warn_below"), ("warn_above", "fail_above")):
            if bounds[low] is not None and bounds[high] is not None and bounds[low] > bounds[high]:
                raise ConfigError(f"{where}: {low} ({bounds[low]}) must not be above {high} ({bounds[high]})")
        gates.append(Gate(name=str(name), metric=metric, compare=compare, why=str(raw.get("why", "")), **bounds))
    settings: dict[str, Any] = {}
    for key, attribute, kind in (
        ("min_patients", "min_patients", int),
        ("min_events", "min_events", int),
        ("bootstrap_resamples", "n_boot", int),
        ("confidence", "confidence", float),
    ):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise ConfigError(f"{source}: {key} must be a {'whole ' if kind is int else ''}number, got {value!r}")
            settings[attribute] = kind(value)
    config = GateConfig(gates=tuple(gates), source=source, **settings)
    if config.min_patients < 1 or config.min_events < 1:
        raise ConfigError(f"{source}: min_patients and min_events must be at least 1")
    if config.n_boot < 0:
        raise ConfigError(f"{source}: bootstrap_resamples must be 0 or more, got {config.n_boot}")
    if not 0.5 <= config.confidence < 1:
        raise ConfigError(f"{source}: confidence must be in [0.5, 1), got {config.confidence}")
    return config


def load_gates(path: str | Path | None = None) -> GateConfig:
    """The fairness gates from ``path``, or the packaged schemas/fairness_gates.yaml when None."""
    data, source = read_yaml_config(path, packaged=DEFAULT_GATES_FILE, what="fairness gates")
    return parse_gates(data, source=source)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class GateResult:
    """One gate applied to one group: the verdict and why, in words.

    ``value`` is what the bounds apply to (a ratio, a difference or the group's value);
    ``interval`` the bootstrap interval that decides fail versus warn (of the difference to
    the reference for comparisons, of the value itself for ``compare: value``); ``bound`` the
    bound that was broken (None when the gate passed).
    """

    gate: str
    feature: str
    group: str
    reference: str | None
    metric: str
    compare: str
    verdict: Verdict
    value: float
    group_value: float
    reference_value: float | None
    interval: tuple[float, float] | None
    bound: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return _jsonable(self)


@dataclass(frozen=True, eq=False)
class Mitigation:
    """What one post-processing method would do to one feature's groups: for discussion only.

    ``groups``: one row per reported group: group, rule (in words), and before/after values of
    sensitivity, false_positive_rate, selection_rate and alerts_per_100_patient_days (before:
    the model's single threshold; after: the method's group-specific rule, on the same rows).
    ``overall`` holds the same before/after figures over the rows of the reported groups.
    """

    feature: str
    method: str
    groups: pl.DataFrame
    overall: Mapping[str, float]
    note: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return _jsonable(self)


@dataclass(frozen=True, eq=False)
class FeatureAudit:
    """The audit of one sensitive feature (or one pair of features, joined by " & ").

    ``groups``: one row per group: group, suppressed, reference (bool), n_patients,
    n_encounters, n_events, n_rows, patient_days, then each metric of BOOTSTRAP_METRICS with
    ``{metric}_low`` / ``{metric}_high``, auroc with its interval, ece, median_lead_time_hours
    and encounter_sensitivity. Every number of a suppressed group is null.

    ``disparities``: one row per (reported group other than the reference, metric): value,
    reference_value, difference (+ _low/_high), ratio (+ _low/_high); paired intervals.

    ``summary``: equalized_odds_difference and demographic_parity_ratio over the reported
    groups (with _low/_high), the smallest sensitivity ratio to the reference and its group.
    """

    feature: str
    columns: tuple[str, ...]
    reference: str | None
    groups: pl.DataFrame
    disparities: pl.DataFrame
    summary: Mapping[str, Any]
    gates: tuple[GateResult, ...]
    suppressed_label: str

    @property
    def verdict(self) -> Verdict:
        """The worst verdict of this feature's gates (pass when it has none)."""
        return _worst(g.verdict for g in self.gates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; a suppressed group shows only its name and the suppression note."""
        groups = []
        for row in self.groups.to_dicts():
            if row["suppressed"]:
                groups.append({"group": row["group"], "suppressed": True, "note": self.suppressed_label})
            else:
                groups.append(_jsonable(row))
        return {
            "feature": self.feature,
            "columns": list(self.columns),
            "reference": self.reference,
            "verdict": str(self.verdict),
            "summary": _jsonable(self.summary),
            "groups": groups,
            "disparities": _jsonable(self.disparities),
            "gates": [g.to_dict() for g in self.gates],
        }


@dataclass(frozen=True)
class AuditFinding:
    """A gate that did not pass, as an audit's summary keeps it: its verdict, name and reason."""

    verdict: Verdict
    gate: str
    reason: str


@dataclass(frozen=True)
class AuditSummary:
    """The short summary of an audit that the store's audits row and the CLI keep.

    ``findings`` are the gates that did not pass, worst first; ``failures`` those that failed.
    ``to_dict`` writes it as JSON and ``from_dict`` reads it back (from the store), so whoever
    reads an audits row reads the same keys the audit wrote.
    """

    verdict: Verdict
    threshold: float | None
    patients: int
    rows: int
    events: int
    gate_counts: Mapping[str, int]
    findings: tuple[AuditFinding, ...]
    features: Mapping[str, Mapping[str, Any]]

    @property
    def failures(self) -> tuple[AuditFinding, ...]:
        """The findings whose verdict is fail."""
        return tuple(f for f in self.findings if f.verdict == Verdict.FAIL)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None)."""
        return _jsonable(
            {
                "verdict": self.verdict,
                "threshold": self.threshold,
                "patients": self.patients,
                "rows": self.rows,
                "events": self.events,
                "gate_counts": dict(self.gate_counts),
                "findings": [{"verdict": f.verdict, "gate": f.gate, "reason": f.reason} for f in self.findings],
                "features": {name: dict(entry) for name, entry in self.features.items()},
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditSummary:
        """Read a summary written by ``to_dict``; EvaluationError names what is wrong with it."""
        if not isinstance(data, Mapping):
            raise EvaluationError(f"an audit summary must be a mapping, got {type(data).__name__}")
        try:
            findings = tuple(
                AuditFinding(verdict=Verdict(f["verdict"]), gate=str(f["gate"]), reason=str(f["reason"]))
                for f in data.get("findings") or ()
            )
            return cls(
                verdict=Verdict(data["verdict"]),
                threshold=data.get("threshold"),
                patients=int(data.get("patients") or 0),
                rows=int(data.get("rows") or 0),
                events=int(data.get("events") or 0),
                gate_counts=MappingProxyType(dict(data.get("gate_counts") or {})),
                findings=findings,
                features=MappingProxyType(dict(data.get("features") or {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"not an audit summary written by riskcast.fairness ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True, eq=False)
class AuditReport:
    """Everything ``audit`` measured, for the report, the store and the dashboard."""

    score: str
    label: str
    threshold: float
    n_rows: int
    n_patients: int
    n_encounters: int
    n_events: int
    patient_days: float
    overall: Mapping[str, float]
    features: Mapping[str, FeatureAudit]
    mitigations: tuple[Mitigation, ...]
    n_boot: int
    seed: int
    confidence: float
    min_patients: int
    min_events: int
    gates_source: str

    @property
    def gates(self) -> tuple[GateResult, ...]:
        """Every gate result, features in order."""
        return tuple(g for f in self.features.values() for g in f.gates)

    @property
    def verdict(self) -> Verdict:
        """pass, warn or fail: the worst gate's verdict."""
        return _worst(g.verdict for g in self.gates)

    def summary(self) -> dict[str, Any]:
        """A short JSON-ready summary for the store's audits row and the CLI (an AuditSummary's
        to_dict; read it back with AuditSummary.from_dict)."""
        counts = {str(v): sum(1 for g in self.gates if g.verdict == v) for v in Verdict}
        findings = sorted((g for g in self.gates if g.verdict != Verdict.PASS), key=lambda g: -_SEVERITY[g.verdict])
        return AuditSummary(
            verdict=self.verdict,
            threshold=self.threshold,
            patients=self.n_patients,
            rows=self.n_rows,
            events=self.n_events,
            gate_counts=counts,
            findings=tuple(AuditFinding(verdict=g.verdict, gate=g.gate, reason=g.reason) for g in findings),
            features={name: {"verdict": f.verdict, "reference": f.reference, **f.summary} for name, f in self.features.items()},
        ).to_dict()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the whole audit (suppressed groups carry no numbers)."""
        return {
            "verdict": str(self.verdict),
            "score": self.score,
            "label": self.label,
            "threshold": self.threshold,
            "n_rows": self.n_rows,
            "n_patients": self.n_patients,
            "n_encounters": self.n_encounters,
            "n_events": self.n_events,
            "patient_days": self.patient_days,
            "overall": _jsonable(self.overall),
            "n_boot": self.n_boot,
            "seed": self.seed,
            "confidence": self.confidence,
            "min_patients": self.min_patients,
            "min_events": self.min_events,
            "gates_source": self.gates_source,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "mitigations": [m.to_dict() for m in self.mitigations],
        }


def _worst(verdicts: Any) -> Verdict:
    return max(verdicts, key=lambda v: _SEVERITY[v], default=Verdict.PASS)


# --------------------------------------------------------------------------- counts and metrics


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _metrics_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """BOOTSTRAP_METRICS from summed counts (last axis in _COUNTS order); NaN for empty denominators."""
    c = {name: counts[..., i] for i, name in enumerate(_COUNTS)}
    negatives = c["rows"] - c["positives"]
    return {
        "selection_rate": _divide(c["flagged"], c["rows"]),
        "sensitivity": _divide(c["true_positives"], c["positives"]),
        "false_positive_rate": _divide(c["false_positives"], negatives),
        "ppv": _divide(c["true_positives"], c["flagged"]),
        "false_negative_rate": _divide(c["positives"] - c["true_positives"], c["positives"]),
        "calibration_in_the_large": _divide(c["risk_sum"] - c["positives"], c["rows"]),
        "alerts_per_100_patient_days": alert_burden.alerts_per_100_patient_days(
            c["episodes"], alert_burden.patient_days(np.asarray(c["rows"], dtype=np.float64))
        ),
        "measurements_per_day": _divide(c["measurement_sum"], c["rows"]),
        "share_hours_unmeasured": _divide(c["unmeasured_hours"], c["rows"]),
    }


def _interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring NaN replicates; NaN when under half are valid."""
    if replicates.shape[0] == 0:
        shape = replicates.shape[1:]
        return np.full(shape, np.nan), np.full(shape, np.nan)
    alpha = (1.0 - confidence) / 2.0
    valid = np.isfinite(replicates)
    enough = valid.sum(axis=0) >= max(1, replicates.shape[0] // 2)
    with np.errstate(all="ignore"):
        safe = np.where(valid, replicates, np.nan)
        if not enough.any():
            nan = np.full(replicates.shape[1:], np.nan)
            return nan, nan.copy()
        low = np.full(replicates.shape[1:], np.nan)
        high = np.full(replicates.shape[1:], np.nan)
        low[enough] = np.nanquantile(safe[:, enough], alpha, axis=0)
        high[enough] = np.nanquantile(safe[:, enough], 1.0 - alpha, axis=0)
    return low, high


def _patient_multiplicities(n_patients: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_patients) bootstrap multiplicities: how often each patient is drawn per resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(n_boot, n_patients))
    offsets = (np.arange(n_boot, dtype=np.int64) * n_patients)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_patients)
    return counts.reshape(n_boot, n_patients).astype(np.float32)


def _group_counts(
    rows: pl.DataFrame, group_codes: np.ndarray, n_groups: int, multiplicities: np.ndarray, n_patients: int
) -> tuple[np.ndarray, np.ndarray]:
    """Summed counts per group: (n_groups, K) for the data and (n_boot, n_groups, K) per resample.

    Rows are summed into (patient, group) cells once; a cell's counts enter a resample as
    often as its patient was drawn, so each resample is one sparse product.
    """
    cells = (
        rows.select("_patient", *[f"_{c}" for c in _COUNTS])
        .with_columns(_group=pl.Series(group_codes, dtype=pl.Int64))
        .group_by("_patient", "_group")
        .agg(pl.col(f"_{c}").sum() for c in _COUNTS)
    )
    n_counts = len(_COUNTS)
    patient = cells.get_column("_patient").to_numpy()
    group = cells.get_column("_group").to_numpy()
    values = cells.select(f"_{c}" for c in _COUNTS).to_numpy().astype(np.float64)
    matrix = sparse.csr_matrix(
        (values.ravel(), (np.repeat(patient, n_counts), (group[:, None] * n_counts + np.arange(n_counts)).ravel())),
        shape=(n_patients, n_groups * n_counts),
    )
    point = np.asarray(matrix.sum(axis=0)).reshape(n_groups, n_counts)
    if multiplicities.shape[0] == 0:
        return point, np.zeros((0, n_groups, n_counts))
    boot = np.asarray(matrix.T @ multiplicities.T.astype(np.float64)).T
    return point, boot.reshape(multiplicities.shape[0], n_groups, n_counts)


# --------------------------------------------------------------------------- preparation


def _require(frame: pl.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationError(
            f"audit frame has no column(s) {', '.join(repr(c) for c in missing)} "
            f"(columns: {', '.join(frame.columns)})"
        )
    if frame.height == 0:
        raise EvaluationError("audit frame has no rows; nothing to audit")


def _prepared_rows(
    frame: pl.DataFrame,
    *,
    threshold: float,
    score: str,
    label: str,
    features: Sequence[str],
    measurement_variable: str,
    measurement_gap_hours: float,
) -> pl.DataFrame:
    """Rows sorted by (encounter, time) with the per-row counts the bootstrap sums."""
    _require(frame, [PATIENT, ENCOUNTER, TIME, EVENT_TIME, score, label, *features])
    for column in (PATIENT, ENCOUNTER, TIME):
        nulls = frame.get_column(column).null_count()
        if nulls:
            raise EvaluationError(f"audit frame column {column!r} has {nulls:,} null row(s) among {frame.height:,}")
    label_values = frame.get_column(label).cast(pl.Float64)
    if label_values.null_count():
        raise EvaluationError(
            f"label column {label!r} has {label_values.null_count():,} null row(s) among {frame.height:,} "
            "(censored rows); drop them before auditing"
        )
    bad_labels = int((~label_values.is_in([0.0, 1.0])).sum())
    if bad_labels:
        raise EvaluationError(f"label column {label!r} has {bad_labels:,} row(s) that are not 0 or 1 among {frame.height:,}")
    risk = frame.get_column(score).cast(pl.Float64).fill_nan(None)
    if risk.null_count():
        raise EvaluationError(
            f"score {score!r} is null or NaN on {risk.null_count():,} row(s) among {frame.height:,}; "
            "audit scored rows only"
        )
    outside = int(((risk < 0) | (risk > 1)).sum())
    if outside:
        raise EvaluationError(f"score {score!r} has {outside:,} row(s) outside [0, 1] among {frame.height:,}")
    count_column = f"{measurement_variable}_count_24h"
    since_column = f"{measurement_variable}_hours_since"
    measured = count_column in frame.columns and since_column in frame.columns
    rows = frame.select(
        pl.col(PATIENT),
        pl.col(ENCOUNTER),
        pl.col(TIME),
        pl.col(EVENT_TIME),
        pl.col(score).cast(pl.Float64).alias(SCORE),
        pl.col(label).cast(pl.Int8).alias(LABEL),
        *[pl.col(f).cast(pl.String).fill_null(NOT_RECORDED).alias(f) for f in features],
        (pl.col(count_column).cast(pl.Float64).fill_null(0.0) if measured else pl.lit(float("nan"))).alias("_measurement_sum"),
        (
            (pl.col(since_column).cast(pl.Float64).fill_null(float("inf")) > measurement_gap_hours).cast(pl.Float64)
            if measured
            else pl.lit(float("nan"))
        ).alias("_unmeasured_hours"),
    ).sort(ENCOUNTER, TIME, maintain_order=True)
    flagged = pl.col(SCORE) >= threshold
    first_row = (rows.get_column(ENCOUNTER) != rows.get_column(ENCOUNTER).shift(1)).fill_null(True).to_numpy()
    episode_starts = alert_burden.episode_starts(rows.select(flagged).to_series().to_numpy(), first_row)
    return rows.with_columns(
        _patient=pl.col(PATIENT).cast(pl.String).cast(pl.Categorical).to_physical().rank("dense").cast(pl.Int64) - 1,
        _flag=flagged,
    ).with_columns(
        _rows=pl.lit(1.0),
        _positives=pl.col(LABEL).cast(pl.Float64),
        _flagged=pl.col("_flag").cast(pl.Float64),
        _true_positives=(pl.col("_flag") & (pl.col(LABEL) == 1)).cast(pl.Float64),
        _false_positives=(pl.col("_flag") & (pl.col(LABEL) == 0)).cast(pl.Float64),
        _risk_sum=pl.col(SCORE),
        _episodes=pl.Series(episode_starts.astype(np.float64)),
    )


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


def _group_label(key: Any) -> str:
    return INTERSECTION.join(str(k) for k in key) if isinstance(key, tuple) else str(key)


class _GivenRisk(ClassifierMixin, BaseEstimator):
    """A fitted stand-in classifier whose probability of class 1 is the risk column it is given.

    Lets Fairlearn's ThresholdOptimizer (prefit=True) post-process the calibrated risk without
    the model: X is a one-column frame of risks.
    """

    def fit(self, X: Any, y: Any = None) -> _GivenRisk:  # noqa: N803 (scikit-learn's names)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        risk = np.asarray(X, dtype=np.float64)[:, 0]
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def __sklearn_is_fitted__(self) -> bool:
        return True


# --------------------------------------------------------------------------- the audit of one feature


def _group_sizes(rows: pl.DataFrame, codes: np.ndarray) -> pl.DataFrame:
    """Per group code (sorted): n_patients, n_encounters, n_events (encounters with a positive hour)."""
    return (
        rows.select(
            pl.Series("_code", codes),
            pl.col(PATIENT),
            pl.col(ENCOUNTER),
            _event_encounter=pl.when(pl.col(LABEL) == 1).then(pl.col(ENCOUNTER)),
        )
        .group_by("_code")
        .agg(
            n_patients=pl.col(PATIENT).n_unique(),
            n_encounters=pl.col(ENCOUNTER).n_unique(),
            n_events=pl.col("_event_encounter").drop_nulls().n_unique(),
        )
        .sort("_code")
    )


def _fairlearn_rates(
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
        position = index.get(_group_label(key))
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


def _summary_intervals(boot: Mapping[str, np.ndarray], reported: np.ndarray, confidence: float) -> dict[str, float]:
    """Bootstrap intervals of the equalized-odds difference and demographic-parity ratio."""
    sens, fpr, sel = (boot[m][:, reported] for m in ("sensitivity", "false_positive_rate", "selection_rate"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates stay NaN
        replicates = {
            "equalized_odds_difference": np.maximum(np.nanmax(sens, 1) - np.nanmin(sens, 1), np.nanmax(fpr, 1) - np.nanmin(fpr, 1)),
            "demographic_parity_ratio": _divide(np.nanmin(sel, 1), np.nanmax(sel, 1)),
        }
    out = {}
    for key, values in replicates.items():
        low, high = _interval(values[:, None], confidence)
        out[f"{key}_low"], out[f"{key}_high"] = float(low[0]), float(high[0])
    return out


def _evaluated_groups(
    rows: pl.DataFrame, codes: np.ndarray, reported: np.ndarray, *, threshold: float, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """riskcast.evaluate per reported group: AUROC with its interval, ECE, median lead time, events flagged."""
    extra = {m: np.full(codes.max() + 1, np.nan) for m in (*POINT_METRICS, "auroc_low", "auroc_high")}
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


def _reference_position(
    name: str, names: np.ndarray, suppressed: np.ndarray, n_patients: np.ndarray, reference: str | None, config: GateConfig
) -> int:
    """The reference group's position: the named one, else the largest reported (-1: none reported)."""
    if reference is not None:
        matches = np.flatnonzero(names == reference)
        if matches.size == 0:
            raise EvaluationError(f"reference group {reference!r} is not a group of {name} (groups: {', '.join(names)})")
        if suppressed[matches[0]]:
            raise EvaluationError(
                f"reference group {name}={reference} has under {config.min_patients} patients or "
                f"{config.min_events} events, so it is suppressed and cannot be the reference"
            )
        return int(matches[0])
    reported = np.flatnonzero(~suppressed)
    if reported.size == 0:
        return -1
    return int(reported[np.lexsort((names[reported], -n_patients[reported]))[0]])


_DISPARITY_SCHEMA = {
    "group": pl.String,
    "metric": pl.String,
    **{k: pl.Float64 for k in ("value", "reference_value", "difference", "difference_low", "difference_high",
                               "ratio", "ratio_low", "ratio_high")},
}


def _disparities(
    names: np.ndarray,
    reported: np.ndarray,
    ref: int,
    values: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    confidence: float,
) -> pl.DataFrame:
    """Each reported group against the reference, per metric: difference and ratio, with paired intervals.

    ``values`` maps a metric to (point per group, bootstrap replicates per group or None).
    """
    rows = []
    for g in (int(g) for g in reported if ref >= 0 and g != ref):
        for metric, (point, replicates) in values.items():
            value, reference_value = float(point[g]), float(point[ref])
            row = {
                "group": str(names[g]),
                "metric": metric,
                "value": value,
                "reference_value": reference_value,
                "difference": value - reference_value,
                "ratio": float(_divide(value, reference_value)),
                "difference_low": math.nan, "difference_high": math.nan, "ratio_low": math.nan, "ratio_high": math.nan,
            }
            if replicates is not None and replicates.shape[0]:
                diff_low, diff_high = _interval((replicates[:, g] - replicates[:, ref])[:, None], confidence)
                ratio_low, ratio_high = _interval(_divide(replicates[:, g], replicates[:, ref])[:, None], confidence)
                row |= {"difference_low": float(diff_low[0]), "difference_high": float(diff_high[0]),
                        "ratio_low": float(ratio_low[0]), "ratio_high": float(ratio_high[0])}
            rows.append(row)
    if not rows:
        return pl.DataFrame(schema=_DISPARITY_SCHEMA)
    return pl.DataFrame(rows, schema=_DISPARITY_SCHEMA, orient="row")


def _suppressed_label(config: GateConfig) -> str:
    if config.min_patients == config.min_events:
        return f"suppressed (n<{config.min_patients})"
    return f"suppressed (<{config.min_patients} patients or <{config.min_events} events)"


def _feature_audit(
    rows: pl.DataFrame,
    columns: tuple[str, ...],
    *,
    multiplicities: np.ndarray,
    n_patients: int,
    config: GateConfig,
    reference: str | None,
    threshold: float,
    seed: int,
    is_intersection: bool,
) -> tuple[FeatureAudit, pl.Series]:
    """The audit of one feature (or pair of features); also each row's group label (for mitigation)."""
    name = INTERSECTION.join(columns)
    label_expr = pl.concat_str([pl.col(c) for c in columns], separator=INTERSECTION) if is_intersection else pl.col(columns[0])
    group_label = rows.select(label_expr.alias("_g")).to_series()
    names, codes = np.unique(group_label.to_numpy().astype(str), return_inverse=True)
    sizes = _group_sizes(rows, codes)
    n_patients_by = sizes.get_column("n_patients").to_numpy()
    n_events_by = sizes.get_column("n_events").to_numpy()
    suppressed = (n_patients_by < config.min_patients) | (n_events_by < config.min_events)
    reported = np.flatnonzero(~suppressed)

    point_counts, boot_counts = _group_counts(rows, codes, names.size, multiplicities, n_patients)
    point, boot = _metrics_from_counts(point_counts), _metrics_from_counts(boot_counts)
    summary: dict[str, Any] = {}
    if reported.size:
        # The rate metrics as Fairlearn computes them (the same numbers as the counts give).
        rates, summary = _fairlearn_rates(rows, columns, names, pl.Series(~suppressed[codes]))
        for metric in RATE_METRICS:
            point[metric] = np.where(np.isnan(rates[metric]), point[metric], rates[metric])
        if boot_counts.shape[0]:
            summary |= _summary_intervals(boot, reported, config.confidence)
    extra = _evaluated_groups(rows, codes, reported, threshold=threshold, n_boot=config.n_boot, seed=seed)
    ref = _reference_position(name, names, suppressed, n_patients_by, reference, config)

    def masked(values: np.ndarray) -> list[float | None]:
        return [None if s or not np.isfinite(v) else float(v) for v, s in zip(values, suppressed, strict=True)]

    def masked_int(values: np.ndarray) -> list[int | None]:
        return [None if s else int(v) for v, s in zip(values, suppressed, strict=True)]

    data: dict[str, Any] = {
        "group": names.tolist(),
        "suppressed": suppressed.tolist(),
        "reference": (np.arange(names.size) == ref).tolist(),
        "n_patients": masked_int(n_patients_by),
        "n_encounters": masked_int(sizes.get_column("n_encounters").to_numpy()),
        "n_events": masked_int(n_events_by),
        "n_rows": masked_int(point_counts[:, 0]),
        "patient_days": masked(alert_burden.patient_days(point_counts[:, 0])),
    }
    for metric in BOOTSTRAP_METRICS:
        low, high = _interval(boot[metric], config.confidence)
        data[metric], data[f"{metric}_low"], data[f"{metric}_high"] = masked(point[metric]), masked(low), masked(high)
    for metric in ("auroc", "auroc_low", "auroc_high", "ece", "median_lead_time_hours", "encounter_sensitivity"):
        data[metric] = masked(extra[metric])
    schema = {
        k: pl.String if k == "group" else pl.Boolean if k in ("suppressed", "reference") else pl.Int64 if k.startswith("n_") else pl.Float64
        for k in data
    }
    groups = pl.DataFrame(data, schema=schema)

    comparable = {**{m: (point[m], boot[m]) for m in BOOTSTRAP_METRICS}, "auroc": (extra["auroc"], None)}
    disparities = _disparities(names, reported, ref, comparable, config.confidence)
    sensitivity_ratios = disparities.filter(pl.col("metric") == "sensitivity").drop_nans("ratio").sort("ratio")
    if sensitivity_ratios.height:
        worst = sensitivity_ratios.row(0, named=True)
        summary |= {"lowest_sensitivity_ratio": worst["ratio"], "lowest_sensitivity_ratio_group": worst["group"],
                    "lowest_sensitivity_difference_low": worst["difference_low"],
                    "lowest_sensitivity_difference_high": worst["difference_high"]}
    summary |= {"reported_groups": int(reported.size), "suppressed_groups": int(suppressed.sum())}

    reference_name = str(names[ref]) if ref >= 0 else None
    feature = FeatureAudit(
        feature=name,
        columns=columns,
        reference=reference_name,
        groups=groups,
        disparities=disparities,
        summary=MappingProxyType(summary),
        gates=_apply_gates(name, groups, disparities, reference_name, config=config, is_intersection=is_intersection),
        suppressed_label=_suppressed_label(config),
    )
    return feature, group_label


# --------------------------------------------------------------------------- gates: applying


def _num(value: float | None) -> str:
    """A number for a sentence: two decimals, or two significant digits when small; a real minus."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.2f}" if abs(value) >= 0.095 or value == 0 else f"{value:.2g}"
    return text.replace("-", "\u2212")


def _broken(value: float, gate: Gate, kind: str) -> tuple[float, str] | None:
    """The ``kind`` ('fail' or 'warn') bound that ``value`` breaks and on which side, if any."""
    below, above = getattr(gate, f"{kind}_below"), getattr(gate, f"{kind}_above")
    if below is not None and value < below:
        return below, "below"
    if above is not None and value > above:
        return above, "above"
    return None


def _apply_gates(
    feature: str,
    groups: pl.DataFrame,
    disparities: pl.DataFrame,
    reference: str | None,
    *,
    config: GateConfig,
    is_intersection: bool,
) -> tuple[GateResult, ...]:
    results = []
    confidence = f"{config.confidence:.0%}"
    group_rows = {r["group"]: r for r in groups.filter(~pl.col("suppressed")).to_dicts()}
    for gate in config.gates:
        label = METRIC_LABELS[gate.metric].split(",")[0]
        if gate.compare == "value":
            candidates = [(g, r[gate.metric], None, None) for g, r in group_rows.items()]
        else:
            if reference is None:
                continue
            rows = disparities.filter(pl.col("metric") == gate.metric).to_dicts()
            candidates = [(r["group"], r["value"], r, reference) for r in rows]
        for group, group_value, disparity, ref in candidates:
            if group_value is None or not math.isfinite(group_value):
                continue
            if gate.compare == "value":
                value = group_value
                row = group_rows[group]
                low, high = row.get(f"{gate.metric}_low"), row.get(f"{gate.metric}_high")
                interval = (low, high) if low is not None and high is not None and math.isfinite(low) and math.isfinite(high) else None
                reference_value = None
                described = f"{label} for {feature}={group} is {_num(value)}"
                if interval:
                    described += f" ({confidence} CI {_num(interval[0])} to {_num(interval[1])})"
                null_text = "includes 0"
            else:
                reference_value = disparity["reference_value"]
                value = disparity["ratio"] if gate.compare == "ratio_to_reference" else disparity["difference"]
                if value is None or not math.isfinite(value):
                    continue
                low, high = disparity["difference_low"], disparity["difference_high"]
                interval = (low, high) if math.isfinite(low) and math.isfinite(high) else None
                measure = "ratio" if gate.compare == "ratio_to_reference" else "difference"
                ci_text = f", {confidence} CI of the difference {_num(low)} to {_num(high)}" if interval else ""
                described = (
                    f"{label} for {feature}={group} is {_num(group_value)} vs {_num(reference_value)} for {ref} "
                    f"({measure} {_num(value)}{ci_text})"
                )
                null_text = "includes no difference"
            excludes_null = interval is not None and (interval[0] > 0 or interval[1] < 0)
            fail_bound, warn_bound = _broken(value, gate, "fail"), _broken(value, gate, "warn")
            if fail_bound is not None and excludes_null and not is_intersection:
                verdict, (bound, side) = Verdict.FAIL, fail_bound
                reason = f"{described}: {side} the {_num(bound)} bound"
            elif fail_bound is not None:
                verdict, (bound, side) = Verdict.WARN, fail_bound
                if is_intersection and excludes_null:
                    why_not = " and its interval excludes no difference, but gates on intersections of features only warn"
                elif interval is None:
                    why_not = ", but there is no interval to tell it from noise"
                else:
                    why_not = f", but the {confidence} CI {null_text}, so it may be noise"
                reason = f"{described}: {side} the {_num(bound)} bound{why_not}"
            elif warn_bound is not None:
                verdict, (bound, side) = Verdict.WARN, warn_bound
                reason = f"{described}: {side} the {_num(bound)} warning bound"
            else:
                verdict, bound = Verdict.PASS, None
                reason = f"{described}: within bounds"
            results.append(
                GateResult(
                    gate=gate.name,
                    feature=feature,
                    group=group,
                    reference=ref,
                    metric=gate.metric,
                    compare=gate.compare,
                    verdict=verdict,
                    value=float(value),
                    group_value=float(group_value),
                    reference_value=None if reference_value is None else float(reference_value),
                    interval=None if interval is None else (float(interval[0]), float(interval[1])),
                    bound=bound,
                    reason=reason,
                )
            )
    return tuple(results)


# --------------------------------------------------------------------------- mitigation


def _rate_table(rows: pl.DataFrame, group_label: pl.Series, flags: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """sensitivity, false_positive_rate, selection_rate, alerts_per_100_patient_days per group and overall."""
    first = (rows.get_column(ENCOUNTER) != rows.get_column(ENCOUNTER).shift(1)).fill_null(True).to_numpy()
    frame = pl.DataFrame(
        {
            "_g": group_label,
            "_rows": np.ones(flags.size),
            "_positives": rows.get_column(LABEL).to_numpy().astype(np.float64),
            "_flagged": flags.astype(np.float64),
            "_true_positives": (flags & (rows.get_column(LABEL).to_numpy() == 1)).astype(np.float64),
            "_false_positives": (flags & (rows.get_column(LABEL).to_numpy() == 0)).astype(np.float64),
            "_episodes": alert_burden.episode_starts(flags, first).astype(np.float64),
        }
    )
    sums = frame.group_by("_g").agg(pl.all().sum())
    keys = ("_rows", "_positives", "_flagged", "_true_positives", "_false_positives", "_episodes")
    out = {}
    for name, totals in [*((r["_g"], r) for r in sums.to_dicts()), ("overall", {k: float(sums.get_column(k).sum()) for k in keys})]:
        if name not in names and name != "overall":
            continue
        counts = np.zeros(len(_COUNTS))
        for key in keys:
            counts[_COUNTS.index(key[1:])] = totals[key]
        metrics = _metrics_from_counts(counts)
        out[name] = {m: float(metrics[m]) for m in ("sensitivity", "false_positive_rate", "selection_rate", "alerts_per_100_patient_days")}
    return out


def _threshold_text(operation: Any) -> str:
    threshold = float(operation.threshold)
    if math.isinf(threshold):
        return "never" if (threshold > 0) == (operation.operator == ">") else "always"
    return f"risk {operation.operator} {threshold:.3g}"


def _mitigation_frame(
    names: list[str], rules: Mapping[str, str], before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> tuple[pl.DataFrame, dict[str, float]]:
    metrics = ("sensitivity", "false_positive_rate", "selection_rate", "alerts_per_100_patient_days")
    rows = [
        {"group": g, "rule": rules[g], **{f"before_{m}": before[g][m] for m in metrics}, **{f"after_{m}": after[g][m] for m in metrics}}
        for g in names
    ]
    overall = {**{f"before_{m}": before["overall"][m] for m in metrics}, **{f"after_{m}": after["overall"][m] for m in metrics}}
    schema = {"group": pl.String, "rule": pl.String, **{f"{p}_{m}": pl.Float64 for p in ("before", "after") for m in metrics}}
    return pl.DataFrame(rows, schema=schema, orient="row"), overall


def _mitigations(
    rows: pl.DataFrame,
    feature: FeatureAudit,
    group_label: pl.Series,
    *,
    threshold: float,
    constraints: Sequence[str],
    seed: int,
) -> list[Mitigation]:
    """ThresholdOptimizer per constraint, and equal-sensitivity thresholds, on the reported groups' rows."""
    reported = feature.groups.filter(~pl.col("suppressed"))
    names = reported.get_column("group").to_list()
    if len(names) < 2 or feature.reference is None:
        return []
    keep = group_label.is_in(names)
    subset, labels = rows.filter(keep), group_label.filter(keep)
    risk = subset.get_column(SCORE).to_numpy()
    y = subset.get_column(LABEL).to_numpy().astype(int)
    before = _rate_table(subset, labels, risk >= threshold, names)
    current = f"risk >= {threshold:.3g} (the model's threshold)"
    results = []
    sensitive = labels.to_pandas()
    # ThresholdOptimizer walks every distinct score of every group in Python (minutes for a
    # million distinct risks); risk to MITIGATION_RISK_DECIMALS decimals is plenty to discuss.
    X = pd.DataFrame({"risk": np.round(risk, MITIGATION_RISK_DECIMALS)})  # noqa: N806 (scikit-learn's name)
    for constraint in constraints:
        optimizer = ThresholdOptimizer(
            estimator=_GivenRisk(),
            constraints=constraint,
            objective=MITIGATION_OBJECTIVE,
            prefit=True,
            predict_method="predict_proba",
        )
        optimizer.fit(X, y, sensitive_features=sensitive)
        flags = np.asarray(optimizer.predict(X, sensitive_features=sensitive, random_state=seed)).astype(bool)
        after = _rate_table(subset, labels, flags, names)
        rules = {}
        for group, interpolation in optimizer.interpolated_thresholder_.interpolation_dict.items():
            parts = [
                f"{_threshold_text(op)} ({p:.0%} of the time)" if p < 1 else _threshold_text(op)
                for p, op in ((interpolation.p0, interpolation.operation0), (interpolation.p1, interpolation.operation1))
                if p > 0
            ]
            rules[str(group)] = "flag if " + " or ".join(parts) if parts else "never flag"
        table, overall = _mitigation_frame(names, rules, before, after)
        results.append(
            Mitigation(
                feature=feature.feature,
                method=f"Fairlearn ThresholdOptimizer (constraints={constraint}, objective={optimizer.objective}, prefit on the calibrated risk)",
                groups=table,
                overall=MappingProxyType(overall),
                note=(
                    "Group-specific, partly randomised thresholds that maximise the objective under the constraint "
                    f"(on the risk rounded to {MITIGATION_RISK_DECIMALS} decimals). "
                    f"Before: {current} for every group. Fitted and measured on the same rows (optimistic). "
                    "Not applied."
                ),
            )
        )
    # The simpler rule: lower a group's threshold until it reaches the reference group's
    # sensitivity (the highest threshold flagging at least that share of its positive hours);
    # groups already at or above it keep the model's threshold (no levelling down).
    target = before[feature.reference]["sensitivity"]
    thresholds = {}
    for group in names:
        mask = (labels == group).to_numpy()
        positive_risk = np.sort(risk[mask & (y == 1)])[::-1]
        thresholds[group] = threshold
        if math.isfinite(target) and positive_risk.size:
            needed = min(max(1, math.ceil(target * positive_risk.size - 1e-9)), positive_risk.size)
            thresholds[group] = min(threshold, float(positive_risk[needed - 1]))
    per_row = labels.replace_strict(thresholds, return_dtype=pl.Float64).to_numpy()
    after = _rate_table(subset, labels, risk >= per_row, names)
    rules = {g: f"flag if risk >= {t:.3g}" for g, t in thresholds.items()}
    table, overall = _mitigation_frame(names, rules, before, after)
    results.append(
        Mitigation(
            feature=feature.feature,
            method=f"per-group thresholds lowered until every group reaches the reference group's ({feature.reference}) sensitivity",
            groups=table,
            overall=MappingProxyType(overall),
            note=(
                f"Deterministic thresholds; before: {current} for every group, which groups at or above the reference's "
                "sensitivity keep. Shows what equal sensitivity would cost in alerts for each group. Fitted and measured "
                "on the same rows (optimistic). Not applied."
            ),
        )
    )
    return results


# --------------------------------------------------------------------------- the whole audit


def audit(
    frame: pl.DataFrame,
    *,
    threshold: float,
    by: Sequence[str] = SENSITIVE_FEATURES,
    intersections: bool = False,
    gates: GateConfig | None = None,
    reference: Mapping[str, str] | None = None,
    mitigate: Sequence[str] | None = None,
    mitigation_constraints: Sequence[str] = MITIGATION_CONSTRAINTS,
    n_boot: int | None = None,
    seed: int = 0,
    score: str = SCORE,
    label: str = LABEL,
    measurement_variable: str = MEASUREMENT_VARIABLE,
    measurement_gap_hours: float = MEASUREMENT_GAP_HOURS,
) -> AuditReport:
    """Audit the model's operating point ``score >= threshold`` by each feature in ``by``.

    ``intersections`` adds every pair of ``by`` features. ``gates`` defaults to
    ``load_gates()`` (schemas/fairness_gates.yaml), which also sets the suppression minimums,
    the bootstrap size (``n_boot`` overrides it) and the confidence level. ``reference`` names
    a feature's reference group (default: its largest reported group by patients).
    ``mitigate`` lists the single features to run the mitigation analysis for (default: those
    with a failed gate; pass () for none). The same ``seed`` drives every
    bootstrap, so results are reproducible.
    """
    config = gates if gates is not None else load_gates()
    if n_boot is not None:
        if n_boot < 0:
            raise EvaluationError(f"n_boot must be 0 or more, got {n_boot}")
        config = dataclasses.replace(config, n_boot=n_boot)
    features = list(dict.fromkeys(by))
    if not features:
        raise EvaluationError("audit needs at least one sensitive feature in `by`")
    unknown_references = sorted(set(reference or {}) - set(features) - {
        INTERSECTION.join(p) for p in itertools.combinations(features, 2)})
    if unknown_references:
        raise EvaluationError(f"reference given for feature(s) {unknown_references} not audited (by: {features})")
    rows = _prepared_rows(
        frame,
        threshold=threshold,
        score=score,
        label=label,
        features=features,
        measurement_variable=measurement_variable,
        measurement_gap_hours=measurement_gap_hours,
    )
    n_patients = int(rows.get_column("_patient").max()) + 1
    multiplicities = _patient_multiplicities(n_patients, config.n_boot, seed)

    # Overall: every row, one group.
    overall_point, overall_boot = _group_counts(rows, np.zeros(rows.height, dtype=np.int64), 1, multiplicities, n_patients)
    overall_metrics = _metrics_from_counts(overall_point)
    overall_boot_metrics = _metrics_from_counts(overall_boot)
    overall: dict[str, float] = {}
    for metric in BOOTSTRAP_METRICS:
        low, high = _interval(overall_boot_metrics[metric], config.confidence)
        overall |= {metric: float(overall_metrics[metric][0]), f"{metric}_low": float(low[0]), f"{metric}_high": float(high[0])}
    evaluation_rows = rows.select(ENCOUNTER, PATIENT, TIME, EVENT_TIME, SCORE, LABEL)
    try:
        d = discrimination(evaluation_rows, n_boot=config.n_boot, seed=seed)
        overall |= {"auroc": d.auroc, "auroc_low": d.auroc_ci[0], "auroc_high": d.auroc_ci[1]}
    except EvaluationError:
        overall |= {"auroc": math.nan, "auroc_low": math.nan, "auroc_high": math.nan}
    overall["ece"] = calibration(evaluation_rows).ece
    overall_alerts = alert_metrics(evaluation_rows, threshold=threshold)
    overall["median_lead_time_hours"] = overall_alerts.median_lead_time_hours
    overall["encounter_sensitivity"] = overall_alerts.encounter_sensitivity

    specs = [((f,), False) for f in features]
    if intersections:
        specs += [(pair, True) for pair in itertools.combinations(features, 2)]
    audits: dict[str, FeatureAudit] = {}
    labels_by_feature: dict[str, pl.Series] = {}
    for columns, is_intersection in specs:
        name = INTERSECTION.join(columns)
        feature_audit, group_label = _feature_audit(
            rows,
            columns,
            multiplicities=multiplicities,
            n_patients=n_patients,
            config=config,
            reference=(reference or {}).get(name),
            threshold=threshold,
            seed=seed,
            is_intersection=is_intersection,
        )
        audits[name] = feature_audit
        labels_by_feature[name] = group_label

    if mitigate is None:
        to_mitigate = [f for f in features if audits[f].verdict == Verdict.FAIL]
    else:
        not_audited = [f for f in mitigate if f not in features]
        if not_audited:
            raise EvaluationError(f"cannot mitigate {not_audited}: not among the audited features {features}")
        to_mitigate = list(mitigate)
    mitigations: list[Mitigation] = []
    for name in to_mitigate:
        mitigations += _mitigations(
            rows, audits[name], labels_by_feature[name], threshold=threshold,
            constraints=mitigation_constraints, seed=seed,
        )

    return AuditReport(
        score=score,
        label=label,
        threshold=float(threshold),
        n_rows=rows.height,
        n_patients=n_patients,
        n_encounters=rows.get_column(ENCOUNTER).n_unique(),
        n_events=rows.filter(pl.col(LABEL) == 1).get_column(ENCOUNTER).n_unique(),
        patient_days=float(alert_burden.patient_days(rows.height)),
        overall=MappingProxyType(overall),
        features=MappingProxyType(audits),
        mitigations=tuple(mitigations),
        n_boot=config.n_boot,
        seed=seed,
        confidence=config.confidence,
        min_patients=config.min_patients,
        min_events=config.min_events,
        gates_source=config.source,
    )
