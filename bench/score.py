"""Benchmark: one nightly scoring run of every admitted encounter, timed stage by stage.

What `riskcast.pipeline.scoring.score_admitted` does for the hour `at`, measured by calling
the same functions it calls, one stage at a time (median of 3 runs each), and then once more
as a whole:

1. admitted    -- riskcast.pipeline.scoring.admitted_encounters on the lake's encounters
2. features    -- riskcast.features.build.latest_features(..., at=at, encounter_ids=admitted):
                  the row at `at` of each admitted stay (24 h windows + one history aggregate)
3. predict     -- staleness of the essential vitals + RiskModel.predict_proba
4. contributions -- RiskModel.contributions (xgboost's native TreeSHAP)
5. drivers     -- riskcast.explain.top_drivers + drivers_frame (SHAP -> words)
6. store       -- riskcast.store.start_run + write_scores into a fresh SQLite file
                  (open_store, i.e. connect + Alembic migrations, is timed on its own)
7. alerts      -- riskcast.alerts.state.process_scores on those scores (the champion's
                  scores go through the alert policy in the same run)
8. model load  -- ModelRegistry.load (score_admitted loads the model each run)
9. end to end  -- score_admitted itself (model load, run records, alerts and all), into a
                  fresh SQLite file each time

Set-up (timed once, not part of the run): a synthetic cohort where --admitted encounters
(default 20,000) are in hospital at riskcast.synth.DEFAULT_NOW (generate_cohort with
admitted_fraction=0.8 and n = admitted / 0.8), written as Parquet and ingested into a
temporary lake with riskcast.pipeline.ingest.ingest_paths. The model is trained with
train_and_register on a separate, smaller synthetic cohort (--train-encounters, default
3,000, another seed) in its own lake: the scoring run only needs a model with the real
feature set, and training on 25,000 mostly-open stays would take long and learn little.

    python bench/score.py            # full run (about 10-15 min on 2 cores)
    python bench/score.py --quick    # 1,000 admitted encounters, a smoke run

Figures go to a table on stdout and to bench/out/score.json. The machine is shared and other
work makes wall times noisy; CPU seconds are printed beside them.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import benchkit
from benchkit import peak_rss_gib, print_machine, timed

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
T = TypeVar("T")


# --------------------------------------------------------------------------- environment
# --------------------------------------------------------------------------- set-up
def machine() -> dict[str, Any]:
    """The machine and the versions of the libraries this benchmark exercises."""
    return benchkit.machine(("riskcast", "polars", "numpy", "pandas", "xgboost", "lightgbm", "shap", "sqlalchemy"))


def make_lake(root: Path, *, n_encounters: int, admitted_fraction: float, seed: int) -> dict[str, Any]:
    """Generate a synthetic cohort, write it as Parquet and ingest it into a lake at root/lake."""
    from riskcast import synth
    from riskcast.lake import Lake
    from riskcast.pipeline.ingest import ingest_paths

    started = time.perf_counter()
    cohort = synth.generate_cohort(n_encounters, seed=seed, admitted_fraction=admitted_fraction)
    rows = {name: frame.height for name, frame in cohort.items()}
    synth.write_cohort(cohort, root / "files")
    del cohort
    generated = time.perf_counter() - started
    started = time.perf_counter()
    summary, _ = ingest_paths([root / "files"], lake=Lake(root / "lake"), now=synth.DEFAULT_NOW)
    ingested = time.perf_counter() - started
    return {
        "lake": Lake(root / "lake"),
        "source_rows": rows,
        "accepted": dict(summary.accepted),
        "quarantined": summary.total_quarantined,
        "generate_seconds": generated,
        "ingest_seconds": ingested,
    }


# --------------------------------------------------------------------------- the run
def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from riskcast import synth
    from riskcast.catalog import load_catalog
    from riskcast.explain import drivers_frame, top_drivers
    from riskcast.features.build import latest_features
    from riskcast.model import ModelRegistry
    from riskcast.pipeline import scoring
    from riskcast.pipeline.training import train_and_register
    from riskcast.store import open_store, start_run, write_scores

    results: dict[str, Any] = {}
    at = synth.DEFAULT_NOW
    n_total = max(1, round(args.admitted / args.admitted_fraction))

    print(f"\n[set-up] scoring cohort: generate_cohort({n_total}, admitted_fraction={args.admitted_fraction}, "
          f"seed={args.seed}), ingest ...", flush=True)  # fmt: skip
    cohort = make_lake(scratch / "score", n_encounters=n_total, admitted_fraction=args.admitted_fraction, seed=args.seed)
    lake = cohort.pop("lake")
    print(f"  generate + write {cohort['generate_seconds']:.1f} s, ingest {cohort['ingest_seconds']:.1f} s; "
          f"accepted {cohort['accepted']}, quarantined {cohort['quarantined']}", flush=True)  # fmt: skip
    results["scoring_cohort"] = {"n_encounters_asked": n_total, "admitted_fraction": args.admitted_fraction,
                                 "seed": args.seed, **cohort}  # fmt: skip

    print(f"\n[set-up] model: train_and_register on a separate cohort of {args.train_encounters} encounters "
          f"(seed {args.seed + 1}, default admitted_fraction) ...", flush=True)  # fmt: skip
    training_cohort = make_lake(scratch / "train", n_encounters=args.train_encounters, admitted_fraction=0.15,
                                seed=args.seed + 1)  # fmt: skip
    train_lake = training_cohort.pop("lake")
    registry = ModelRegistry(scratch / "models")
    started = time.perf_counter()
    trained = train_and_register(train_lake, registry, now=at, n_boot=0, device="cpu")
    train_seconds = time.perf_counter() - started
    model = registry.load(trained.version)
    auroc = trained.report.discrimination["risk"].auroc
    print(f"  {trained.version}: {trained.n_rows:,} rows, {len(model.feature_names_in_)} features, "
          f"{model.n_rounds_} trees, held-out AUROC {auroc:.3f}, threshold {model.threshold_:.4f}; "
          f"{train_seconds:.1f} s", flush=True)  # fmt: skip
    results["model"] = {
        "trained_on": f"separate synthetic cohort of {args.train_encounters} encounters (seed {args.seed + 1})",
        "version": trained.version, "rows": trained.n_rows, "features": len(model.feature_names_in_),
        "trees": int(model.n_rounds_), "max_depth": model.max_depth, "heldout_auroc": auroc,
        "threshold": float(model.threshold_), "train_seconds": train_seconds,
        **{f"train_cohort_{k}": v for k, v in training_cohort.items()},
    }  # fmt: skip

    repeats = args.repeats
    stages: dict[str, dict[str, Any]] = {}
    catalog = load_catalog()
    print(f"\n[scoring at {at.isoformat()}] each stage median of {repeats} ...", flush=True)

    def stage(name: str, function: Callable[[], T]) -> T:
        figures, result = timed(function, repeats=repeats)
        stages[name] = figures
        print(f"  {name:<34} {figures['seconds']:7.2f} s (runs {', '.join(f'{s:.2f}' for s in figures['runs'])}; "
              f"CPU {figures['cpu_seconds']:.2f} s); peak RSS {peak_rss_gib():.1f} GiB", flush=True)  # fmt: skip
        return result

    admitted = stage("admitted encounters", lambda: scoring.admitted_encounters(lake.scan("encounters"), at=at))
    ids = admitted["encounter_id"].to_list()
    latest = stage(
        "features (latest row of each admitted stay)",
        lambda: latest_features(lake.scan("observations"), lake.scan("encounters"), lake.scan("patients"),
                                at=at, encounter_ids=ids),
    )  # fmt: skip
    feature_rows, feature_columns = latest.height, latest.width
    gc.collect()
    seen = stage(
        "observations seen (revision count)",
        lambda: scoring.observations_seen(lake.scan("observations"), at=at, encounter_ids=admitted["encounter_id"]),
    )

    names = list(model.feature_names_in_)

    def sufficient_rows() -> tuple[pl.DataFrame, Any]:
        missing = scoring.staleness(latest, catalog=catalog)
        usable = latest.filter(pl.Series(missing == ""))
        return usable, usable.select(names).to_pandas()

    usable, X = stage("staleness + to_pandas", sufficient_rows)
    risk = stage("predict_proba", lambda: model.predict_proba(X)[:, 1])
    contributions = stage("contributions (native TreeSHAP)", lambda: model.contributions(X))
    keys = usable.select("encounter_id", pl.col("time").alias("scored_at"))

    def drivers() -> pl.DataFrame:
        ranked = top_drivers(contributions, usable, names, k=3, min_abs=scoring.MIN_DRIVER_CONTRIBUTION)
        return drivers_frame(keys, ranked)

    drivers_table = stage("top_drivers + drivers_frame", drivers)
    scores_frame, drivers_table = scoring.score_latest(latest, model, catalog=catalog)
    scores_frame = scores_frame.join(admitted, on="encounter_id", how="left").join(seen, on="encounter_id", how="left")
    stores = iter(range(1_000))

    def store() -> int:
        engine = open_store(f"sqlite:///{scratch / f'stage-store-{next(stores)}.sqlite'}")
        try:
            started_at = datetime.now(UTC)
            run_id = start_run(engine, "score", model_version=trained.version, now=started_at)
            return write_scores(engine, run_id, trained.version, scores_frame, drivers_table, now=started_at)
        finally:
            engine.dispose()

    # open_store (connect + Alembic migrations) is timed apart so that "store" is the writing.
    def empty_store() -> None:
        open_store(f"sqlite:///{scratch / f'stage-store-{next(stores)}.sqlite'}").dispose()

    stage("open_store (connect + migrate)", empty_store)
    written = stage("store: start_run + write_scores", store)

    # The alert policy on the stored scores (score_admitted does this for the champion).
    from riskcast.alerts.policy import load_policy
    from riskcast.alerts.state import process_scores

    policy_set = load_policy()
    alert_scores = scores_frame.with_columns(pl.lit(trained.version).alias("model_version"))
    alert_walls: list[float] = []
    alert_cpus: list[float] = []
    processed: Any = None
    for _ in range(repeats):
        engine = open_store(f"sqlite:///{scratch / f'stage-store-{next(stores)}.sqlite'}")
        try:
            started_at = datetime.now(UTC)
            run_id = start_run(engine, "score", model_version=trained.version, now=started_at)
            write_scores(engine, run_id, trained.version, scores_frame, drivers_table, now=started_at)
            gc.collect()
            cpu_started, started = time.process_time(), time.perf_counter()
            processed = process_scores(engine, alert_scores, policy_set=policy_set,
                                       model_threshold=float(model.threshold_), now=started_at)  # fmt: skip
            alert_walls.append(time.perf_counter() - started)
            alert_cpus.append(time.process_time() - cpu_started)
        finally:
            engine.dispose()
    stages["alerts: process_scores"] = {
        "seconds": statistics.median(alert_walls), "cpu_seconds": statistics.median(alert_cpus), "runs": alert_walls,
    }  # fmt: skip
    print(f"  {'alerts: process_scores':<34} {statistics.median(alert_walls):7.2f} s (runs "
          f"{', '.join(f'{x:.2f}' for x in alert_walls)}; CPU {statistics.median(alert_cpus):.2f} s): {processed}", flush=True)  # fmt: skip
    stage("load model from the registry", lambda: registry.load(trained.version))
    stage_sum = sum(figures["seconds"] for name, figures in stages.items() if name != "open_store (connect + migrate)")

    print(f"\n[scoring at {at.isoformat()}] score_admitted end to end, fresh SQLite file each run ...", flush=True)
    e2e_stores = iter(range(1_000))
    summaries: list[Any] = []

    def end_to_end() -> Any:
        engine = open_store(f"sqlite:///{scratch / f'e2e-store-{next(e2e_stores)}.sqlite'}")
        try:
            summary = scoring.score_admitted(lake, registry, engine, at=at, now=datetime.now(UTC),
                                             model_version=trained.version)  # fmt: skip
            summaries.append(summary)
            return summary
        finally:
            engine.dispose()

    e2e, summary = timed(end_to_end, repeats=args.e2e_repeats)
    print(f"  score_admitted {e2e['seconds']:.2f} s (runs {', '.join(f'{s:.2f}' for s in e2e['runs'])}; "
          f"CPU {e2e['cpu_seconds']:.2f} s): {summary.to_dict()}", flush=True)  # fmt: skip
    results["run"] = {
        "at": at.isoformat(),
        "admitted": admitted.height,
        "feature_rows_built": feature_rows,
        "feature_columns": feature_columns,
        "rows_at_hour": latest.height,
        "scored": usable.height,
        "insufficient_data": latest.height - usable.height + (admitted.height - latest.height),
        "driver_rows": drivers_table.height,
        "scores_written": written,
        "flagged": int((risk >= model.threshold_).sum()),
        "stages": stages,
        "sum_of_stages_seconds": stage_sum,
        "end_to_end": e2e,
        "end_to_end_summary": summary.to_dict(),
        "peak_rss_gib": peak_rss_gib(),
    }
    return results


def print_table(results: dict[str, Any]) -> None:
    env, run, model, cohort = results["machine"], results["run"], results["model"], results["scoring_cohort"]
    print("\n" + "=" * 100)
    print_machine(env)
    print(f"Timings: median of {results['repeats']} runs per stage, {results['e2e_repeats']} end-to-end; the machine is "
          "shared and noisy (load average above), so read CPU seconds beside wall seconds.")  # fmt: skip
    print(f"Scoring cohort: generate_cohort({cohort['n_encounters_asked']}, admitted_fraction={cohort['admitted_fraction']}): "
          f"{cohort['accepted'].get('observations', 0):,} observations in the lake; {run['admitted']:,} admitted at "
          f"{run['at']}; features built for {run['feature_rows_built']:,} hourly rows x {run['feature_columns']} columns.")  # fmt: skip
    print(f"Model: {model['trained_on']}; {model['features']} features, {model['trees']} trees of depth "
          f"{model['max_depth']}, held-out AUROC {model['heldout_auroc']:.3f}.")  # fmt: skip
    header = f"| {'stage':<40} | {'wall s':>8} | {'CPU s':>8} | {'share':>6} |"
    print("\n" + header)
    print(f"|{'-' * 42}|{'-' * 10}:|{'-' * 10}:|{'-' * 7}:|")
    total = run["sum_of_stages_seconds"]
    for name, figures in run["stages"].items():
        share = "" if name == "open_store (connect + migrate)" else f"{figures['seconds'] / total:.0%}"
        print(f"| {name:<40} | {figures['seconds']:>8.2f} | {figures['cpu_seconds']:>8.2f} | {share:>6} |")
    print(f"| {'sum of stages (without open_store)':<40} | {total:>8.2f} | {'':>8} | {'':>6} |")
    e2e = run["end_to_end"]
    print(f"| {'score_admitted, end to end':<40} | {e2e['seconds']:>8.2f} | {e2e['cpu_seconds']:>8.2f} | {'':>6} |")
    print(f"\n{run['admitted']:,} admitted -> {run['rows_at_hour']:,} with a row at the hour, {run['scored']:,} scored, "
          f"{run['insufficient_data']:,} insufficient data, {run['flagged']:,} flagged; {run['scores_written']:,} scores "
          f"and {run['driver_rows']:,} driver rows written; peak RSS {run['peak_rss_gib']:.1f} GiB; "
          f"{run['admitted'] / e2e['seconds']:,.0f} encounters/s end to end.")  # fmt: skip
    print("=" * 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admitted", type=int, default=20_000, help="encounters admitted at the hour (default 20000)")
    parser.add_argument("--admitted-fraction", type=float, default=0.8, help="share of the cohort still admitted")
    parser.add_argument("--train-encounters", type=int, default=3_000, help="size of the training cohort")
    parser.add_argument("--quick", action="store_true", help="1,000 admitted, 600 training encounters, 1 run each")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if args.quick:
        args.admitted, args.train_encounters = 1_000, 600
    args.repeats = 1 if args.quick else 3
    args.e2e_repeats = 1 if args.quick else 3

    results: dict[str, Any] = {
        "machine": machine(),
        "started_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "repeats": args.repeats,
        "e2e_repeats": args.e2e_repeats,
    }
    print_machine(results["machine"])
    with tempfile.TemporaryDirectory(prefix="riskcast-bench-score-") as scratch:
        results.update(measure(args, Path(scratch)))
    results["finished_at"] = datetime.now(UTC).isoformat()
    print_table(results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / ("score-quick.json" if args.quick else "score.json")
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
