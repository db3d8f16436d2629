"""Hospital scale: every step of riskcast, one `riskcast` process each, on cohorts up to 100,000 encounters.

    .venv/bin/python bench/scale.py                                   # 20,000, 50,000, 100,000 and set A
    .venv/bin/python bench/scale.py --sizes 20000 --no-physionet      # one synthetic cohort
    .venv/bin/python bench/scale.py --sizes 20000 --steps synth,ingest
    .venv/bin/python bench/scale.py --sizes 100000 --no-physionet --train-options="--negative-fraction 0.1"

For each synthetic cohort size, and PhysioNet 2019 training set A
(`../shared/data/physionet2019/training_setA.tar.gz`, read by `riskcast ingest` as it is),
runs synth (synthetic only), ingest, features, train (`--no-ablations`; outcome deterioration,
or sepsis for set A), evaluate, score (every admitted patient; the synthetic cohort's at its
own `now`) and audit, each as its own `riskcast` subprocess in a fresh home under
bench/out/scale/<size>/. Each step's wall seconds, CPU seconds (user + system of that child)
and peak resident memory (its ru_maxrss, from os.wait4 on the child) are printed as one table
with the machine, and written to bench/out/scale.json. The target: peak RSS at most 8 GiB in
every step at 100,000 encounters (about 25 million observations) on 2 cores and 24 GiB.
A step that fails stops its cohort's later steps; its log is in the cohort's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from benchkit import machine, print_machine  # noqa: E402

STEPS = ("synth", "ingest", "features", "train", "evaluate", "score", "audit")
DEFAULT_SIZES = "20000,50000,100000"
SET_A = Path("data") / "physionet2019" / "training_setA.tar.gz"
# ../shared from the repository root, or from the folder above it (a worktree under wt/).
PHYSIONET = next((p / "shared" / SET_A for p in (REPO.parent, REPO.parent.parent) if (p / "shared" / SET_A).exists()),
                 REPO.parent / "shared" / SET_A)  # fmt: skip
SYNTHETIC_NOW = "2026-01-15T12:00:00Z"  # riskcast.synth.DEFAULT_NOW: the synthetic cohort's end
OUT = BENCH / "out"


def step_arguments(step: str, *, cohort: str, home: Path, train_options: tuple[str, ...] = ()) -> list[str] | None:
    """The `riskcast` arguments of one step for a cohort ("20000", ... or "physionet"); None: not run.

    `train_options` are added to the train step's arguments (e.g. a negative fraction at scale).
    """
    physionet = cohort == "physionet"
    if step == "synth":
        return None if physionet else ["synth", "--encounters", cohort, "--out", str(home / "cohort")]
    if step == "ingest":
        return ["ingest", str(PHYSIONET if physionet else home / "cohort")]
    if step == "features":
        return ["features"]
    if step == "train":
        return ["train", "--outcome", "sepsis" if physionet else "deterioration", "--no-ablations", *train_options]
    if step == "evaluate":
        return ["evaluate"]
    if step == "score":
        return ["score"] if physionet else ["score", "--at", SYNTHETIC_NOW]
    if step == "audit":
        return ["audit"]
    raise ValueError(f"unknown step {step!r}")


def run_step(arguments: list[str], *, home: Path, log: Path) -> dict[str, Any]:
    """Run `riskcast --home HOME ARGUMENTS` as a child; its wall and CPU seconds, peak RSS and exit status."""
    command = [sys.executable, "-m", "riskcast", "--home", str(home), *arguments]
    environment = os.environ | {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with log.open("w") as output:
        output.write(" ".join(command) + "\n")
        output.flush()
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO, env=environment)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 1024**2, 2),  # ru_maxrss is in KiB on Linux
        "exit_status": child.returncode,
    }


def run_cohort(cohort: str, steps: list[str], train_options: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Every step for one cohort in a fresh home; stops at the first step that fails."""
    folder = OUT / "scale" / cohort
    shutil.rmtree(folder, ignore_errors=True)
    home = folder / "home"
    folder.mkdir(parents=True)
    home.mkdir(mode=0o700)  # a home holds patient data: the owner's only, as riskcast itself checks
    results: dict[str, dict[str, Any]] = {}
    for step in steps:
        arguments = step_arguments(step, cohort=cohort, home=home, train_options=train_options)
        if arguments is None:
            continue
        result = run_step(arguments, home=home, log=folder / f"{step}.log")
        results[step] = result
        print(f"  {cohort:>10} {step:<9} {result['wall_seconds']:>8.1f} s wall {result['cpu_seconds']:>8.1f} s CPU "
              f"{result['peak_rss_gib']:>6.2f} GiB  exit {result['exit_status']}", flush=True)  # fmt: skip
        if result["exit_status"] != 0:
            print(f"  {step} failed: see {folder / f'{step}.log'}; later steps of {cohort} not run", flush=True)
            break
    return results


def print_table(results: dict[str, dict[str, dict[str, Any]]], steps: list[str]) -> None:
    print("\nwall s / CPU s / peak RSS GiB of each step (one riskcast process each)")
    print(f"{'cohort':>10} " + " ".join(f"{s:>20}" for s in steps))
    for cohort, by_step in results.items():
        cells = []
        for step in steps:
            r = by_step.get(step)
            if r is None:
                cells.append(f"{'-':>20}")
            else:
                failed = "" if r["exit_status"] == 0 else "!"
                cells.append(f"{r['wall_seconds']:>7.0f}/{r['cpu_seconds']:>5.0f}/{r['peak_rss_gib']:>5.2f}{failed:1}")
        print(f"{cohort:>10} " + " ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"synthetic cohort sizes, comma-separated (default {DEFAULT_SIZES}); '' for none")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"steps to run, comma-separated (default {','.join(STEPS)})")
    parser.add_argument("--physionet", action=argparse.BooleanOptionalAction, default=True, help="also run PhysioNet 2019 set A")
    parser.add_argument("--train-options", default="", help="more `riskcast train` options for every cohort, "
                        "one string (e.g. \"--negative-fraction 0.1\")")
    parser.add_argument("--json-out", type=Path, default=OUT / "scale.json", help="where the figures go (default bench/out/scale.json)")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    cohorts = [str(int(s)) for s in args.sizes.split(",") if s.strip()]
    train_options = tuple(shlex.split(args.train_options))
    if args.physionet:
        if PHYSIONET.exists():
            cohorts.append("physionet")
        else:
            print(f"PhysioNet set A not found at {PHYSIONET}: skipped")
    env = machine(["polars", "numpy", "xgboost", "pyarrow"])
    print_machine(env)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for cohort in cohorts:
        print(f"cohort {cohort}", flush=True)
        results[cohort] = run_cohort(cohort, steps, train_options)
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"machine": env, "steps": steps, "train_options": list(train_options),
                                             "results": results}, indent=2))
    print_table(results, [s for s in steps if any(s in r for r in results.values())])
    print_machine(env)
    print(f"figures: {args.json_out}")
    return 0 if all(r["exit_status"] == 0 for by_step in results.values() for r in by_step.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
