"""The audit's measurements: every metric overall and by group, with patient-bootstrap intervals.

``GroupMetricFrame`` is to the audit what Fairlearn's ``MetricFrame`` is to a metric: it takes
plain inputs (the audit frame, the operating point, the sensitive features to group by) and
gives its results as data, holding no gate and doing no I/O:

- ``overall``: every metric over every row, with its interval;
- ``by_group[feature]``: one row per group of the feature (or pair of features);
- ``between_groups[feature]``: the equalized-odds difference (the larger of the between-group
  ranges of sensitivity and false-positive rate) and the demographic-parity ratio (smallest
  over largest selection rate), from ``MetricFrame.difference`` / ``ratio``, with intervals;
- ``disparities(feature, reference)``: each reported group against a reference group, the
  difference and ratio of each metric with paired bootstrap intervals.

The audit frame
---------------
The predictions frame of ``riskcast.evaluate`` (one row per encounter-hour: ``encounter_id``,
``patient_id``, ``time`` (UTC), ``risk``, ``label``, ``event_time``) plus the sensitive
attributes to audit by (``sex``, ``age_band``, ``race_ethnicity``, ``site``, ``ward``: the
feature matrix's meta columns) and, when present, the measurement columns of one vital
(``heart_rate_count_24h``, ``heart_rate_hours_since``). A null attribute is its own group,
"not recorded". What is measured is described in ``riskcast.fairness.metrics``, the
intervals in ``riskcast.fairness.bootstrap``.

Small cells
-----------
A group with fewer than ``min_patients`` patients or fewer than ``min_events`` events
(encounters with at least one positive hour) is *suppressed*: no metric and no count is
reported for it ("suppressed (n<10)"), it never serves as the reference, and it takes no part
in gates, disparity summaries or mitigation. Its rows still count in the overall figures.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from riskcast import alert_burden
from riskcast.errors import EvaluationError
from riskcast.fairness.bootstrap import group_counts, patient_multiplicities, percentile_interval
from riskcast.fairness.metrics import (
    BOOTSTRAP_METRICS,
    ENCOUNTER,
    EVALUATED_METRICS,
    EVENT_TIME,
    INTERSECTION,
    LABEL,
    PATIENT,
    RATE_METRICS,
    SCORE,
    TIME,
    divide,
    evaluated_groups,
    fairlearn_rates,
    metrics_from_counts,
)

SENSITIVE_FEATURES = ("sex", "age_band", "race_ethnicity", "site", "ward")
NOT_RECORDED = "not recorded"
MEASUREMENT_VARIABLE = "heart_rate"
MEASUREMENT_GAP_HOURS = 4.0
MIN_PATIENTS = 10
"""A group with fewer patients is suppressed."""
MIN_EVENTS = 10
"""A group with fewer events (encounters with a positive hour) is suppressed."""
BOOTSTRAP_RESAMPLES = 200
CONFIDENCE = 0.95


def audited_features(by: Sequence[str]) -> list[str]:
    """The features of ``by`` once each, in order; EvaluationError when there is none."""
    features = list(dict.fromkeys(by))
    if not features:
        raise EvaluationError("audit needs at least one sensitive feature in `by`")
    return features


def checked_resamples(n_boot: int) -> int:
    """``n_boot`` when it is a number of bootstrap resamples (0 or more), else EvaluationError."""
    if n_boot < 0:
        raise EvaluationError(f"n_boot must be 0 or more, got {n_boot}")
    return n_boot


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


# --------------------------------------------------------------------------- one feature's groups


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


def _between_group_intervals(boot: Mapping[str, np.ndarray], reported: np.ndarray, confidence: float) -> dict[str, float]:
    """Bootstrap intervals of the equalized-odds difference and demographic-parity ratio."""
    sens, fpr, sel = (boot[m][:, reported] for m in ("sensitivity", "false_positive_rate", "selection_rate"))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates stay NaN
        replicates = {
            "equalized_odds_difference": np.maximum(np.nanmax(sens, 1) - np.nanmin(sens, 1), np.nanmax(fpr, 1) - np.nanmin(fpr, 1)),
            "demographic_parity_ratio": divide(np.nanmin(sel, 1), np.nanmax(sel, 1)),
        }
    out = {}
    for key, values in replicates.items():
        low, high = percentile_interval(values[:, None], confidence)
        out[f"{key}_low"], out[f"{key}_high"] = float(low[0]), float(high[0])
    return out


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
                "ratio": float(divide(value, reference_value)),
                "difference_low": math.nan, "difference_high": math.nan, "ratio_low": math.nan, "ratio_high": math.nan,
            }
            if replicates is not None and replicates.shape[0]:
                diff_low, diff_high = percentile_interval((replicates[:, g] - replicates[:, ref])[:, None], confidence)
                ratio_low, ratio_high = percentile_interval(divide(replicates[:, g], replicates[:, ref])[:, None], confidence)
                row |= {"difference_low": float(diff_low[0]), "difference_high": float(diff_high[0]),
                        "ratio_low": float(ratio_low[0]), "ratio_high": float(ratio_high[0])}
            rows.append(row)
    if not rows:
        return pl.DataFrame(schema=_DISPARITY_SCHEMA)
    return pl.DataFrame(rows, schema=_DISPARITY_SCHEMA, orient="row")


@dataclass(frozen=True, eq=False)
class _Grouping:
    """One feature's groups as arrays in group order (sorted names), kept for the comparisons."""

    columns: tuple[str, ...]
    labels: pl.Series
    names: np.ndarray
    suppressed: np.ndarray
    n_patients: np.ndarray
    comparable: Mapping[str, tuple[np.ndarray, np.ndarray | None]]


