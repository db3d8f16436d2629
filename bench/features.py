"""Benchmark: riskcast's polars feature builder against a straightforward pandas version.

What it measures, in one run:

1. Equivalence: `pandas_features` (below) computes the same per-variable features as
   `riskcast.features.build.build_features`; the two are compared on small cohorts (an
   edge-case cohort built here, and a small synthetic one) and the largest absolute
   difference per column is printed.
2. A synthetic cohort (`--encounters`, default 20,000): generate, write as files, ingest into
   a temporary lake (timed), then build features with riskcast (median of 3) and pandas.
3. The PhysioNet 2019 training set A (../shared/data/physionet2019/training_setA.tar.gz from
   the repo root), ingested and featurised the same way (skipped with a note if absent).
4. riskcast features alone on about 1,000,000 observation rows (target: under 10 s on a
   2-core machine), with a per-stage profile of where the time goes.

Figures are printed as a table and written to bench/out/features.json. Other processes on
the machine make them noisy; the medians of repeated runs are reported.

    python bench/features.py                 # full run (several minutes)
    python bench/features.py --quick         # small sizes, a smoke run
    python bench/features.py --no-real       # skip the PhysioNet data

The pandas version is vectorised (no Python loop over encounters): hourly bins, a hand-
built hourly grid, `groupby(...).rolling(...)` and `groupby(...).ffill()`. It is what a
careful data scientist would write, not a strawman, so the ratio compares the engines.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import polars as pl
import benchkit
from benchkit import peak_rss_gib

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "physionet2019" / "training_setA.tar.gz"
PANDAS_BUDGET_SECONDS = 180.0
PANDAS_MAX_GRID_ROWS = 800_000  # about 7 GiB of pandas working memory; the machine is shared
HOUR = pd.Timedelta(hours=1)
SAMPLE_COLUMNS = [
    "heart_rate_last",
    "heart_rate_mean_6h",
    "heart_rate_std_6h",
    "heart_rate_max_24h",
    "resp_rate_slope_6h",
    "temperature_change",
    "lactate_hours_since",
    "lactate_last",
    "sbp_count_24h",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- pandas version
def machine() -> dict[str, Any]:
    """The machine, polars' thread pool and the versions of the libraries this benchmark compares."""
    return {**benchkit.machine(("polars", "pandas", "numpy", "pyarrow")), "polars_threads": pl.thread_pool_size()}


