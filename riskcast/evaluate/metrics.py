"""How good are the scores? Discrimination, calibration, alert-level metrics, baselines.

Every function takes a *predictions frame*: one row per encounter-hour, with

- ``encounter_id``, ``patient_id``, ``time`` (UTC datetime, the hour the score was made);
- ``risk``: the calibrated probability of the outcome within the label horizon, in [0, 1];
- ``label``: 1 when the outcome follows within the label horizon, else 0 (censored rows,
  whose label is null, must be dropped before evaluating: see ``riskcast.labels``);
- ``event_time``: the encounter's first event (UTC), null when it had none;
- optional baseline scores (``news2``, ``qsofa``, ``sirs``, ...), higher meaning riskier;
- optional ``sepsis_label`` (the PhysioNet 2019 label, already shifted 6 h early), for the
  challenge's utility (riskcast.utility).

Rows are assumed hourly: patient-days are rows / 24. Alert episodes, alert rates and the
threshold for an alert budget are riskcast.alert_burden's. A null (or NaN) score never raises an
alert and ranks below every scored row. Results are frozen dataclasses with ``to_dict()``
(JSON-ready: NaN becomes None) so the CLI, the dashboard and the store can use them as they
are. Nothing here reads files, the clock or the database.

Intervals are percentile bootstraps that resample *patients* (all of a patient's rows go in
or out together): hours of one patient are not independent, and a row bootstrap would give
intervals that are too narrow for a cohort where some patients stay for weeks.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from riskcast import alert_burden
from riskcast.errors import EvaluationError
from riskcast.evaluate.markdown import evaluation_markdown
from riskcast.utility import RowUtilities, row_utilities

SCORE = "risk"
LABEL = "label"
PATIENT = "patient_id"
ENCOUNTER = "encounter_id"
TIME = "time"
EVENT_TIME = "event_time"
SEPSIS_LABEL = "sepsis_label"

HOURS_PER_ROW = 1.0
DEFAULT_DETECTION_WINDOW_HOURS = 48.0
DEFAULT_BASELINES: Mapping[str, float] = MappingProxyType({"news2": 5.0})

_MICROSECONDS_PER_HOUR = 3_600_000_000


# --------------------------------------------------------------------------- results


def jsonable(value: Any) -> Any:
    """Plain Python for json.dumps: NaN/inf -> None, numpy -> builtins, frames -> rows, enums and
    dates -> text. Every result of evaluate and fairness turns into JSON through it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, pl.DataFrame):
        return [jsonable(row) for row in value.to_dicts()]
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def from_jsonable(kind: Any, value: Any, *, key: str = "") -> Any:
    """`value`, as jsonable wrote it, read back as `kind` (a result class or a field's type):
    None back to NaN for numbers, lists back to tuples and frames, text back to enums, objects
    back to results, so a report read from its JSON is the report that was written (each result
    of evaluate and fairness reads back through it). EvaluationError names the key (dotted from
    `key`) that is missing or of the wrong kind."""
    where = key or "the report"
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise EvaluationError(f"{where} should be a JSON object, found {type(value).__name__}")
        hints = typing.get_type_hints(kind)
        fields = {}
        for field in dataclasses.fields(kind):
            inner = f"{key}.{field.name}" if key else field.name
            if field.name not in value:
                raise EvaluationError(f"{inner} is missing")
            fields[field.name] = from_jsonable(hints[field.name], value[field.name], key=inner)
        return kind(**fields)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin not in (tuple, Mapping) and type(None) in args:  # an optional field
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is float:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EvaluationError(f"{where} should be a number, found {type(value).__name__}")
        return float(value)
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        if value not in {str(member) for member in kind}:
            raise EvaluationError(f"{where} should be one of {', '.join(map(str, kind))}, found {value!r:.40}")
        return kind(value)
    if kind in (int, bool, str):
        if type(value) is not kind:
            raise EvaluationError(f"{where} should be {kind.__name__}, found {type(value).__name__}")
        return value
    if origin is tuple and args[-1] is Ellipsis:
        if not isinstance(value, list):
            raise EvaluationError(f"{where} should be a list, found {type(value).__name__}")
        return tuple(from_jsonable(args[0], v, key=f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, list) or len(value) != len(args):
            raise EvaluationError(f"{where} should be a list of {len(args)}, found {value!r:.40}")
        return tuple(from_jsonable(a, v, key=f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise EvaluationError(f"{where} should be a JSON object, found {type(value).__name__}")
        return MappingProxyType({k: from_jsonable(args[1], v, key=f"{key}.{k}") for k, v in value.items()})
    if kind is pl.DataFrame:
        if not isinstance(value, list) or not all(isinstance(row, Mapping) for row in value):
            raise EvaluationError(f"{where} should be a list of rows")
        return pl.DataFrame(value, infer_schema_length=None)
    return value


@dataclass(frozen=True)
class Discrimination:
    """AUROC and AUPRC of one score, with patient-level bootstrap 95% intervals.

    ``auroc_ci`` / ``auprc_ci`` are (lower, upper) percentiles 2.5 and 97.5 over the
    ``n_boot_valid`` resamples that held both classes (NaN when none did or n_boot is 0).
    ``n_missing_score`` rows had a null score and were ranked lowest.
    """

    score: str
    label: str
    auroc: float
    auroc_ci: tuple[float, float]
    auprc: float
    auprc_ci: tuple[float, float]
    n_rows: int
    n_positive: int
    prevalence: float
    n_missing_score: int
    cluster: str | None
    n_clusters: int
    n_boot: int
    n_boot_valid: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Discrimination:
        """Read back what to_dict wrote (None back to NaN); EvaluationError names a key that is
        missing or of the wrong kind."""
        return from_jsonable(cls, data, key="")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return jsonable(self)


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """How well predicted probabilities match observed rates.

    - ``brier``: mean squared difference between risk and label (0 is perfect).
    - ``ece``: expected calibration error over equal-frequency bins: sum over bins of
      (rows in bin / rows) * |mean predicted - observed rate|. Rows with equal risk always
      share a bin, so bins can be unequal (or fewer than n_bins) when risks tie.
    - ``calibration_in_the_large``: mean predicted minus observed rate (positive: the model
      over-predicts on average).
    - ``reliability``: one row per bin: bin, mean_predicted, observed_rate, count,
      min_predicted, max_predicted (the reliability curve).
    """

    score: str
    label: str
    n_rows: int
    n_bins: int
    brier: float
    ece: float
    calibration_in_the_large: float
    mean_predicted: float
    observed_rate: float
    reliability: pl.DataFrame

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationResult:
        """Read back what to_dict wrote (None back to NaN); EvaluationError names a key that is
        missing or of the wrong kind."""
        return from_jsonable(cls, data, key="")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; the reliability curve becomes a list of row dicts."""
        return jsonable(self)


@dataclass(frozen=True)
class AlertMetrics:
    """What happens on the ward at one operating point: flagged = score >= threshold.

    Row level (one row = one encounter-hour): ``sensitivity`` TP/(TP+FN), ``specificity``
    TN/(TN+FP), ``ppv`` TP/(TP+FP), ``npv`` TN/(TN+FN), ``flag_rate`` flagged rows / rows.
    A ratio with an empty denominator is NaN.

    Alert level: an *alert episode* starts at a flagged row whose previous row in the same
    encounter (rows ordered by time) was not flagged, or which is the encounter's first row;
    on-off-on within an encounter is two alerts. ``alerts_per_100_patient_days`` is episodes
    / (rows / 24) * 100. ``alert_ppv`` is the share of episodes whose first row has label 1
    (the outcome follows within the label horizon of the moment the alert fires).

    Encounter level, for encounters with an ``event_time``: the *detection window* is
    [event_time - detection_window_hours, event_time), start included, event hour excluded.
    ``n_event_encounters`` have an event; ``n_event_encounters_evaluable`` have at least one
    row in their window (the others cannot be detected and are left out of the
    denominator); ``encounter_sensitivity`` = detected / evaluable, where detected means at
    least one flagged row in the window. ``median_lead_time_hours`` is the median over
    detected encounters of event_time - the first flagged row in the window (so in
    (0, detection_window_hours]). ``nonevent_encounter_flag_rate`` is the share of
    encounters without an event that were flagged at least once.

    ``promise`` says the operating point in words, rounded to the safe side.
    """

    score: str
    threshold: float
    detection_window_hours: float
    n_rows: int
    n_encounters: int
    patient_days: float
    n_flagged_rows: int
    flag_rate: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    n_alert_episodes: int
    alerts_per_100_patient_days: float
    alert_ppv: float
    n_event_encounters: int
    n_event_encounters_evaluable: int
    n_event_encounters_detected: int
    encounter_sensitivity: float
    median_lead_time_hours: float
    nonevent_encounter_flag_rate: float
    promise: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertMetrics:
        """Read back what to_dict wrote (None back to NaN); EvaluationError names a key that is
        missing or of the wrong kind."""
        return from_jsonable(cls, data, key="")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return jsonable(self)


@dataclass(frozen=True)
class BaselineComparison:
    """A baseline at its usual threshold, and the model at the same alert burden.

    ``model_threshold`` is what ``threshold_at_alert_rate`` returns for the baseline's
    alerts per 100 patient-days, so the model's burden is at most the baseline's.
    """

    baseline: str
    baseline_threshold: float
    baseline_metrics: AlertMetrics
    score: str
    model_threshold: float
    model_metrics: AlertMetrics

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineComparison:
        """Read back what to_dict wrote (None back to NaN); EvaluationError names a key that is
        missing or of the wrong kind."""
        return from_jsonable(cls, data, key="")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        return jsonable(self)


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """Everything ``evaluate`` measured, for the CLI, the model card and the dashboard.

    ``discrimination`` maps each score (the model first, then baselines) to its result;
    ``comparisons`` maps each baseline to its comparison at the same alert rate;
    ``utility`` (only when the frame has ``sepsis_label``) maps each operating point
    (``"risk"``, ``"news2"``, ``"risk @ news2 alert rate"``) to its PhysioNet 2019 score.
    """

    outcome: str | None
    score: str
    label: str
    threshold: float
    detection_window_hours: float
    n_rows: int
    n_encounters: int
    n_patients: int
    n_positive: int
    prevalence: float
    patient_days: float
    discrimination: Mapping[str, Discrimination]
    calibration: CalibrationResult
    operating_point: AlertMetrics
    comparisons: Mapping[str, BaselineComparison]
    utility: Mapping[str, float] | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Read back what to_dict wrote (None back to NaN); EvaluationError names a key that is
        missing or of the wrong kind."""
        return from_jsonable(cls, data, key="")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None, frames -> lists of rows)."""
        return jsonable(self)

    def to_markdown(self) -> str:
        """A readable report: discrimination, calibration, operating point, baselines."""
        return evaluation_markdown(self)


# --------------------------------------------------------------------------- validation


def _require_columns(frame: pl.DataFrame, columns: Sequence[str], *, purpose: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationError(
            f"predictions frame has no column(s) {', '.join(repr(c) for c in missing)} "
            f"needed for {purpose} (columns: {', '.join(frame.columns)})"
        )
    if frame.height == 0:
        raise EvaluationError(f"predictions frame has no rows; cannot compute {purpose}")


def _require_no_nulls(frame: pl.DataFrame, columns: Sequence[str], *, purpose: str) -> None:
    counts = frame.select(pl.col(c).null_count() for c in columns).row(0)
    for column, count in zip(columns, counts, strict=True):
        if count:
            raise EvaluationError(
                f"column {column!r} has {count:,} null row(s) among {frame.height:,}; "
                f"{purpose} needs a value on every row"
            )


def _label_values(frame: pl.DataFrame, label: str) -> np.ndarray:
    """The label column as 0/1 int8, after checking it holds nothing else."""
    column = frame.get_column(label)
    nulls = column.null_count()
    if nulls:
        raise EvaluationError(
            f"label column {label!r} has {nulls:,} null row(s) among {frame.height:,} "
            "(censored rows); drop them before evaluating"
        )
    values = column.cast(pl.Float64).to_numpy()
    bad = int(np.count_nonzero((values != 0) & (values != 1)))
    if bad:
        raise EvaluationError(
            f"label column {label!r} has {bad:,} row(s) that are not 0 or 1 among {frame.height:,}"
        )
    return values.astype(np.int8)


def _dense_codes(keys: pl.Series) -> np.ndarray:
    """Codes 0..k-1 for the distinct values of a key column (patient or encounter id).

    Strings go through Categorical, which hashes instead of sorting (20x faster on a
    million ids); the codes are then made contiguous.
    """
    if keys.dtype == pl.String:
        keys = keys.cast(pl.Categorical).to_physical()
    elif not keys.dtype.is_numeric():
        keys = keys.rank("dense")
    return np.unique(keys.to_numpy(), return_inverse=True)[1].astype(np.int64)


def _score_expr(score: str) -> pl.Expr:
    """The score as Float64 with NaN made null (a missing score never alerts)."""
    return pl.col(score).cast(pl.Float64).fill_nan(None)


def _check_score_numeric(frame: pl.DataFrame, score: str) -> None:
    dtype = frame.schema[score]
    if not (dtype.is_numeric() or dtype == pl.Boolean):
        raise EvaluationError(f"score column {score!r} must be numeric, got {dtype}")


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


# --------------------------------------------------------------------------- discrimination


def _rank_statistics(
    group: np.ndarray, cluster_ids: np.ndarray, y: np.ndarray, n_clusters: int
) -> Callable[[np.ndarray], tuple[float, float]]:
    """A function: cluster multiplicities -> (AUROC, average precision) of the weighted rows.

    ``group`` is each row's dense rank of score (ties share a group), ``cluster_ids`` its
    patient (0..n_clusters-1). Rows are aggregated once into cells of (group, patient) per
    class, sorted by group; a resample is a vector of patient multiplicities, and the
    statistics of the resampled rows follow without sorting again:

    - AUROC (Mann-Whitney, ties counting one half; = sklearn's roc_auc_score) is
      sum over positive groups g of P_g * (N_below_g + N_at_g / 2) / (P * N), where the
      negative counts come from one cumulative sum over the negative cells.
    - Average precision (= sklearn's average_precision_score) is
      sum over positive groups, highest score first, of P_g / P * TP_g / (TP_g + FP_g),
      with TP_g the positives and FP_g the negatives scoring at least g.

    Each replicate costs one gather and one segmented sum over the negative cells, and a
    few operations over the (usually few) positive cells. NaN when a class is absent.
    """
    cells, cell_of_row = np.unique(group * n_clusters + cluster_ids, return_inverse=True)
    cell_positive = np.bincount(cell_of_row, weights=y, minlength=cells.size)
    cell_negative = np.bincount(cell_of_row, minlength=cells.size) - cell_positive
    cell_group = cells // n_clusters
    cell_cluster = cells % n_clusters

    has_positive = cell_positive > 0
    pos_group = cell_group[has_positive]
    pos_cluster = cell_cluster[has_positive]
    pos_count = cell_positive[has_positive]
    pos_starts = np.flatnonzero(np.r_[True, pos_group[1:] != pos_group[:-1]])
    distinct_pos_group = pos_group[pos_starts]

    has_negative = cell_negative > 0
    neg_group = cell_group[has_negative]
    neg_cluster = cell_cluster[has_negative]
    neg_count = cell_negative[has_negative]
    # Negative weight below / at-or-below each positive score: only these cut points are
    # needed, so sum negative cells per segment between cut points (np.add.reduceat needs
    # strictly increasing starts below the length) and take an exclusive cumulative sum.
    below = np.searchsorted(neg_group, distinct_pos_group, side="left")
    at_or_below = np.searchsorted(neg_group, distinct_pos_group, side="right")
    cuts = np.r_[below, at_or_below]
    segment_starts = np.unique(np.r_[0, cuts[cuts < neg_group.size]])
    below_segment = np.searchsorted(segment_starts, below)
    at_or_below_segment = np.searchsorted(segment_starts, at_or_below)
    unit_counts = bool(np.all(neg_count == 1))

    def statistics(multiplicity: np.ndarray) -> tuple[float, float]:
        positives = np.add.reduceat(multiplicity[pos_cluster] * pos_count, pos_starts)
        negative_weights = multiplicity[neg_cluster] if unit_counts else multiplicity[neg_cluster] * neg_count
        cumulative = np.zeros(segment_starts.size + 1)
        np.cumsum(np.add.reduceat(negative_weights, segment_starts), out=cumulative[1:])
        total_positive = positives.sum()
        total_negative = cumulative[-1]
        if total_positive <= 0 or total_negative <= 0:
            return float("nan"), float("nan")
        negatives_below = cumulative[below_segment]
        negatives_at = cumulative[at_or_below_segment] - negatives_below
        # (a * b).sum() rather than np.dot: BLAS threads cost more than they save here
        auroc = float((positives * (negatives_below + 0.5 * negatives_at)).sum() / (total_positive * total_negative))
        positives_desc = positives[::-1]
        true_positives = np.cumsum(positives_desc)
        flagged = true_positives + (total_negative - negatives_below[::-1])
        precision = np.divide(true_positives, flagged, out=np.zeros_like(flagged), where=flagged > 0)
        auprc = float((positives_desc * precision).sum() / total_positive)
        return auroc, auprc

    return statistics


def _percentile_interval(values: np.ndarray) -> tuple[float, float]:
    valid = values[np.isfinite(values)]
    if valid.size == 0:
        return float("nan"), float("nan")
    lower, upper = np.quantile(valid, [0.025, 0.975])
    return float(lower), float(upper)


def discrimination(
    frame: pl.DataFrame,
    *,
    score: str = SCORE,
    label: str = LABEL,
    cluster: str | None = PATIENT,
    n_boot: int = 200,
    seed: int = 0,
) -> Discrimination:
    """AUROC and AUPRC of ``score`` against ``label``, with bootstrap 95% intervals.

    The bootstrap resamples ``cluster`` units (patients by default; None resamples rows)
    with replacement, ``n_boot`` times, from a numpy Generator seeded with ``seed``.
    It never re-sorts: a resample is a vector of patient multiplicities, and each replicate
    is exactly the AUROC/AUPRC of the resampled rows, computed from weighted counts per
    distinct score (see ``_rank_statistics``); 200 replicates on a million rows take
    seconds. Resamples that hold only one class are skipped (counted in ``n_boot_valid``).

    Raises EvaluationError when the frame has no rows or the label has only one class.
    """
    needed = [score, label] + ([cluster] if cluster is not None else [])
    _require_columns(frame, needed, purpose=f"discrimination of {score!r}")
    _check_score_numeric(frame, score)
    if n_boot < 0:
        raise EvaluationError(f"n_boot must be 0 or more, got {n_boot}")
    y = _label_values(frame, label)
    n_rows = frame.height
    n_positive = int(y.sum())
    if n_positive == 0 or n_positive == n_rows:
        missing_class = "positive" if n_positive == 0 else "negative"
        raise EvaluationError(
            f"cannot compute AUROC: 0 {missing_class} rows among {n_rows:,} (label {label!r}); "
            "need at least one of each class"
        )
    if cluster is not None:
        _require_no_nulls(frame, [cluster], purpose="the patient-level bootstrap")
        cluster_ids = _dense_codes(frame.get_column(cluster))
    else:
        cluster_ids = np.arange(n_rows, dtype=np.int64)
    values = frame.select(_score_expr(score)).to_series().to_numpy()
    missing = np.isnan(values)
    n_missing = int(missing.sum())
    group = np.zeros(n_rows, dtype=np.int64)  # group 0: null scores, below every scored row
    group[~missing] = np.unique(values[~missing], return_inverse=True)[1] + 1
    n_clusters = int(cluster_ids.max()) + 1

    statistics = _rank_statistics(group, cluster_ids, y.astype(np.float64), n_clusters)
    auroc, auprc = statistics(np.ones(n_clusters))
    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, 2), np.nan)
    for b in range(n_boot):
        multiplicity = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
        boot[b] = statistics(multiplicity.astype(np.float64))
    return Discrimination(
        score=score,
        label=label,
        auroc=auroc,
        auroc_ci=_percentile_interval(boot[:, 0]),
        auprc=auprc,
        auprc_ci=_percentile_interval(boot[:, 1]),
        n_rows=n_rows,
        n_positive=n_positive,
        prevalence=n_positive / n_rows,
        n_missing_score=n_missing,
        cluster=cluster,
        n_clusters=n_clusters,
        n_boot=n_boot,
        n_boot_valid=int(np.isfinite(boot[:, 0]).sum()),
    )


# --------------------------------------------------------------------------- calibration


def calibration(
    frame: pl.DataFrame,
    *,
    score: str = SCORE,
    label: str = LABEL,
    n_bins: int = 10,
) -> CalibrationResult:
    """Brier score, ECE over equal-frequency bins, calibration-in-the-large, reliability curve.

    Bins: rows sorted by risk; a row whose risk first appears at 0-based position r (rank
    "min") goes to bin floor(r * n_bins / rows), so bins hold about rows / n_bins rows and
    tied risks never straddle two bins.

    Raises EvaluationError when risk is missing or outside [0, 1] (calibration is about
    probabilities), or n_bins < 1.
    """
    _require_columns(frame, [score, label], purpose=f"calibration of {score!r}")
    _check_score_numeric(frame, score)
    if n_bins < 1:
        raise EvaluationError(f"n_bins must be at least 1, got {n_bins}")
    y = _label_values(frame, label)
    risk = frame.select(_score_expr(score)).to_series().to_numpy()
    missing = int(np.count_nonzero(np.isnan(risk)))
    if missing:
        raise EvaluationError(
            f"score {score!r} is null or NaN on {missing:,} row(s) among {frame.height:,}; "
            "calibration needs a probability on every row"
        )
    outside = int(np.count_nonzero((risk < 0) | (risk > 1)))
    if outside:
        raise EvaluationError(
            f"score {score!r} has {outside:,} row(s) outside [0, 1] among {frame.height:,}; "
            "calibration needs probabilities"
        )
    n_rows = frame.height
    bins = (
        pl.DataFrame({"risk": risk, "label": y.astype(np.float64)})
        .with_columns(bin=((pl.col("risk").rank("min").cast(pl.Int64) - 1) * n_bins // n_rows))
        .group_by("bin")
        .agg(
            mean_predicted=pl.col("risk").mean(),
            observed_rate=pl.col("label").mean(),
            count=pl.len().cast(pl.Int64),
            min_predicted=pl.col("risk").min(),
            max_predicted=pl.col("risk").max(),
        )
        .sort("bin")
    )
    weights = bins.get_column("count").to_numpy() / n_rows
    gaps = np.abs(bins.get_column("mean_predicted").to_numpy() - bins.get_column("observed_rate").to_numpy())
    mean_predicted = float(risk.mean())
    observed_rate = float(y.mean())
    return CalibrationResult(
        score=score,
        label=label,
        n_rows=n_rows,
        n_bins=n_bins,
        brier=float(np.mean((risk - y) ** 2)),
        ece=float((weights * gaps).sum()),
        calibration_in_the_large=mean_predicted - observed_rate,
        mean_predicted=mean_predicted,
        observed_rate=observed_rate,
        reliability=bins,
    )


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, eq=False)
class _AlertData:
    """Rows sorted by (encounter, time), prepared once for any number of operating points."""

    rows: pl.DataFrame  # _enc, _time, _event, _in_window, and the score columns
    first_row: np.ndarray  # bool: the row opens its encounter
    label: np.ndarray  # int8 0/1
    in_window: np.ndarray  # bool: row lies in its encounter's detection window
    has_event: np.ndarray  # bool: the row's encounter has an event
    n_encounters: int
    n_event_encounters: int
    n_nonevent_encounters: int
    detection_window_hours: float
    sepsis_label: np.ndarray | None  # int8 0/1 in row order, when the frame has one

    @property
    def patient_days(self) -> float:
        return float(alert_burden.patient_days(self.rows.height, hours_per_row=HOURS_PER_ROW))


def _prepare_alerts(
    frame: pl.DataFrame,
    *,
    scores: Sequence[str],
    label: str,
    detection_window_hours: float,
    with_sepsis_label: bool = False,
) -> _AlertData:
    columns = [ENCOUNTER, TIME, EVENT_TIME, label, *scores]
    _require_columns(frame, list(dict.fromkeys(columns)), purpose="alert metrics")
    for score in scores:
        _check_score_numeric(frame, score)
    _require_no_nulls(frame, [ENCOUNTER, TIME], purpose="alert metrics")
    time_dtype = frame.schema[TIME]
    if not isinstance(time_dtype, pl.Datetime):
        raise EvaluationError(f"column {TIME!r} must be a datetime (UTC), got {time_dtype}")
    if not detection_window_hours > 0:
        raise EvaluationError(f"detection_window_hours must be positive, got {detection_window_hours}")
    y = _label_values(frame, label)
    window = pl.duration(microseconds=int(round(detection_window_hours * _MICROSECONDS_PER_HOUR)))
    rows = (
        frame.select(
            pl.Series("_enc", _dense_codes(frame.get_column(ENCOUNTER))),
            pl.col(TIME).alias("_time"),
            pl.col(EVENT_TIME).cast(time_dtype).alias("_event_row"),
            pl.Series("_label", y),
            *([pl.Series("_sepsis", _label_values(frame, SEPSIS_LABEL))] if with_sepsis_label else []),
            *[_score_expr(s).alias(s) for s in dict.fromkeys(scores)],
        )
        .sort(["_enc", "_time"], maintain_order=True)
        .with_columns(
            _first=(pl.col("_enc") != pl.col("_enc").shift(1)).fill_null(True),
            _event=pl.col("_event_row").min().over("_enc"),
        )
        .with_columns(
            _in_window=(
                pl.col("_event").is_not_null()
                & (pl.col("_time") >= pl.col("_event") - window)
                & (pl.col("_time") < pl.col("_event"))
            )
        )
    )
    has_event = rows.get_column("_event").is_not_null().to_numpy()
    encounters = rows.get_column("_enc")
    n_encounters = encounters.n_unique()
    n_event_encounters = encounters.filter(pl.Series(has_event)).n_unique()
    return _AlertData(
        rows=rows,
        first_row=rows.get_column("_first").to_numpy(),
        label=rows.get_column("_label").to_numpy(),
        in_window=rows.get_column("_in_window").to_numpy(),
        has_event=has_event,
        n_encounters=n_encounters,
        n_event_encounters=n_event_encounters,
        n_nonevent_encounters=n_encounters - n_event_encounters,
        detection_window_hours=detection_window_hours,
        sepsis_label=rows.get_column("_sepsis").to_numpy() if with_sepsis_label else None,
    )


def _flagged(data: _AlertData, *, score: str, threshold: float) -> np.ndarray:
    """score >= threshold per row; a null score (NaN here) compares False: never flags."""
    return data.rows.get_column(score).to_numpy() >= threshold


def _promise(score: str, threshold: float, alerts_per_100: float, ppv: float) -> str:
    """The operating point in words, rounded to the safe side (burden up, PPV down)."""
    if not math.isfinite(alerts_per_100):
        return f"{score} >= {threshold:.4g}: no rows to judge"
    burden = math.ceil(alerts_per_100 * 10 - 1e-9) / 10
    if math.isfinite(ppv):
        ppv_text = f"PPV at least {math.floor(ppv * 100 + 1e-9)}%"
    else:
        ppv_text = "PPV undefined (no flagged hours)"
    return f"{score} >= {threshold:.4g}: at most {burden:.1f} alerts per 100 patient-days; {ppv_text}"


def _alert_metrics_on(data: _AlertData, *, score: str, threshold: float) -> AlertMetrics:
    flagged = _flagged(data, score=score, threshold=threshold)
    y = data.label.astype(bool)
    true_positives = int(np.count_nonzero(flagged & y))
    false_positives = int(np.count_nonzero(flagged & ~y))
    false_negatives = int(np.count_nonzero(~flagged & y))
    true_negatives = int(flagged.size - true_positives - false_positives - false_negatives)
    starts = alert_burden.episode_starts(flagged, data.first_row)
    n_episodes = int(np.count_nonzero(starts))
    n_rows = data.rows.height
    patient_days = data.patient_days

    window = data.rows.filter(pl.Series(data.in_window)).select(
        "_enc", "_time", "_event", _flag=pl.Series(flagged[data.in_window])
    )
    per_encounter = window.group_by("_enc").agg(
        detected=pl.col("_flag").any(),
        lead_hours=(pl.col("_event").first() - pl.col("_time").filter(pl.col("_flag")).min()).dt.total_microseconds()
        / _MICROSECONDS_PER_HOUR,
    )
    n_evaluable = per_encounter.height
    n_detected = int(per_encounter.get_column("detected").sum()) if n_evaluable else 0
    leads = per_encounter.get_column("lead_hours").drop_nulls()
    median_lead = float(leads.median()) if leads.len() else float("nan")

    nonevent_flagged = data.rows.get_column("_enc").filter(pl.Series(flagged & ~data.has_event)).n_unique()

    ppv = _ratio(true_positives, true_positives + false_positives)
    alerts_per_100 = float(alert_burden.alerts_per_100_patient_days(n_episodes, patient_days))
    return AlertMetrics(
        score=score,
        threshold=float(threshold),
        detection_window_hours=data.detection_window_hours,
        n_rows=n_rows,
        n_encounters=data.n_encounters,
        patient_days=patient_days,
        n_flagged_rows=int(np.count_nonzero(flagged)),
        flag_rate=_ratio(np.count_nonzero(flagged), n_rows),
        true_positives=true_positives,
        false_positives=false_positives,
        true_negatives=true_negatives,
        false_negatives=false_negatives,
        sensitivity=_ratio(true_positives, true_positives + false_negatives),
        specificity=_ratio(true_negatives, true_negatives + false_positives),
        ppv=ppv,
        npv=_ratio(true_negatives, true_negatives + false_negatives),
        n_alert_episodes=n_episodes,
        alerts_per_100_patient_days=alerts_per_100,
        alert_ppv=_ratio(int(np.count_nonzero(starts & y)), n_episodes),
        n_event_encounters=data.n_event_encounters,
        n_event_encounters_evaluable=n_evaluable,
        n_event_encounters_detected=n_detected,
        encounter_sensitivity=_ratio(n_detected, n_evaluable),
        median_lead_time_hours=median_lead,
        nonevent_encounter_flag_rate=_ratio(nonevent_flagged, data.n_nonevent_encounters),
        promise=_promise(score, threshold, alerts_per_100, ppv),
    )


def alert_metrics(
    frame: pl.DataFrame,
    *,
    threshold: float,
    score: str = SCORE,
    label: str = LABEL,
    detection_window_hours: float = DEFAULT_DETECTION_WINDOW_HOURS,
) -> AlertMetrics:
    """Row-, alert- and encounter-level metrics at ``score >= threshold`` (see AlertMetrics).

    Rows are ordered by (encounter_id, time) here, whatever their order in ``frame``.
    A null score never flags. Ratios with an empty denominator are NaN; an empty frame, a
    missing column or a null label raises EvaluationError.
    """
    data = _prepare_alerts(frame, scores=[score], label=label, detection_window_hours=detection_window_hours)
    return _alert_metrics_on(data, score=score, threshold=threshold)


def _threshold_at_alert_rate_on(data: _AlertData, *, score: str, alerts_per_100_patient_days: float) -> float:
    values = data.rows.get_column(score).to_numpy()
    if np.isnan(values).all():
        raise EvaluationError(
            f"cannot choose a threshold: score {score!r} is null on all {values.size:,} rows"
        )
    return alert_burden.threshold_for_budget(
        values, data.first_row, patient_days=data.patient_days, alerts_per_100_patient_days=alerts_per_100_patient_days
    ).threshold


def threshold_at_alert_rate(
    frame: pl.DataFrame,
    *,
    alerts_per_100_patient_days: float,
    score: str = SCORE,
    label: str = LABEL,
) -> float:
    """The threshold whose alert burden is as high as possible without exceeding the target.

    Lowering a threshold can *merge* episodes, so the burden is not monotone in it. We walk
    the distinct score values from the highest down and stop before the first whose alerts
    per 100 patient-days exceed the target: the returned threshold is the lowest one such
    that it and every higher threshold stay within budget. When even the highest score
    exceeds it, the threshold is just above the highest score (no alerts); when none does,
    it is the lowest score. All thresholds are evaluated at once (sorting and searchsorted),
    so this takes about as long as one ``alert_metrics`` call.
    """
    if not alerts_per_100_patient_days >= 0:
        raise EvaluationError(
            f"alerts_per_100_patient_days must be 0 or more, got {alerts_per_100_patient_days}"
        )
    data = _prepare_alerts(
        frame, scores=[score], label=label, detection_window_hours=DEFAULT_DETECTION_WINDOW_HOURS
    )
    return _threshold_at_alert_rate_on(data, score=score, alerts_per_100_patient_days=alerts_per_100_patient_days)


def _compare_on(
    data: _AlertData, *, baseline: str, baseline_threshold: float, score: str
) -> BaselineComparison:
    baseline_metrics = _alert_metrics_on(data, score=baseline, threshold=baseline_threshold)
    model_threshold = _threshold_at_alert_rate_on(
        data, score=score, alerts_per_100_patient_days=baseline_metrics.alerts_per_100_patient_days
    )
    return BaselineComparison(
        baseline=baseline,
        baseline_threshold=float(baseline_threshold),
        baseline_metrics=baseline_metrics,
        score=score,
        model_threshold=model_threshold,
        model_metrics=_alert_metrics_on(data, score=score, threshold=model_threshold),
    )


def compare_at_same_alert_rate(
    frame: pl.DataFrame,
    *,
    baseline: str,
    baseline_threshold: float,
    score: str = SCORE,
    label: str = LABEL,
    detection_window_hours: float = DEFAULT_DETECTION_WINDOW_HOURS,
) -> BaselineComparison:
    """The baseline at ``baseline >= baseline_threshold`` (e.g. news2 >= 5) and the model at
    the threshold that gives at most the same alerts per 100 patient-days.

    Comparing at equal alert burden is the fair question for a ward: for the same number of
    interruptions, which score catches more deteriorations, earlier?
    """
    data = _prepare_alerts(
        frame, scores=[baseline, score], label=label, detection_window_hours=detection_window_hours
    )
    return _compare_on(data, baseline=baseline, baseline_threshold=baseline_threshold, score=score)


# --------------------------------------------------------------------------- PhysioNet utility


def _sepsis_utilities(labels: np.ndarray, encounters: np.ndarray, *, label_name: str = SEPSIS_LABEL) -> RowUtilities:
    """The PhysioNet 2019 utilities (riskcast.utility) of rows sorted by (encounter, time);
    EvaluationError when no encounter is septic, which leaves the score undefined."""
    utilities = row_utilities(labels, encounters)
    if utilities.span <= 0:
        raise EvaluationError(
            f"cannot compute the PhysioNet utility: no encounter has {label_name!r} = 1 among "
            f"{np.unique(encounters).size:,} encounters, so the best and no-alarm utilities are equal"
        )
    return utilities


def predictions_utility(
    frame: pl.DataFrame,
    *,
    label: str = SEPSIS_LABEL,
    prediction: str = "flagged",
) -> float:
    """The PhysioNet/CinC Challenge 2019 normalised utility of the binary predictions of a frame.

    Faithful to the challenge's ``evaluate_sepsis_score.py``, with each encounter playing
    the part of one patient file and its rows ordered by time; the utility itself, its
    derivation and the challenge's worked example are riskcast.utility's. The score is 1 for
    the best predictions, 0 for no alarms, negative for worse than no alarms.

    t counts rows, so the frame must hold every hour of each stay from its first row on
    (as the challenge's files do): dropping rows shifts t_sepsis. ``label`` is the
    challenge's SepsisLabel (already 6 h early); ``prediction`` is a 0/1 or boolean column
    (null counts as an error). Raises EvaluationError when no encounter is septic (the
    score is undefined).
    """
    _require_columns(frame, [ENCOUNTER, TIME, label, prediction], purpose="the PhysioNet utility")
    _require_no_nulls(frame, [ENCOUNTER, TIME, prediction], purpose="the PhysioNet utility")
    y = _label_values(frame, label)
    predicted = frame.get_column(prediction).cast(pl.Float64).to_numpy()
    bad = int(np.count_nonzero((predicted != 0) & (predicted != 1)))
    if bad:
        raise EvaluationError(
            f"prediction column {prediction!r} has {bad:,} row(s) that are not 0 or 1 among {frame.height:,}"
        )
    rows = pl.DataFrame(
        {
            "_enc": _dense_codes(frame.get_column(ENCOUNTER)),
            "_time": frame.get_column(TIME),
            "_label": y,
            "_flagged": predicted == 1,
        }
    ).sort(["_enc", "_time"], maintain_order=True)
    utilities = _sepsis_utilities(rows.get_column("_label").to_numpy(), rows.get_column("_enc").to_numpy(), label_name=label)
    return utilities.score(rows.get_column("_flagged").to_numpy())


# --------------------------------------------------------------------------- the whole report


def evaluate(
    frame: pl.DataFrame,
    *,
    threshold: float,
    score: str = SCORE,
    label: str = LABEL,
    baselines: Mapping[str, float] = DEFAULT_BASELINES,
    n_boot: int = 200,
    seed: int = 0,
    outcome: str | None = None,
    n_bins: int = 10,
    detection_window_hours: float = DEFAULT_DETECTION_WINDOW_HOURS,
) -> EvaluationReport:
    """Evaluate the model's ``score`` at ``threshold`` and against each baseline.

    ``baselines`` maps a baseline score column to its usual alerting threshold (NEWS2 >= 5
    by default; pass {} for none). For each: its discrimination, its alert metrics at its
    own threshold, and the model at the threshold giving the same alert burden. When the
    frame has ``sepsis_label``, also the PhysioNet 2019 utility of every operating point.
    ``outcome`` names what ``label`` predicts, for the report's title. Every score is
    bootstrapped with the same ``seed``, so model and baselines see the same patient
    resamples (paired intervals).
    """
    missing = [b for b in baselines if b not in frame.columns]
    if missing:
        raise EvaluationError(
            f"baseline column(s) {', '.join(repr(b) for b in missing)} not in the predictions frame "
            f"(columns: {', '.join(frame.columns)}); pass baselines={{}} to evaluate without them"
        )
    _require_columns(frame, [score, label, PATIENT, ENCOUNTER, TIME, EVENT_TIME], purpose="the evaluation")
    data = _prepare_alerts(
        frame,
        scores=[score, *baselines],
        label=label,
        detection_window_hours=detection_window_hours,
        with_sepsis_label=SEPSIS_LABEL in frame.columns,
    )
    scores = [score, *[b for b in baselines if b != score]]
    discrimination_by_score = {
        s: discrimination(frame, score=s, label=label, n_boot=n_boot, seed=seed) for s in scores
    }
    calibration_result = calibration(frame, score=score, label=label, n_bins=n_bins)
    operating_point = _alert_metrics_on(data, score=score, threshold=threshold)
    comparisons = {
        b: _compare_on(data, baseline=b, baseline_threshold=t, score=score) for b, t in baselines.items()
    }

    utility: dict[str, float] | None = None
    if data.sepsis_label is not None:
        operating_points = {score: (score, threshold)}
        for b, comparison in comparisons.items():
            operating_points[b] = (b, comparison.baseline_threshold)
            operating_points[f"{score} @ {b} alert rate"] = (score, comparison.model_threshold)
        utilities = _sepsis_utilities(data.sepsis_label, data.rows.get_column("_enc").to_numpy())
        utility = {
            name: utilities.score(_flagged(data, score=column, threshold=cut))
            for name, (column, cut) in operating_points.items()
        }

    y = data.label
    return EvaluationReport(
        outcome=outcome,
        score=score,
        label=label,
        threshold=float(threshold),
        detection_window_hours=detection_window_hours,
        n_rows=frame.height,
        n_encounters=data.n_encounters,
        n_patients=frame.get_column(PATIENT).n_unique(),
        n_positive=int(y.sum()),
        prevalence=float(y.mean()),
        patient_days=data.patient_days,
        discrimination=MappingProxyType(discrimination_by_score),
        calibration=calibration_result,
        operating_point=operating_point,
        comparisons=MappingProxyType(comparisons),
        utility=None if utility is None else MappingProxyType(utility),
    )