def _measure_grouping(
    rows: pl.DataFrame,
    columns: tuple[str, ...],
    *,
    multiplicities: np.ndarray,
    n_patients: int,
    threshold: float,
    min_patients: int,
    min_events: int,
    confidence: float,
    n_boot: int,
    seed: int,
) -> tuple[_Grouping, pl.DataFrame, dict[str, float]]:
    """One feature (or pair of features): its groups as arrays, its by-group table, its between-group summary."""
    label_expr = pl.concat_str([pl.col(c) for c in columns], separator=INTERSECTION) if len(columns) > 1 else pl.col(columns[0])
    group_label = rows.select(label_expr.alias("_g")).to_series()
    names, codes = np.unique(group_label.to_numpy().astype(str), return_inverse=True)
    sizes = _group_sizes(rows, codes)
    n_patients_by = sizes.get_column("n_patients").to_numpy()
    n_events_by = sizes.get_column("n_events").to_numpy()
    suppressed = (n_patients_by < min_patients) | (n_events_by < min_events)
    reported = np.flatnonzero(~suppressed)

    point_counts, boot_counts = group_counts(rows, codes, names.size, multiplicities, n_patients)
    point, boot = metrics_from_counts(point_counts), metrics_from_counts(boot_counts)
    between: dict[str, float] = {}
    if reported.size:
        # The rate metrics as Fairlearn computes them (the same numbers as the counts give).
        rates, between = fairlearn_rates(rows, columns, names, pl.Series(~suppressed[codes]))
        for metric in RATE_METRICS:
            point[metric] = np.where(np.isnan(rates[metric]), point[metric], rates[metric])
        if boot_counts.shape[0]:
            between |= _between_group_intervals(boot, reported, confidence)
    extra = evaluated_groups(rows, codes, reported, threshold=threshold, n_boot=n_boot, seed=seed)

    def masked(values: np.ndarray) -> list[float | None]:
        return [None if s or not np.isfinite(v) else float(v) for v, s in zip(values, suppressed, strict=True)]

    def masked_int(values: np.ndarray) -> list[int | None]:
        return [None if s else int(v) for v, s in zip(values, suppressed, strict=True)]

    data: dict[str, Any] = {
        "group": names.tolist(),
        "suppressed": suppressed.tolist(),
        "n_patients": masked_int(n_patients_by),
        "n_encounters": masked_int(sizes.get_column("n_encounters").to_numpy()),
        "n_events": masked_int(n_events_by),
        "n_rows": masked_int(point_counts[:, 0]),
        "patient_days": masked(alert_burden.patient_days(point_counts[:, 0])),
    }
    for metric in BOOTSTRAP_METRICS:
        low, high = percentile_interval(boot[metric], confidence)
        data[metric], data[f"{metric}_low"], data[f"{metric}_high"] = masked(point[metric]), masked(low), masked(high)
    for metric in EVALUATED_METRICS:
        data[metric] = masked(extra[metric])
    schema = {
        k: pl.String if k == "group" else pl.Boolean if k == "suppressed" else pl.Int64 if k.startswith("n_") else pl.Float64
        for k in data
    }
    grouping = _Grouping(
        columns=columns,
        labels=group_label,
        names=names,
        suppressed=suppressed,
        n_patients=n_patients_by,
        comparable={**{m: (point[m], boot[m]) for m in BOOTSTRAP_METRICS}, "auroc": (extra["auroc"], None)},
    )
    return grouping, pl.DataFrame(data, schema=schema), between