def pandas_features(observations_pd: pd.DataFrame, encounters_pd: pd.DataFrame) -> pd.DataFrame:
    """The per-variable features of riskcast's feature matrix, written in plain pandas.

    Same definitions as riskcast.features.build: one row per encounter per clock hour, from
    the first whole hour at or after admission to the hour of discharge (an open stay, or one
    discharged after the data ends, stops at the hour of the latest charttime); an
    observation counts from the first clock hour at or after its charttime (10:20 -> 11:00),
    and one made before the grid starts counts in the first hour. Windows are (t - h, t].
    Columns: encounter_id, time (UTC), and per catalogue variable `{v}_last`,
    `{v}_hours_since`, `{v}_count_24h`; vitals also mean/min/max/std (sample, ddof=1) over
    6 h and 24 h, `{v}_slope_6h` (least squares of value on time in hours, per hour) and
    `{v}_change` (last value minus the encounter's first). No NEWS2 or demographics.
    """
    from riskcast.catalog import load_catalog

    catalog = load_catalog()
    variables = list(catalog.variables)
    vitals = [v for v in variables if catalog.variables[v].kind == "vital"]
    obs = observations_pd.loc[
        observations_pd["variable"].isin(variables), ["encounter_id", "charttime", "variable", "value"]
    ]
    data_end = obs["charttime"].max()

    # Each encounter's hourly grid.
    enc = encounters_pd[["encounter_id", "admit_time", "discharge_time"]].copy()
    enc["grid_start"] = enc["admit_time"].dt.ceil("h")
    enc["grid_end"] = enc["discharge_time"].fillna(data_end).clip(upper=data_end).dt.floor("h")
    enc = enc[enc["grid_end"] >= enc["grid_start"]].sort_values("encounter_id")
    n_hours = ((enc["grid_end"] - enc["grid_start"]) // HOUR).astype("int64").to_numpy() + 1
    grid = pd.DataFrame({"encounter_id": np.repeat(enc["encounter_id"].to_numpy(), n_hours)})
    hour_index = grid.groupby("encounter_id", sort=False).cumcount().to_numpy()
    grid["time"] = pd.Series(np.repeat(enc["grid_start"].to_numpy(), n_hours)) + pd.to_timedelta(hour_index, unit="h")

    # Observations into hourly bins, with the sums every rolling feature is built from.
    obs = obs.merge(enc[["encounter_id", "grid_start", "grid_end"]], on="encounter_id", how="inner")
    obs["time"] = obs["charttime"].dt.ceil("h")
    obs["time"] = obs["time"].where(obs["time"] >= obs["grid_start"], obs["grid_start"])
    obs = obs[obs["time"] <= obs["grid_end"]].sort_values(["encounter_id", "variable", "charttime"])
    obs["t"] = (obs["charttime"] - obs["grid_start"]).dt.total_seconds() / 3600.0
    keys = ["encounter_id", "time", "variable"]
    every = obs.groupby(keys).agg(
        n=("value", "size"), last=("value", "last"), last_time=("charttime", "last")
    )
    vital_obs = obs[obs["variable"].isin(vitals)]
    vital_obs = vital_obs.assign(sq=vital_obs["value"] ** 2, tt=vital_obs["t"] ** 2, tx=vital_obs["t"] * vital_obs["value"])
    vital = vital_obs.groupby(keys).agg(
        sum=("value", "sum"), sumsq=("sq", "sum"), min=("value", "min"), max=("value", "max"),
        first=("value", "first"), st=("t", "sum"), stt=("tt", "sum"), stx=("tx", "sum"),
    )  # fmt: skip
    wide = pd.concat([every.unstack("variable"), vital.unstack("variable")], axis=1)
    wide.columns = [f"{variable}__{stat}" for stat, variable in wide.columns]
    frame = grid.merge(wide.reset_index(), on=["encounter_id", "time"], how="left")

    def column(variable: str, stat: str) -> pd.Series:
        name = f"{variable}__{stat}"
        if name in frame.columns:
            return frame[name]
        if stat == "last_time":
            return pd.Series(pd.NaT, index=frame.index, dtype=frame["time"].dtype)
        return pd.Series(np.nan, index=frame.index, dtype="float64")

    def stats(names: list[str], stat: str, *, fill: float | None = None) -> pd.DataFrame:
        block = pd.DataFrame({v: column(v, stat) for v in names})
        return block.fillna(fill) if fill is not None else block

    by = frame["encounter_id"]

    def rolling(block: pd.DataFrame, hours: int, how: str) -> pd.DataFrame:
        rolled = getattr(block.groupby(by, sort=False).rolling(hours, min_periods=1), how)()
        return rolled.reset_index(level=0, drop=True).sort_index()

    last = stats(variables, "last").groupby(by).ffill()
    last_time = stats(variables, "last_time").groupby(by).ffill()
    counts = stats(variables, "n", fill=0.0)
    count_24h = rolling(counts, 24, "sum")
    features: dict[str, pd.Series] = {"encounter_id": frame["encounter_id"], "time": frame["time"]}
    windowed: dict[int, dict[str, pd.DataFrame]] = {}
    for hours in (6, 24):
        summed = ("n", "sum", "sumsq", "st", "stt", "stx") if hours == 6 else ("n", "sum", "sumsq")
        rolled_sums = rolling(pd.concat({s: stats(vitals, s, fill=0.0) for s in summed}, axis=1), hours, "sum")
        windowed[hours] = {s: rolled_sums[s] for s in summed}
        windowed[hours]["min"] = rolling(stats(vitals, "min"), hours, "min")
        windowed[hours]["max"] = rolling(stats(vitals, "max"), hours, "max")
    first_value = stats(vitals, "first").groupby(by).transform("first")

    for variable in variables:
        features[f"{variable}_last"] = last[variable]
        features[f"{variable}_hours_since"] = (frame["time"] - last_time[variable]).dt.total_seconds() / 3600.0
        features[f"{variable}_count_24h"] = count_24h[variable]
        if variable not in vitals:
            continue
        for hours in (6, 24):
            w = windowed[hours]
            count = w["n"][variable]
            mean = (w["sum"][variable] / count).where(count > 0)
            variance = ((w["sumsq"][variable] - count * mean * mean) / (count - 1)).clip(lower=0.0).where(count > 1)
            features[f"{variable}_mean_{hours}h"] = mean
            features[f"{variable}_min_{hours}h"] = w["min"][variable]
            features[f"{variable}_max_{hours}h"] = w["max"][variable]
            features[f"{variable}_std_{hours}h"] = np.sqrt(variance)
        w = windowed[6]
        count, s_t, s_tt, s_x, s_tx = (w[s][variable] for s in ("n", "st", "stt", "sum", "stx"))
        denominator = count * s_tt - s_t * s_t
        slope = (count * s_tx - s_t * s_x) / denominator
        features[f"{variable}_slope_6h"] = slope.where((count >= 2) & (denominator > 1e-9))
        features[f"{variable}_change"] = last[variable] - first_value[variable]
    return pd.DataFrame(features)


# --------------------------------------------------------------------------- equivalence
def edge_case_cohort(n_encounters: int, *, seed: int) -> dict[str, pl.DataFrame]:
    """A small cohort that exercises the definitions' edges.

    Irregular charttimes, some exactly on the hour; labs before admission; observations after
    discharge; open stays (no discharge); several readings of a vital in one hour; variables
    that are never measured; stays from under an hour to two weeks.
    """
    from riskcast.catalog import load_catalog

    rng = np.random.default_rng(seed)
    catalog = load_catalog()
    start = datetime(2025, 3, 1, tzinfo=UTC)
    ids = [f"E{i:05d}" for i in range(n_encounters)]
    admit_minutes = rng.integers(0, 60 * 24 * 10, n_encounters)
    admit_minutes[::7] -= admit_minutes[::7] % 60  # some admissions exactly on the hour
    los_minutes = np.exp(rng.uniform(np.log(20), np.log(60 * 24 * 14), n_encounters)).astype(np.int64)
    admit = [start + timedelta(minutes=int(m)) for m in admit_minutes]
    discharge: list[datetime | None] = [a + timedelta(minutes=int(m)) for a, m in zip(admit, los_minutes)]
    for i in range(0, n_encounters, 9):
        discharge[i] = None
    measured = [v for v in catalog.variables if v not in {"etco2", "fibrinogen"}]
    ranges = {v: (catalog.variables[v].plausible_min, catalog.variables[v].plausible_max) for v in measured}
    rows: dict[str, list[Any]] = {"encounter_id": [], "charttime": [], "variable": [], "value": []}
    for i, encounter_id in enumerate(ids):
        stay = int(los_minutes[i]) + 180
        for variable in measured:
            is_vital = catalog.variables[variable].kind == "vital"
            count = int(rng.poisson(stay / (60 * (2 if is_vital else 12))))
            if count == 0:
                continue
            minutes = admit_minutes[i] + rng.integers(-300 if not is_vital else -30, stay, count)
            on_the_hour = rng.random(count) < 0.2
            minutes[on_the_hour] -= minutes[on_the_hour] % 60
            offsets = np.unique(minutes) - admit_minutes[i]
            low, high = ranges[variable]
            centre, spread = (low + high) / 2, (high - low) / 8
            values = np.clip(centre + spread * rng.standard_normal(len(offsets)), low, high)
            for offset, value in zip(offsets, values):
                rows["encounter_id"].append(encounter_id)
                rows["charttime"].append(admit[i] + timedelta(minutes=int(offset)))
                rows["variable"].append(variable)
                rows["value"].append(float(value))
    observations = pl.DataFrame(rows, schema={
        "encounter_id": pl.String, "charttime": pl.Datetime("us", "UTC"), "variable": pl.String, "value": pl.Float64,
    }).with_columns(pl.lit("").alias("unit"), pl.lit("bench").alias("source"))  # fmt: skip
    encounters = pl.DataFrame({
        "encounter_id": ids, "patient_id": [f"P{i:05d}" for i in range(n_encounters)],
        "admit_time": admit, "discharge_time": discharge, "ward": "W1", "site": "S1",
    }, schema_overrides={"admit_time": pl.Datetime("us", "UTC"), "discharge_time": pl.Datetime("us", "UTC")})  # fmt: skip
    patients = pl.DataFrame({
        "patient_id": [f"P{i:05d}" for i in range(n_encounters)], "birth_year": [1950] * n_encounters,
        "age": [70.0] * n_encounters, "sex": ["female"] * n_encounters, "race_ethnicity": [None] * n_encounters,
        "site": ["S1"] * n_encounters,
    }, schema_overrides={"race_ethnicity": pl.String})  # fmt: skip
    return {"observations": observations, "encounters": encounters, "patients": patients}


def compare(riskcast_frame: pl.DataFrame, pandas_frame: pd.DataFrame) -> dict[str, Any]:
    """Largest absolute difference and null mismatches per shared feature column."""
    theirs = pl.from_pandas(pandas_frame, nan_to_null=True).with_columns(
        pl.col("time").cast(pl.Datetime("us", "UTC"))
    )
    columns = [c for c in theirs.columns if c not in ("encounter_id", "time")]
    missing = [c for c in columns if c not in riskcast_frame.columns]
    if missing:
        raise SystemExit(f"riskcast's matrix lacks pandas columns: {missing[:5]}")
    ours = riskcast_frame.select("encounter_id", "time", *columns)
    joined = ours.join(theirs, on=["encounter_id", "time"], how="full", suffix="_pd", coalesce=True)
    per_column: dict[str, dict[str, float]] = {}
    for name in columns:
        a, b = joined[name].cast(pl.Float64), joined[f"{name}_pd"].cast(pl.Float64)
        diff = (a - b).abs().max()
        scale = max(float(a.abs().max() or 0.0), 1.0)
        per_column[name] = {
            "max_abs_diff": float(diff) if diff is not None else 0.0,
            "max_abs_value": scale,
            "null_mismatches": int((a.is_null() != b.is_null()).sum()),
        }
    worst = max(per_column, key=lambda c: per_column[c]["max_abs_diff"] / per_column[c]["max_abs_value"])
    return {
        "rows_riskcast": riskcast_frame.height,
        "rows_pandas": len(pandas_frame),
        "rows_joined": joined.height,
        "columns_compared": len(columns),
        "total_null_mismatches": sum(c["null_mismatches"] for c in per_column.values()),
        "worst_relative_column": worst,
        "worst_relative_diff": per_column[worst]["max_abs_diff"] / per_column[worst]["max_abs_value"],
        "sample": {c: per_column[c] for c in SAMPLE_COLUMNS if c in per_column},
    }


REFERENCE_VARIABLES = ["heart_rate", "resp_rate", "sbp", "temperature", "lactate"]


def direct_reference(
    matrix: pl.DataFrame, observations: pl.DataFrame, *, sample_rows: int, seed: int
) -> dict[str, float]:
    """Recompute sampled cells straight from the raw observations, by the documented definitions.

    Independent of both implementations (no hourly bins, no running sums): for a row at hour
    t, the observations seen are those with charttime <= t (and not after the encounter's
    last grid hour); one made before the first grid hour is placed at the first grid hour for
    window membership; a window of h hours holds those placed in (t - h, t]; the slope is
    numpy's least-squares line through (charttime in hours, value). Returns the largest
    difference from riskcast's matrix per feature over the sampled rows, |a - b| / max(1, |b|).
    """
    rng = np.random.default_rng(seed)
    picks = rng.choice(matrix.height, size=min(sample_rows, matrix.height), replace=False)
    bounds = matrix.group_by("encounter_id").agg(pl.col("time").min().alias("start"), pl.col("time").max().alias("end"))
    start_of = dict(zip(bounds["encounter_id"].to_list(), bounds["start"].to_list()))
    end_of = dict(zip(bounds["encounter_id"].to_list(), bounds["end"].to_list()))
    raw = observations.filter(pl.col("variable").is_in(REFERENCE_VARIABLES)).sort("charttime")
    by_key = {key: frame for key, frame in raw.partition_by(["encounter_id", "variable"], as_dict=True).items()}
    worst: dict[str, float] = {}
    mismatched_nulls = 0
    for row in matrix[picks.tolist()].iter_rows(named=True):
        encounter_id, t = row["encounter_id"], row["time"]
        start, end = start_of[encounter_id], end_of[encounter_id]
        for variable in REFERENCE_VARIABLES:
            frame = by_key.get((encounter_id, variable))
            times = [] if frame is None else [c for c in frame["charttime"].to_list() if c <= end]
            values = [] if frame is None else frame["value"].to_list()[: len(times)]
            seen = [(c, v) for c, v in zip(times, values) if c <= t]
            expected: dict[str, float | None] = {
                "last": seen[-1][1] if seen else None,
                "hours_since": (t - seen[-1][0]).total_seconds() / 3600 if seen else None,
                "count_24h": float(sum(1 for c, _ in seen if max(c, start) > t - timedelta(hours=24))),
            }
            if variable != "lactate":
                for hours in (6, 24):
                    window = [(c, v) for c, v in seen if max(c, start) > t - timedelta(hours=hours)]
                    window_values = np.array([v for _, v in window])
                    expected[f"mean_{hours}h"] = float(window_values.mean()) if len(window) else None
                    expected[f"std_{hours}h"] = float(window_values.std(ddof=1)) if len(window) > 1 else None
                    expected[f"min_{hours}h"] = float(window_values.min()) if len(window) else None
                    expected[f"max_{hours}h"] = float(window_values.max()) if len(window) else None
                    if hours == 6:
                        x = np.array([c.timestamp() / 3600 for c, _ in window])
                        expected["slope_6h"] = (
                            float(np.polyfit(x, window_values, 1)[0]) if len(window) > 1 and np.ptp(x) > 0 else None
                        )
                expected["change"] = seen[-1][1] - values[0] if seen else None
            for stat, value in expected.items():
                name = f"{variable}_{stat}"
                actual = row[name]
                if (actual is None) != (value is None):
                    mismatched_nulls += 1
                    worst[name] = float("inf")
                elif value is not None:
                    worst[name] = max(worst.get(name, 0.0), abs(actual - value) / max(1.0, abs(value)))
    worst["(null mismatches)"] = float(mismatched_nulls)
    return worst


def check_equivalence(name: str, tables: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """Build features both ways on a small cohort and print how far apart they are."""
    from riskcast.features.build import build_features

    ours = build_features(tables["observations"], tables["encounters"], tables["patients"])
    theirs = pandas_features(tables["observations"].to_pandas(), tables["encounters"].to_pandas())
    result = compare(ours, theirs)
    reference = direct_reference(ours, tables["observations"], sample_rows=300, seed=7)
    result["direct_reference_max_relative_diff"] = reference
    worst_reference = max((v for k, v in reference.items() if not k.startswith("(")), default=0.0)
    print(f"\nDirect recomputation of 300 sampled rows from raw observations ({', '.join(REFERENCE_VARIABLES)}): "
          f"largest |diff|/max(1,|value|) from riskcast {worst_reference:.2e} "
          f"({max(reference, key=lambda k: reference[k] if not k.startswith('(') else -1)}); "
          f"null mismatches {int(reference['(null mismatches)'])}")  # fmt: skip
    ok = (
        result["rows_riskcast"] == result["rows_pandas"] == result["rows_joined"]
        and result["total_null_mismatches"] == 0
        and result["worst_relative_diff"] < 1e-6
        and reference["(null mismatches)"] == 0
        and worst_reference < 1e-6
    )
    result["matches"] = ok
    print(f"\nEquivalence on {name}: {result['rows_riskcast']} rows, {result['columns_compared']} feature columns, "
          f"{tables['observations'].height} observations -> {'MATCH' if ok else 'MISMATCH'}")  # fmt: skip
    print(f"  rows riskcast/pandas/joined: {result['rows_riskcast']}/{result['rows_pandas']}/{result['rows_joined']}; "
          f"null mismatches (all columns): {result['total_null_mismatches']}; worst column relative diff: "
          f"{result['worst_relative_column']} {result['worst_relative_diff']:.2e}")  # fmt: skip
    for column, figures in result["sample"].items():
        print(f"  {column:<24} max |diff| {figures['max_abs_diff']:.3e}  null mismatches {figures['null_mismatches']}")
    return result


# --------------------------------------------------------------------------- timing
CPU_SECONDS: list[float] = []
"""Process CPU seconds (all threads) of every `timed` call, in order: a figure less
sensitive than wall time to other work on a shared machine."""


def timed(function: Callable[[], T], *, repeats: int) -> tuple[float, list[float], T]:
    """Median wall seconds over `repeats` calls, every call's seconds, and the last result."""
    seconds: list[float] = []
    result: T
    for _ in range(repeats):
        gc.collect()
        cpu_started = time.process_time()
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
        CPU_SECONDS.append(time.process_time() - cpu_started)
    return statistics.median(seconds), seconds, result


def last_cpu_median(repeats: int) -> float:
    """Median CPU seconds of the last `repeats` timed calls."""
    return statistics.median(CPU_SECONDS[-repeats:])


def load_lake(lake_root: Path, *, encounter_ids: list[str] | None = None) -> dict[str, pl.DataFrame]:
    """observations, encounters, patients from a lake (optionally only some encounters)."""
    from riskcast.lake import Lake

    lake = Lake(lake_root)
    tables = {t: lake.scan(t) for t in ("observations", "encounters", "patients")}
    if encounter_ids is not None:
        wanted = pl.Series(encounter_ids, dtype=pl.String).implode()
        tables["observations"] = tables["observations"].filter(pl.col("encounter_id").is_in(wanted))
        tables["encounters"] = tables["encounters"].filter(pl.col("encounter_id").is_in(wanted))
    return {name: frame.collect() for name, frame in tables.items()}


def encounters_for_rows(observations: pl.DataFrame, rows: int) -> list[str]:
    """The first encounters (by id) whose observations add up to at least `rows` rows."""
    counts = observations.group_by("encounter_id").len().sort("encounter_id")
    cumulative = counts["len"].cum_sum()
    cut = int((cumulative < rows).sum()) + 1
    return counts["encounter_id"].head(cut).to_list()


def measure_features(label: str, tables: dict[str, pl.DataFrame], *, repeats: int) -> dict[str, Any]:
    """riskcast (median of `repeats`) and pandas (once, on a subset if slow) on one cohort."""
    from riskcast.features.build import build_features

    observations, encounters, patients = tables["observations"], tables["encounters"], tables["patients"]
    print(f"\n[{label}] riskcast features on {encounters.height} encounters, {observations.height} observations ...", flush=True)
    median, runs, matrix = timed(lambda: build_features(observations, encounters, patients), repeats=repeats)
    cpu = last_cpu_median(repeats)
    grid_rows = matrix.height
    hours_per_encounter = matrix.group_by("encounter_id").len().sort("encounter_id")
    del matrix
    print(f"  riskcast: {median:.2f} s (runs {', '.join(f'{s:.2f}' for s in runs)}; CPU {cpu:.2f} s), "
          f"{grid_rows} grid rows; peak RSS so far {peak_rss_gib():.1f} GiB", flush=True)  # fmt: skip
    figures: dict[str, Any] = {
        "encounters": encounters.height,
        "observation_rows": observations.height,
        "grid_rows": grid_rows,
        "riskcast_seconds": median,
        "riskcast_runs": runs,
        "riskcast_cpu_seconds": cpu,
        "riskcast_obs_rows_per_s": observations.height / median,
        "riskcast_grid_rows_per_s": grid_rows / median,
        "peak_rss_gib_after_riskcast": peak_rss_gib(),
    }

    # pandas: a pilot on a slice says whether the whole cohort fits the time and memory budget
    # (pandas' cost and memory follow the grid rows; it needs about 8 KiB per grid row).
    ids = hours_per_encounter["encounter_id"]
    cumulative_rows = hours_per_encounter["len"].cum_sum()
    pilot_n = min(ids.len(), max(200, ids.len() // 20))
    pilot = _subset(tables, ids.head(pilot_n).to_list())
    pilot_pd = (pilot["observations"].to_pandas(), pilot["encounters"].to_pandas())
    pilot_seconds, _, _ = timed(lambda: pandas_features(*pilot_pd), repeats=1)
    del pilot, pilot_pd
    seconds_per_row = pilot_seconds / cumulative_rows[pilot_n - 1]
    estimate = seconds_per_row * grid_rows
    row_cap = min(PANDAS_MAX_GRID_ROWS, PANDAS_BUDGET_SECONDS / seconds_per_row)
    print(f"  pandas pilot: {pilot_seconds:.2f} s on {pilot_n} encounters -> about {estimate:.0f} s for all", flush=True)
    if grid_rows <= row_cap:
        subset_ids, subset = None, tables
    else:
        keep = max(pilot_n, int((cumulative_rows <= row_cap).sum()))
        subset_ids = ids.head(keep).to_list()
        subset = _subset(tables, subset_ids)
        estimate = seconds_per_row * cumulative_rows[keep - 1]
        print(f"  pandas would take about {seconds_per_row * grid_rows:.0f} s or need about "
              f"{grid_rows * 8 / 1024**2:.0f} GiB for all; running it on the first {keep} encounters", flush=True)  # fmt: skip
    converted_started = time.perf_counter()
    obs_pd, enc_pd = subset["observations"].to_pandas(), subset["encounters"].to_pandas()
    conversion_seconds = time.perf_counter() - converted_started
    n_subset = subset["encounters"].height
    print(f"  pandas on {n_subset} encounters, {subset['observations'].height} observations ...", flush=True)
    pandas_repeats = 1 if estimate > 30 else repeats
    pandas_median, pandas_runs, pandas_matrix = timed(lambda: pandas_features(obs_pd, enc_pd), repeats=pandas_repeats)
    pandas_cpu = last_cpu_median(pandas_repeats)
    pandas_grid_rows = len(pandas_matrix)
    del pandas_matrix, obs_pd, enc_pd
    print(f"  pandas: {pandas_median:.2f} s (runs {', '.join(f'{s:.2f}' for s in pandas_runs)}; CPU {pandas_cpu:.2f} s), "
          f"{pandas_grid_rows} grid rows; polars->pandas conversion {conversion_seconds:.2f} s", flush=True)  # fmt: skip
    figures["pandas"] = {
        "encounters": n_subset,
        "observation_rows": subset["observations"].height,
        "grid_rows": pandas_grid_rows,
        "seconds": pandas_median,
        "runs": pandas_runs,
        "cpu_seconds": pandas_cpu,
        "subset": subset_ids is not None,
        "to_pandas_seconds": conversion_seconds,
    }
    if subset_ids is None:
        figures["pandas"]["riskcast_seconds_same_rows"] = median
        figures["pandas"]["riskcast_cpu_seconds_same_rows"] = cpu
    else:
        s_obs, s_enc, s_pat = subset["observations"], subset["encounters"], subset["patients"]
        same_median, same_runs, _ = timed(lambda: build_features(s_obs, s_enc, s_pat), repeats=repeats)
        figures["pandas"]["riskcast_seconds_same_rows"] = same_median
        figures["pandas"]["riskcast_runs_same_rows"] = same_runs
        figures["pandas"]["riskcast_cpu_seconds_same_rows"] = last_cpu_median(repeats)
        print(f"  riskcast on the same {n_subset} encounters: {same_median:.2f} s", flush=True)
    figures["speedup_vs_pandas"] = pandas_median / figures["pandas"]["riskcast_seconds_same_rows"]
    figures["cpu_speedup_vs_pandas"] = pandas_cpu / figures["pandas"]["riskcast_cpu_seconds_same_rows"]
    print(f"  speed-up riskcast vs pandas: {figures['speedup_vs_pandas']:.1f}x wall, "
          f"{figures['cpu_speedup_vs_pandas']:.1f}x CPU time", flush=True)  # fmt: skip
    return figures


def _subset(tables: dict[str, pl.DataFrame], encounter_ids: list[str]) -> dict[str, pl.DataFrame]:
    wanted = pl.Series(encounter_ids, dtype=pl.String).implode()
    return {
        "observations": tables["observations"].filter(pl.col("encounter_id").is_in(wanted)),
        "encounters": tables["encounters"].filter(pl.col("encounter_id").is_in(wanted)),
        "patients": tables["patients"],
    }


def measure_ingest(label: str, paths: list[Path], lake_root: Path) -> dict[str, Any]:
    """Ingest sources into a fresh lake once, timed (a second ingest would be a no-op)."""
    from riskcast.lake import Lake
    from riskcast.pipeline.ingest import ingest_paths

    print(f"\n[{label}] ingesting {', '.join(p.name for p in paths)} ...", flush=True)
    gc.collect()
    cpu_started = time.process_time()
    started = time.perf_counter()
    summary, _quarantine = ingest_paths(paths, lake=Lake(lake_root), now=datetime.now(UTC))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rows_read = sum(summary.rows_read.values())
    print(f"  ingest: {seconds:.2f} s (CPU {cpu:.2f} s), {rows_read} rows read ({summary.rows_read}), "
          f"{summary.total_accepted} accepted, {summary.total_quarantined} quarantined", flush=True)  # fmt: skip
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rows_read": rows_read,
        "rows_read_by_table": summary.rows_read,
        "accepted": summary.accepted,
        "quarantined": summary.total_quarantined,
        "rows_per_s": rows_read / seconds,
    }


def profile_stages(tables: dict[str, pl.DataFrame], *, repeats: int) -> dict[str, Any]:
    """Seconds per stage of build_features, by running its internal steps one at a time.

    Reaches into riskcast.features.build's private helpers, so it may need updating when they
    change; the figures are indicative (each stage is collected on its own, so polars cannot
    fuse across stage boundaries as it does in the real query).
    """
    from riskcast.catalog import load_catalog
    from riskcast.features import build
    from riskcast.features.scores import early_warning_scores, with_missing_columns

    catalog = load_catalog()
    variables = list(catalog.variables)
    obs, enc, pat = (tables[t].lazy() for t in ("observations", "encounters", "patients"))
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def stage(name: str, function: Callable[[], T]) -> T:
        median, _, result = timed(function, repeats=repeats)
        stages[name] = median
        cpu[name] = last_cpu_median(repeats)
        return result

    data_end = stage("data_end (max charttime)", lambda: obs.select(pl.col("charttime").max()).collect().item())
    def bounds_and_grid() -> tuple[pl.DataFrame, pl.DataFrame]:
        bounds = (
            build.grid_bounds(enc, at=None, data_end=data_end)
            .sort("encounter_id")
            .with_columns(((pl.col("grid_end") - pl.col("grid_start")).dt.total_hours() + 1).alias("n_rows"))
            .with_columns((pl.col("n_rows").cum_sum() - pl.col("n_rows")).alias("row_offset"))
            .collect()
        )
        grid = bounds.select(
            "encounter_id", pl.datetime_ranges("grid_start", "grid_end", interval="1h").alias("time")
        ).explode("time")
        return bounds, grid

    bounds, grid = stage("hourly grid", bounds_and_grid)
    stats = stage(
        "hourly stats (filter, join, sort, group_by)", lambda: build._hourly_stats(obs, bounds.lazy(), variables).collect()
    )
    wide = stage("scatter stats onto the grid", lambda: build._scatter_wide(stats, bounds, grid.height))
    frame = grid.with_columns(wide)
    present = {column.name for column in wide}
    exprs: list[pl.Expr] = []
    for name, variable in catalog.variables.items():
        exprs += build._variable_features(name, is_vital=variable.kind == "vital", present=present)
    features = stage("window expressions (.over)", lambda: frame.lazy().select("encounter_id", "time", *exprs).collect())
    demographics = build._demographics(enc, pat)
    stage(
        "demographics + scores + column order",
        lambda: with_missing_columns(
            features.lazy().join(demographics, on="encounter_id", how="left", maintain_order="left")
        ).with_columns(early_warning_scores()).collect(),
    )  # fmt: skip
    return {
        "encounters": tables["encounters"].height,
        "observation_rows": tables["observations"].height,
        "grid_rows": grid.height,
        "hourly_stats_rows": stats.height,
        "wide_columns": len(wide),
        "seconds": stages,
        "cpu_seconds": cpu,
        "total_seconds": sum(stages.values()),
        "total_cpu_seconds": sum(cpu.values()),
    }


def print_profile(title: str, profile: dict[str, Any]) -> None:
    """One line per stage: median wall and CPU seconds, and the share of the total."""
    print(f"\nStage profile of riskcast features, {title}: {profile['encounters']} encounters, "
          f"{profile['observation_rows']} observations -> {profile['hourly_stats_rows']} hourly stats rows, "
          f"{profile['wide_columns']} wide columns, {profile['grid_rows']} grid rows")  # fmt: skip
    print(f"  {'stage':<48}{'wall s':>9}{'CPU s':>9}{'CPU share':>11}")
    for name, seconds in profile["seconds"].items():
        cpu = profile["cpu_seconds"][name]
        print(f"  {name:<48}{seconds:>9.2f}{cpu:>9.2f}{cpu / profile['total_cpu_seconds']:>10.0%}")
    print(f"  {'total':<48}{profile['total_seconds']:>9.2f}{profile['total_cpu_seconds']:>9.2f}")


# --------------------------------------------------------------------------- environment
def wait_for_modules(modules: list[str], *, max_minutes: float) -> None:
    """Poll every 60 s until the modules import in a fresh interpreter (others are writing them)."""
    deadline = time.monotonic() + max_minutes * 60
    while True:
        check = subprocess.run(
            [sys.executable, "-c", "; ".join(f"import {m}" for m in modules)],
            capture_output=True, text=True, cwd=REPO_ROOT,
        )  # fmt: skip
        if check.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {', '.join(modules)} to import:\n{check.stderr[-2000:]}")
        print(f"waiting for {', '.join(modules)} to import (retry in 60 s): "
              f"{check.stderr.strip().splitlines()[-1] if check.stderr.strip() else 'failed'}", flush=True)  # fmt: skip
        time.sleep(60)


# --------------------------------------------------------------------------- report
def print_table(results: dict[str, Any]) -> None:
    """The figures, one line per measurement."""
    env = results["machine"]
    print("\n" + "=" * 108)
    print(f"Machine: {env['cpu']}, {env['cores']} cores, {env['ram_gib']} GiB RAM; polars threads {env['polars_threads']}; "
          f"load average at start {env['load_average_at_start']}")  # fmt: skip
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    print("Timings are medians (riskcast of 3 runs; pandas of 1-3); other work on the machine makes them noisy.")
    for name, check in results.get("equivalence", {}).items():
        reference = max((v for k, v in check["direct_reference_max_relative_diff"].items() if not k.startswith("(")), default=0)
        print(f"Equivalence on {name}: {'MATCH' if check['matches'] else 'MISMATCH'} (pandas vs riskcast worst relative "
              f"diff {check['worst_relative_diff']:.1e} over {check['columns_compared']} columns; direct recomputation "
              f"{reference:.1e})")  # fmt: skip
    header = f"{'cohort':<22}{'step':<36}{'rows in':>10}{'rows out':>10}{'wall s':>9}{'CPU s':>9}{'rows in/s':>12}"
    rule = "-" * len(header)
    print(rule + "\n" + header + "\n" + rule)

    def line(cohort: str, step: str, rows_in: int | None, rows_out: int | None, seconds: float, cpu: float | None) -> None:
        rate = f"{rows_in / seconds:,.0f}" if rows_in else ""
        cpu_text = f"{cpu:.2f}" if cpu is not None else ""
        print(f"{cohort:<22}{step:<36}{rows_in or '':>10}{rows_out or '':>10}{seconds:>9.2f}{cpu_text:>9}{rate:>12}")

    for key, title in (("synthetic", "synthetic"), ("physionet", "PhysioNet set A")):
        block = results.get(key)
        if not block:
            continue
        if "skipped" in block:
            print(f"{title:<22}skipped: {block['skipped']}")
            continue
        if "generate_seconds" in block:
            line(title, "generate + write files", None, block["observation_rows"], block["generate_seconds"], None)
        ingest = block["ingest"]
        line(title, "ingest (read, validate, lake)", ingest["rows_read"], sum(ingest["accepted"].values()),
             ingest["seconds"], ingest["cpu_seconds"])  # fmt: skip
        line(title, f"riskcast features ({block['encounters']} enc)", block["observation_rows"], block["grid_rows"],
             block["riskcast_seconds"], block["riskcast_cpu_seconds"])  # fmt: skip
        p = block["pandas"]
        if p["subset"]:
            line(title, f"riskcast features ({p['encounters']} enc)", p["observation_rows"], p["grid_rows"],
                 p["riskcast_seconds_same_rows"], p["riskcast_cpu_seconds_same_rows"])  # fmt: skip
        line(title, f"pandas features ({p['encounters']} enc)", p["observation_rows"], p["grid_rows"], p["seconds"],
             p["cpu_seconds"])  # fmt: skip
        print(f"{title:<22}{'speed-up riskcast vs pandas':<36}{'':>10}{'':>10}"
              f"{block['speedup_vs_pandas']:>8.1f}x{block['cpu_speedup_vs_pandas']:>8.1f}x")  # fmt: skip
    million = results.get("million")
    if million:
        verdict = "meets" if million["riskcast_seconds"] < 10 else "MISSES"
        line("~1M observation rows", f"riskcast features ({verdict} <10 s wall)", million["observation_rows"],
             million["grid_rows"], million["riskcast_seconds"], million["riskcast_cpu_seconds"])  # fmt: skip
    print(rule)
    for key, title in (("million", "synthetic ~1M observation rows"), ("physionet", "PhysioNet subset")):
        profile = (results.get(key) or {}).get("stages")
        if profile:
            print_profile(title, profile)
    print("=" * 108)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encounters", type=int, default=20_000, help="synthetic cohort size (default 20000)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--no-real", action="store_true", help="skip the PhysioNet data")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--wait-minutes", type=float, default=90, help="how long to wait for modules being written")
    args = parser.parse_args(argv)
    encounters = 400 if args.quick else args.encounters
    million_rows = 100_000 if args.quick else 1_000_000
    repeats = 3

    results: dict[str, Any] = {"machine": machine(), "started_at": datetime.now(UTC).isoformat(), "quick": args.quick}
    print(f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, {results['machine']['ram_gib']} GiB")

    results["equivalence"] = {"edge_cases": check_equivalence("edge-case cohort", edge_case_cohort(60, seed=args.seed))}

    wait_for_modules(["riskcast.synth", "riskcast.pipeline.ingest"], max_minutes=args.wait_minutes)
    from riskcast import synth

    with tempfile.TemporaryDirectory(prefix="riskcast-bench-") as scratch:
        scratch_dir = Path(scratch)

        # A small synthetic cohort for the equivalence check.
        small_files = scratch_dir / "small-files"
        synth.write_cohort(synth.generate_cohort(300, seed=args.seed + 1), small_files)
        measure_ingest("synthetic 300 (equivalence)", [small_files], scratch_dir / "small-lake")
        results["equivalence"]["synthetic_300"] = check_equivalence("synthetic 300", load_lake(scratch_dir / "small-lake"))

        # The synthetic cohort at size.
        print(f"\n[synthetic] generating {encounters} encounters ...", flush=True)
        started = time.perf_counter()
        cohort = synth.generate_cohort(encounters, seed=args.seed)
        files = scratch_dir / "synthetic-files"
        synth.write_cohort(cohort, files)
        generate_seconds = time.perf_counter() - started
        del cohort
        print(f"  generate + write: {generate_seconds:.1f} s", flush=True)
        ingest = measure_ingest("synthetic", [files], scratch_dir / "synthetic-lake")
        load_seconds, _, tables = timed(lambda: load_lake(scratch_dir / "synthetic-lake"), repeats=1)
        synthetic = measure_features("synthetic", tables, repeats=repeats)
        synthetic.update(generate_seconds=generate_seconds, ingest=ingest, lake_read_seconds=load_seconds)
        results["synthetic"] = synthetic

        # About a million observation rows: the first encounters that add up to it.
        if tables["observations"].height < million_rows:
            print(f"\n[1M] the synthetic cohort has only {tables['observations'].height} rows; using all of them")
        ids = encounters_for_rows(tables["observations"], million_rows)
        million_tables = _subset(tables, ids)
        del tables
        gc.collect()
        results["million"] = measure_million(million_tables, repeats=repeats)

        if args.no_real:
            results["physionet"] = {"skipped": "--no-real"}
        elif not REAL_DATA.exists():
            print(f"\n[PhysioNet] {REAL_DATA} is not there; skipped")
            results["physionet"] = {"skipped": f"{REAL_DATA} not found"}
        else:
            wait_for_modules(["riskcast.ingest.physionet"], max_minutes=args.wait_minutes)
            ingest = measure_ingest("PhysioNet set A", [REAL_DATA], scratch_dir / "physionet-lake")
            load_seconds, _, tables = timed(lambda: load_lake(scratch_dir / "physionet-lake"), repeats=1)
            ids = tables["encounters"]["encounter_id"].sort()
            if args.quick:
                print(f"  --quick: features on the first 1000 of {ids.len()} stays only")
                tables = _subset(tables, ids.head(1000).to_list())
            physionet = measure_features("PhysioNet set A", tables, repeats=repeats)
            physionet.update(ingest=ingest, lake_read_seconds=load_seconds)
            profiled = _subset(tables, ids.head(1000 if args.quick else 5000).to_list())
            del tables
            gc.collect()
            print(f"\n[PhysioNet set A] stage profile on {profiled['encounters'].height} stays ...", flush=True)
            physionet["stages"] = profile_stages(profiled, repeats=1)
            results["physionet"] = physionet

    print_table(results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "features.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"figures written to {out.relative_to(REPO_ROOT)}")
    return 0


def measure_million(tables: dict[str, pl.DataFrame], *, repeats: int) -> dict[str, Any]:
    """riskcast features alone on about a million observation rows, and a stage profile."""
    from riskcast.features.build import build_features

    observations, encounters, patients = tables["observations"], tables["encounters"], tables["patients"]
    print(f"\n[1M] riskcast features on {observations.height} observations, {encounters.height} encounters ...", flush=True)
    median, runs, matrix = timed(lambda: build_features(observations, encounters, patients), repeats=repeats)
    cpu = last_cpu_median(repeats)
    print(f"  riskcast: {median:.2f} s (runs {', '.join(f'{s:.2f}' for s in runs)}; CPU {cpu:.2f} s), {matrix.height} grid rows, "
          f"{matrix.width} columns", flush=True)  # fmt: skip
    figures: dict[str, Any] = {
        "encounters": encounters.height,
        "observation_rows": observations.height,
        "grid_rows": matrix.height,
        "columns": matrix.width,
        "riskcast_seconds": median,
        "riskcast_runs": runs,
        "riskcast_cpu_seconds": cpu,
        "riskcast_obs_rows_per_s": observations.height / median,
    }
    del matrix
    try:
        figures["stages"] = profile_stages(tables, repeats=repeats)
    except (AttributeError, TypeError) as exc:  # the private helpers changed shape
        print(f"  stage profile unavailable: {exc}")
    return figures


if __name__ == "__main__":
    sys.exit(main())
