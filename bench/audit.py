"""Benchmark: the fairness audit (riskcast.fairness.audit) of a 20,000-encounter synthetic cohort.

What it measures, in one run:

1. Set-up (timed, not the subject): generate the cohort (pulse-oximetry bias planted), ingest it
   into a lake, build its labelled hourly feature matrix, train a model (riskcast.model.RiskModel,
   XGBoost, alert budget 15 per 100 patient-days) on a fifth of the patients and score every
   encounter-hour in chunks. (train_and_register on all 20,000 encounters needs more than 10 GiB
   and was killed on the 24 GiB development machine; the audit does not need that model.)
2. The audit by sex, age band, race/ethnicity, site and ward, with 200 patient-level bootstrap
   resamples and the default gates: of the four-fifths of patients the model did not see (what
   `riskcast audit` does for a model trained on them), and of every encounter of the cohort,
   with and without intersections and mitigation.

Each audit is timed (median of `--repeats`, wall and CPU seconds). The figures, the verdicts
and the machine are printed and written to bench/out/audit.json. Wall times are noisy on a
shared machine; CPU seconds are reported beside them.

    python bench/audit.py                       # 20,000 encounters (set-up takes several minutes)
    python bench/audit.py --encounters 3000     # a smoke run
    python bench/audit.py --keep DIR            # keep the lake and the predictions in DIR and reuse them
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl
import benchkit
from benchkit import timed

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
T = TypeVar("T")


def machine() -> dict[str, Any]:
    """The machine and the versions of the libraries this benchmark exercises."""
    return benchkit.machine(("riskcast", "polars", "numpy", "pandas", "scipy", "scikit-learn", "fairlearn", "xgboost"))


def set_up(root: Path, *, encounters: int, seed: int) -> tuple[pl.DataFrame, float, dict[str, Any]]:
    """Every labelled encounter-hour of a synthetic cohort, scored; the threshold; set-up figures.

    Reuses root/predictions.parquet (and root/threshold.json) when a previous run left them.
    """
    from riskcast.lake import Lake
    from riskcast.model import RiskModel
    from riskcast.pipeline.audit import AUDIT_COLUMNS, MEASUREMENT_COLUMNS
    from riskcast.pipeline.ingest import ingest_paths
    from riskcast.fairness import SENSITIVE_FEATURES
    from riskcast.features.build import feature_columns
    from riskcast.pipeline.training import DEFAULT_ALERT_BUDGET, TRAINING_DEFAULTS, feature_matrix
    from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort

    saved, saved_threshold = root / "predictions.parquet", root / "threshold.json"
    if saved.exists() and saved_threshold.exists():
        print(f"reusing the scored cohort in {root}", flush=True)
        return pl.read_parquet(saved), json.loads(saved_threshold.read_text())["threshold"], {"reused": str(root)}
    figures: dict[str, Any] = {}

    def stage(name: str, function: Callable[[], T]) -> T:
        started = time.perf_counter()
        result = function()
        figures[f"{name}_seconds"] = round(time.perf_counter() - started, 1)
        print(f"  {name}: {figures[f'{name}_seconds']:.1f} s", flush=True)
        return result

    lake = Lake(root / "lake")
    if lake.is_empty():
        stage("synth", lambda: write_cohort(generate_cohort(encounters, seed=seed, malformed_rate=0.0), root / "cohort"))
        stage("ingest", lambda: ingest_paths([root / "cohort"], lake=lake, now=DEFAULT_NOW))
    frame = stage("features", lambda: feature_matrix(lake, outcome="deterioration", horizon_hours=12.0)
                  .filter(pl.col("label").is_not_null()))
    features = feature_columns(frame.drop("label", "event_time", strict=False))
    patients = frame.get_column("patient_id").unique().sort().sample(fraction=0.2, seed=seed)
    training = frame.filter(pl.col("patient_id").is_in(patients.implode()))
    model = RiskModel(engine="xgboost", device="cpu", threshold_rule="alert_budget",
                      threshold_target=DEFAULT_ALERT_BUDGET, random_state=seed, **TRAINING_DEFAULTS)
    stage("train", lambda: model.fit(training.select(features).to_pandas(), training["label"].to_numpy(),
                                     groups=training["patient_id"].to_numpy(),
                                     encounter_ids=training["encounter_id"].to_numpy()))
    del training

    def score() -> pl.DataFrame:
        chunks = []
        for offset in range(0, frame.height, 200_000):
            chunk = frame.slice(offset, 200_000)
            chunks.append(model.predict_proba(chunk.select(features).to_pandas())[:, 1])
        keep = [*AUDIT_COLUMNS, *SENSITIVE_FEATURES, *MEASUREMENT_COLUMNS]
        return frame.select(keep).with_columns(
            pl.Series("risk", np.concatenate(chunks)),
            pl.col("patient_id").is_in(patients.implode()).alias("trained_on"),
        )

    scored = stage("score", score)
    figures["training_patients"] = patients.len()
    scored.write_parquet(saved)
    saved_threshold.write_text(json.dumps({"threshold": float(model.threshold_)}))
    return scored, float(model.threshold_), figures


def describe(report: Any) -> dict[str, Any]:
    return {
        "rows": report.n_rows,
        "patients": report.n_patients,
        "events": report.n_events,
        "verdict": str(report.verdict),
        "groups": sum(f.groups.height for f in report.features.values()),
        "features": len(report.features),
        "mitigations": len(report.mitigations),
        "findings": [g.reason for g in report.gates if g.verdict != "pass" and len(g.feature.split(" & ")) == 1][:8],
    }


def measure(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    from riskcast.fairness import audit
    from riskcast.pipeline.audit import load_gates

    gates = load_gates()
    results: dict[str, Any] = {"encounters": args.encounters, "bootstrap": args.bootstrap}
    print(f"Set-up: {args.encounters:,} synthetic encounters", flush=True)
    everyone, threshold, results["setup"] = set_up(root, encounters=args.encounters, seed=args.seed)
    held_out = everyone.filter(~pl.col("trained_on"))
    everyone, held_out = everyone.drop("trained_on"), held_out.drop("trained_on")
    print(f"Scored {everyone.height:,} encounter-hours of {everyone['encounter_id'].n_unique():,} encounters "
          f"({held_out.height:,} hours of patients the model did not see); threshold {threshold:.4g}", flush=True)

    cases: list[tuple[str, pl.DataFrame, dict[str, Any]]] = [
        ("held-out patients", held_out, {}),
        ("every encounter", everyone, {}),
        ("every encounter, no mitigation", everyone, {"mitigate": ()}),
        ("every encounter, with intersections", everyone, {"intersections": True, "mitigate": ()}),
    ]
    results["audits"] = {}
    for name, rows, options in cases:
        timing, report = timed(
            lambda rows=rows, options=options: audit(rows, threshold=threshold, gates=gates, n_boot=args.bootstrap,
                                                     seed=args.seed, **options),
            repeats=args.repeats,
        )
        results["audits"][name] = timing | describe(report)
        print(f"  audit, {name}: {timing['seconds']:.1f} s wall, {timing['cpu_seconds']:.1f} s CPU "
              f"({report.n_rows:,} hours, {report.n_patients:,} patients, {describe(report)['groups']} groups, "
              f"{len(report.mitigations)} mitigation tables, verdict {report.verdict})", flush=True)
    return results


def print_summary(results: dict[str, Any]) -> None:
    print("\nFairness audit, bootstrap of {bootstrap} patient resamples, {encounters:,}-encounter cohort".format(**results))
    print(f"{'case':<40} {'hours':>10} {'patients':>9} {'wall s':>8} {'CPU s':>7}  verdict")
    for name, figures in results["audits"].items():
        print(f"{name:<40} {figures['rows']:>10,} {figures['patients']:>9,} {figures['seconds']:>8.1f} "
              f"{figures['cpu_seconds']:>7.1f}  {figures['verdict']}")
    held_out = results["audits"].get("held-out patients")
    if held_out:
        print("\nFindings on the patients the model did not see (single features):")
        for reason in held_out["findings"]:
            print(f"  - {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encounters", type=int, default=20_000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="Keep (and reuse) the lake and predictions here.")
    args = parser.parse_args(argv)
    env = machine()
    print(f"Machine: {env['cpu']}, {env['cores']} cores, {env['ram_gib']} GiB RAM; "
          f"load average at start {env['load_average_at_start']}")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), flush=True)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = measure(args.keep, args)
    else:
        with tempfile.TemporaryDirectory(prefix="riskcast-bench-audit-") as scratch:
            results = measure(Path(scratch), args)
    results["machine"] = env
    print_summary(results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / "audit.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