def _measure_overall(
    rows: pl.DataFrame, *, multiplicities: np.ndarray, n_patients: int, threshold: float, confidence: float, n_boot: int, seed: int
) -> dict[str, float]:
    """Every metric over every row, with its interval: the rows as one group."""
    one_group = np.zeros(rows.height, dtype=np.int64)
    point_counts, boot_counts = group_counts(rows, one_group, 1, multiplicities, n_patients)
    point, boot = metrics_from_counts(point_counts), metrics_from_counts(boot_counts)
    overall: dict[str, float] = {}
    for metric in BOOTSTRAP_METRICS:
        low, high = percentile_interval(boot[metric], confidence)
        overall |= {metric: float(point[metric][0]), f"{metric}_low": float(low[0]), f"{metric}_high": float(high[0])}
    extra = evaluated_groups(rows, one_group, np.zeros(1, dtype=np.int64), threshold=threshold, n_boot=n_boot, seed=seed)
    return overall | {metric: float(extra[metric][0]) for metric in EVALUATED_METRICS}


# --------------------------------------------------------------------------- the frame


@dataclass(frozen=True, eq=False)
class GroupMetricFrame:
    """Every metric of the audit at one operating point, overall and by group (see the module docstring).

    ``by_group[feature]`` has one row per group (sorted by name): group, suppressed,
    n_patients, n_encounters, n_events, n_rows, patient_days, then each metric of
    BOOTSTRAP_METRICS with ``{metric}_low`` / ``{metric}_high``, auroc with its interval, ece,
    median_lead_time_hours and encounter_sensitivity; every number of a suppressed group is
    null. A pair of features is named "a & b", and so are its groups. ``rows`` are the audit
    frame's rows as measured (sorted by encounter and time), for whatever is fitted on them.
    Build one with ``GroupMetricFrame.measure``.
    """

    threshold: float
    n_rows: int
    n_patients: int
    n_encounters: int
    n_events: int
    patient_days: float
    n_boot: int
    seed: int
    confidence: float
    min_patients: int
    min_events: int
    rows: pl.DataFrame = field(repr=False)
    overall: Mapping[str, float]
    by_group: Mapping[str, pl.DataFrame]
    between_groups: Mapping[str, Mapping[str, float]]
    _groupings: Mapping[str, _Grouping] = field(repr=False)

    @classmethod
    def measure(
        cls,
        frame: pl.DataFrame,
        *,
        threshold: float,
        by: Sequence[str] = SENSITIVE_FEATURES,
        intersections: bool = False,
        min_patients: int = MIN_PATIENTS,
        min_events: int = MIN_EVENTS,
        n_boot: int = BOOTSTRAP_RESAMPLES,
        confidence: float = CONFIDENCE,
        seed: int = 0,
        score: str = SCORE,
        label: str = LABEL,
        measurement_variable: str = MEASUREMENT_VARIABLE,
        measurement_gap_hours: float = MEASUREMENT_GAP_HOURS,
    ) -> GroupMetricFrame:
        """Measure the operating point ``score >= threshold`` of the audit ``frame`` by each feature in ``by``.

        ``intersections`` adds every pair of ``by`` features. Groups under ``min_patients``
        patients or ``min_events`` events are suppressed. Intervals come from ``n_boot``
        patient resamples at the ``confidence`` level; the same ``seed`` drives every
        bootstrap, so results are reproducible. EvaluationError names what is wrong with the
        frame (a missing column, null or non-binary labels, scores outside [0, 1]).
        """
        features = audited_features(by)
        checked_resamples(n_boot)
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
        multiplicities = patient_multiplicities(n_patients, n_boot, seed)
        settings: dict[str, Any] = {"threshold": threshold, "confidence": confidence, "n_boot": n_boot, "seed": seed}
        overall = _measure_overall(rows, multiplicities=multiplicities, n_patients=n_patients, **settings)
        specs = [(f,) for f in features]
        if intersections:
            specs += list(itertools.combinations(features, 2))
        groupings, by_group, between_groups = {}, {}, {}
        for columns in specs:
            name = INTERSECTION.join(columns)
            groupings[name], by_group[name], between_groups[name] = _measure_grouping(
                rows, columns, multiplicities=multiplicities, n_patients=n_patients, min_patients=min_patients,
                min_events=min_events, **settings,
            )  # fmt: skip
        return cls(
            threshold=float(threshold),
            n_rows=rows.height,
            n_patients=n_patients,
            n_encounters=rows.get_column(ENCOUNTER).n_unique(),
            n_events=rows.filter(pl.col(LABEL) == 1).get_column(ENCOUNTER).n_unique(),
            patient_days=float(alert_burden.patient_days(rows.height)),
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
            min_patients=min_patients,
            min_events=min_events,
            rows=rows,
            overall=MappingProxyType(overall),
            by_group=MappingProxyType(by_group),
            between_groups=MappingProxyType({k: MappingProxyType(v) for k, v in between_groups.items()}),
            _groupings=MappingProxyType(groupings),
        )

    @property
    def features(self) -> tuple[str, ...]:
        """The features measured, in order: single features first, then pairs ("a & b")."""
        return tuple(self.by_group)

    @property
    def suppressed_label(self) -> str:
        """What a suppressed group shows instead of its numbers."""
        if self.min_patients == self.min_events:
            return f"suppressed (n<{self.min_patients})"
        return f"suppressed (<{self.min_patients} patients or <{self.min_events} events)"

    def _grouping(self, feature: str) -> _Grouping:
        if feature not in self._groupings:
            raise EvaluationError(f"{feature!r} was not measured (features: {', '.join(self.features)})")
        return self._groupings[feature]

    def columns(self, feature: str) -> tuple[str, ...]:
        """The audit frame's columns ``feature`` groups by (two for a pair)."""
        return self._grouping(feature).columns

    def group_labels(self, feature: str) -> pl.Series:
        """Each of ``rows``' group of ``feature``, in the order of ``rows``."""
        return self._grouping(feature).labels

    def reported_groups(self, feature: str) -> list[str]:
        """The groups of ``feature`` that are not suppressed, in group order."""
        grouping = self._grouping(feature)
        return [str(name) for name in grouping.names[~grouping.suppressed]]

    def reference_group(self, feature: str, named: str | None = None) -> str | None:
        """The group of ``feature`` the others are compared with: ``named`` when given (it must be
        a reported group), else the largest reported group by patients (ties: the first by
        name); None when no group is reported."""
        position = self._reference_position(feature, named)
        return None if position < 0 else str(self._grouping(feature).names[position])

    def _reference_position(self, feature: str, named: str | None) -> int:
        grouping = self._grouping(feature)
        names, suppressed = grouping.names, grouping.suppressed
        if named is not None:
            matches = np.flatnonzero(names == named)
            if matches.size == 0:
                raise EvaluationError(f"reference group {named!r} is not a group of {feature} (groups: {', '.join(names)})")
            if suppressed[matches[0]]:
                raise EvaluationError(
                    f"reference group {feature}={named} has under {self.min_patients} patients or "
                    f"{self.min_events} events, so it is suppressed and cannot be the reference"
                )
            return int(matches[0])
        reported = np.flatnonzero(~suppressed)
        if reported.size == 0:
            return -1
        return int(reported[np.lexsort((names[reported], -grouping.n_patients[reported]))[0]])

    def disparities(self, feature: str, reference: str | None) -> pl.DataFrame:
        """Each reported group of ``feature`` but ``reference``, against it, per metric (the
        bootstrap metrics and AUROC): value, reference_value, difference (+ _low/_high), ratio
        (+ _low/_high), with paired intervals. No rows when ``reference`` is None."""
        grouping = self._grouping(feature)
        position = -1 if reference is None else self._reference_position(feature, reference)
        reported = np.flatnonzero(~grouping.suppressed)
        return _disparities(grouping.names, reported, position, grouping.comparable, self.confidence)
