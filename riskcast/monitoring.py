"""What the monitor judges, as pure functions on frames: feed freshness, drift and the alert rate.

The one definition of each. The monitor (riskcast.pipeline.monitor, run by the scheduler's
monitor job) turns their problems into system alerts; the dashboard's data-health page
(riskcast.read_models.feed_freshness) shows the same freshness frame, so the page and the
alerts never disagree on which feed is stale. Nothing here reads files, the database or the
clock: `at` is passed in.

- Feed freshness: for every ward with admitted patients at `at`, the last time each
  variable was charted on the ward (any of its encounters) within the lookback window. A
  (ward, variable) feed is stale when that is more than the variable's stale_after_hours
  (schemas/variables.yaml) before `at`; a ward with admitted patients and no observation at
  all in the window is silent (variable "*"), and stale. A variable not charted on a ward
  within the window is no feed of that ward; a ward with nobody admitted has no feeds.
- Drift: the population stability index, PSI = sum over bins of (c - r) * ln(c / r),
  with r and c the reference and current shares of values per bin (floored at 1e-4). Bins
  are the reference's deciles. Below 0.1 is usually read as no shift, 0.1-0.25 as moderate,
  above 0.25 as major.
- Alert rate: risk alerts raised per 100 patient-days (riskcast.alert_burden) against the
  rate the model's held-out evaluation promised at its threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from riskcast.admission import admitted_at
from riskcast.alert_burden import alerts_per_100_patient_days
from riskcast.catalog import Catalog

PSI_FLOOR = 1e-4
DEFAULT_BINS = 10
DEFAULT_LOOKBACK_HOURS = 168.0
"""A (ward, variable) feed counts when it delivered within this many hours before `at`."""
ALL_VARIABLES = "*"
"""The variable of a silent ward's one row: nothing at all was charted there in the window."""
SILENT_LABEL = "No observations at all"
"""The label of a silent ward's row, as the data-health page shows it."""
_UTC = pl.Datetime("us", "UTC")
FRESHNESS_SCHEMA: dict[str, pl.DataType] = {
    "ward": pl.String(),
    "variable": pl.String(),
    "label": pl.String(),
    "kind": pl.String(),
    "essential": pl.Boolean(),
    "last_charttime": _UTC,
    "hours_since": pl.Float64(),
    "stale_after_hours": pl.Float64(),
    "stale": pl.Boolean(),
}
DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "variable": pl.String(),
    "psi": pl.Float64(),
    "n_reference": pl.Int64(),
    "n_current": pl.Int64(),
}


# ------------------------------------------------------------------------- feed freshness


def feed_freshness(
    observations: pl.LazyFrame,
    encounters: pl.LazyFrame,
    *,
    at: datetime,
    catalog: Catalog,
    lookback_hours: float = DEFAULT_LOOKBACK_HOURS,
) -> pl.DataFrame:
    """Per ward with admitted patients at `at`, per variable it received in the lookback window:
    when it was last charted, how many hours before `at` that is, and whether that is stale.

    Columns: FRESHNESS_SCHEMA; `essential` marks the catalogue's essential vitals. A ward with
    admitted patients and no observation in the window has one row, variable "*", no
    last_charttime, stale after `lookback_hours`, stale. Observations charted after `at` are
    ignored; the window is (at - lookback_hours, at]. Stalest first: silent wards, then by the
    share of its stale interval a feed has used, then ward and variable.
    """
    if lookback_hours <= 0:
        raise ValueError(f"lookback_hours must be positive, got {lookback_hours!r}")
    wards = admitted_at(encounters, at=at).select("ward").unique().collect()
    variables = catalog.variables.values()
    limits = pl.DataFrame(
        {
            "variable": list(catalog.variables),
            "label": [v.label for v in variables],
            "kind": [v.kind for v in variables],
            "essential": [bool(v.essential) for v in variables],
            "stale_after_hours": [float(v.stale_after_hours) for v in variables],
        }
    )
    since = at - timedelta(hours=lookback_hours)
    last = (
        observations.filter((pl.col("charttime") > since) & (pl.col("charttime") <= at))
        .join(encounters.select("encounter_id", "ward"), on="encounter_id", how="inner")
        .join(wards.lazy(), on="ward", how="semi")
        .group_by("ward", "variable")
        .agg(pl.col("charttime").max().alias("last_charttime"))
        .collect()
        .join(limits, on="variable", how="inner")
    )
    silent = wards.join(last.select("ward").unique(), on="ward", how="anti").select(
        "ward",
        pl.lit(ALL_VARIABLES).alias("variable"),
        pl.lit(SILENT_LABEL).alias("label"),
        pl.lit(None, dtype=pl.String).alias("kind"),
        pl.lit(True).alias("essential"),
        pl.lit(None, dtype=_UTC).alias("last_charttime"),
        pl.lit(float(lookback_hours)).alias("stale_after_hours"),
    )
    hours_since = (pl.lit(at).cast(_UTC) - pl.col("last_charttime")).dt.total_microseconds() / 3.6e9
    frame = (
        pl.concat([last, silent], how="diagonal_relaxed")
        .with_columns(hours_since=hours_since)
        .with_columns(stale=pl.col("hours_since").is_null() | (pl.col("hours_since") > pl.col("stale_after_hours")))
    )
    used = (pl.col("hours_since") / pl.col("stale_after_hours")).fill_null(float("inf"))
    return frame.sort(used, "ward", "variable", descending=[True, False, False]).select(
        [pl.col(c).cast(t) for c, t in FRESHNESS_SCHEMA.items()]
    )


def stale_feed_problems(freshness: pl.DataFrame, *, essential_only: bool = True) -> dict[str, str]:
    """Per ward with a stale feed in a `feed_freshness` frame, one line saying which variables
    and how long ago they were last charted.

    With `essential_only`, only the essential vitals (and silent wards) count: a lab that
    was not ordered for a day is not a broken feed.
    """
    stale = freshness.filter(pl.col("stale"))
    if essential_only:
        stale = stale.filter(pl.col("essential"))
    problems: dict[str, str] = {}
    for (ward,), rows in stale.sort("ward").group_by("ward", maintain_order=True):
        if rows["variable"].to_list() == [ALL_VARIABLES]:
            hours = rows["stale_after_hours"][0]
            problems[str(ward)] = f"ward {ward}: no observations at all in the last {hours:g} h"
            continue
        parts = [
            f"{r['variable']} {r['hours_since']:.1f} h (stale after {r['stale_after_hours']:g} h)"
            for r in rows.sort("variable").iter_rows(named=True)
        ]
        problems[str(ward)] = f"ward {ward}: feed stale, last charted " + ", ".join(parts)
    return problems


# ------------------------------------------------------------------------- drift


def population_stability_index(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """PSI between two histograms over the same bins (counts or shares; each is normalised).

    Raises ValueError when the histograms differ in length or either is empty.
    """
    reference = np.asarray(reference_counts, dtype=float)
    current = np.asarray(current_counts, dtype=float)
    if reference.shape != current.shape or reference.ndim != 1:
        raise ValueError(f"PSI needs two histograms over the same bins, got {reference.shape} and {current.shape}")
    if reference.sum() <= 0 or current.sum() <= 0:
        raise ValueError("PSI needs at least one value in each histogram")
    r = np.maximum(reference / reference.sum(), PSI_FLOOR)
    c = np.maximum(current / current.sum(), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def quantile_edges(values: np.ndarray, *, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """The reference's interior bin edges: its quantiles at 1/n_bins ... (n_bins-1)/n_bins, unique."""
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    return np.unique(np.quantile(np.asarray(values, dtype=float), np.arange(1, n_bins) / n_bins))


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of `values` in the bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    bins = np.digitize(np.asarray(values, dtype=float), edges, right=True)
    return np.bincount(bins, minlength=len(edges) + 1)


def score_reference(reliability: Iterable[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and counts of the held-out risk distribution from a reliability curve.

    `reliability` is riskcast.evaluate's calibration curve (equal-frequency bins with
    count and max_predicted), as stored in the model card. Bins sharing an upper edge
    (tied risks) are merged. Returns (interior edges, counts per bin).
    """
    rows = sorted((dict(r) for r in reliability), key=lambda r: r["bin"])
    if not rows:
        raise ValueError("the reliability curve has no bins")
    uppers: list[float] = []
    counts: list[float] = []
    for row in rows:
        upper, count = float(row["max_predicted"]), float(row["count"])
        if uppers and upper <= uppers[-1]:
            counts[-1] += count
        else:
            uppers.append(upper)
            counts.append(count)
    return np.asarray(uppers[:-1]), np.asarray(counts)


def score_psi(reliability: Iterable[Mapping[str, Any]], current_risk: np.ndarray) -> float:
    """PSI of current risks against the held-out risk distribution in `reliability`."""
    edges, reference_counts = score_reference(reliability)
    return population_stability_index(reference_counts, histogram(current_risk, edges))


def variable_drift(
    observations: pl.LazyFrame,
    *,
    reference: pl.Expr,
    current: pl.Expr,
    n_bins: int = DEFAULT_BINS,
    min_values: int = 100,
) -> pl.DataFrame:
    """PSI per variable between the observations matching `reference` and those matching `current`.

    `reference` and `current` are filters on the observations (e.g. training batches and
    charttime windows). Bins are each variable's reference deciles. Variables with fewer
    than `min_values` values in either window are left out. Columns: DRIFT_SCHEMA, sorted by
    PSI, largest first.
    """
    quantiles = np.arange(1, n_bins) / n_bins
    edge_names = [f"edge_{i}" for i in range(len(quantiles))]
    reference_values = observations.filter(reference).select("variable", "value")
    current_values = observations.filter(current).select("variable", "value")
    edges = (
        reference_values.group_by("variable")
        .agg([pl.col("value").quantile(float(q), "linear").alias(name) for q, name in zip(quantiles, edge_names)]
             + [pl.len().alias("n_reference")])
        .filter(pl.col("n_reference") >= min_values)
    )  # fmt: skip
    current_sizes = current_values.group_by("variable").agg(pl.len().alias("n_current")).filter(
        pl.col("n_current") >= min_values
    )
    edges = edges.join(current_sizes, on="variable", how="inner")
    bin_of = pl.sum_horizontal([(pl.col("value") > pl.col(name)).cast(pl.Int32) for name in edge_names]).alias("bin")

    def counts(values: pl.LazyFrame, name: str) -> pl.LazyFrame:
        return values.join(edges.select("variable", *edge_names), on="variable", how="inner").select(
            "variable", bin_of
        ).group_by("variable", "bin").agg(pl.len().alias(name))

    both = (
        counts(reference_values, "reference")
        .join(counts(current_values, "current"), on=["variable", "bin"], how="full", coalesce=True)
        .fill_null(0)
        .collect()
    )
    sizes = edges.select("variable", "n_reference", "n_current").collect()
    rows = []
    for (variable,), bins in both.group_by("variable"):
        size = sizes.filter(pl.col("variable") == variable).row(0, named=True)
        psi = population_stability_index(bins["reference"].to_numpy(), bins["current"].to_numpy())
        rows.append((variable, psi, int(size["n_reference"]), int(size["n_current"])))
    return pl.DataFrame(rows, schema=DRIFT_SCHEMA, orient="row").sort("psi", "variable", descending=[True, False])


# ------------------------------------------------------------------------- alert rate


@dataclass(frozen=True)
class AlertRateCheck:
    """Risk alerts per 100 patient-days in a window against what the model promised."""

    alerts: int
    patient_days: float
    observed_per_100: float | None
    expected_per_100: float | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alerts": self.alerts,
            "patient_days": round(self.patient_days, 2),
            "observed_per_100": None if self.observed_per_100 is None else round(self.observed_per_100, 2),
            "expected_per_100": None if self.expected_per_100 is None else round(self.expected_per_100, 2),
            "problem": self.problem,
        }


def alert_rate_check(
    alerts: int,
    patient_days: float,
    expected_per_100: float | None,
    *,
    ratio: float = 3.0,
    min_patient_days: float = 5.0,
    min_expected_alerts: float = 3.0,
) -> AlertRateCheck:
    """Flag an alert rate more than `ratio` times above, or below 1/`ratio` of, the expected rate.

    `alerts` raised over `patient_days` of exposure (riskcast.alert_burden.patient_days of the
    scored hours). Judged only with at least `min_patient_days`; "too few" is judged only when
    at least `min_expected_alerts` alerts were expected (no alerts in a quiet window is normal).
    """
    if patient_days <= 0:
        return AlertRateCheck(alerts, patient_days, None, expected_per_100, None)
    observed = float(alerts_per_100_patient_days(alerts, patient_days))
    problem = None
    if expected_per_100 is not None and expected_per_100 > 0 and patient_days >= min_patient_days:
        expected_alerts = expected_per_100 * patient_days / 100.0
        if observed > ratio * expected_per_100:
            problem = (f"{alerts} risk alerts in {patient_days:.1f} patient-days: {observed:.1f} per 100 "
                       f"patient-days, over {ratio:g}x the {expected_per_100:.1f} the model was evaluated at")
        elif observed < expected_per_100 / ratio and expected_alerts >= min_expected_alerts:
            problem = (f"{alerts} risk alerts in {patient_days:.1f} patient-days: {observed:.1f} per 100 "
                       f"patient-days, under 1/{ratio:g} of the {expected_per_100:.1f} the model was evaluated at")
    return AlertRateCheck(alerts, patient_days, observed, expected_per_100, problem)


__all__ = [
    "ALL_VARIABLES",
    "DEFAULT_BINS",
    "DEFAULT_LOOKBACK_HOURS",
    "DRIFT_SCHEMA",
    "FRESHNESS_SCHEMA",
    "PSI_FLOOR",
    "SILENT_LABEL",
    "AlertRateCheck",
    "alert_rate_check",
    "feed_freshness",
    "histogram",
    "population_stability_index",
    "quantile_edges",
    "score_psi",
    "score_reference",
    "stale_feed_problems",
    "variable_drift",
]
