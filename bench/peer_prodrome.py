"""The closest peer, prodrome 0.1.0 (PyPI, Apache-2.0), on riskcast's transport splits of set A.

Run with riskcast's venv; prodrome runs in its own venv (made outside the repository with
`python3 -m venv /work/peers/prodrome-venv && /work/peers/prodrome-venv/bin/pip install
prodrome==0.1.0`), through bench/peer_prodrome_runner.py, one subprocess per training run,
so each run's wall time, CPU time and peak RSS are its own (os.wait4 on the child).

    .venv/bin/python bench/peer_prodrome.py                          # every split (about 20 min on 2 busy cores)
    .venv/bin/python bench/peer_prodrome.py --splits default,temporal
    .venv/bin/python bench/peer_prodrome.py --limit 2000              # the first 2,000 stays: a smoke run
    .venv/bin/python bench/peer_prodrome.py --venv /path/to/venv --work /path/to/scratch

The first call also extracts set A into --work and parses it with prodrome's own parser (about
4 min, once; delete <work>/data/prepared to redo it). prodrome is deterministic here: a rerun
writes identical predictions.

The splits (patient_id is the .psv file stem, e.g. p000001), defined by these rules alone so
riskcast's benchmark can use the identical assignment (`split_runs` below):

- cv5: patient-grouped 5-fold CV, fold = int(sha256(patient_id).hexdigest(), 16) % 5; each
  fold trains on the other four. Predictions pooled out of fold, each fold at its own
  threshold.
- unit-micu-to-sicu / unit-sicu-to-micu: train on the stays in one unit, test on the other.
  A stay's unit is read from its first row where Unit1 or Unit2 is not NaN (Unit1 == 1:
  medical ICU, Unit2 == 1: surgical ICU); stays with neither are in neither unit split.
- temporal: stays sorted by the number in their id; the first floor(0.8 n) train, the rest
  test.
- default: prodrome's own protocol with its bundled default configuration (train / calibrate
  / test on its own stratified 0.6 / 0.2 / 0.2 split of set A, seed 7), to reproduce its
  published internal figures here.

Within a training part prodrome chooses its own calibration patients and threshold (its
split ratio, its alert policy: the lowest threshold whose patient precision clears 0.30 at
95 % Clopper-Pearson confidence within 4 alerts per patient-day); see the runner's docstring
for the adapter that makes that possible.

For each split it writes bench/out/peers/prodrome-<split>.parquet (git-ignored): one row per
.psv line of every test stay, checked against the archive, with patient_id, row (0-based line
in the .psv), iculos, probability, predicted_label (at prodrome's threshold), sepsis_label,
split and fold (cv5 only; null otherwise). It prints AUROC and AUPRC over all test rows, the
PhysioNet 2019 normalised utility of predicted_label computed twice (riskcast.evaluate.
predictions_utility and prodrome's own cohort_utility, which must agree), and each prodrome
run's wall time, CPU time and peak RSS; the figures also go to
bench/out/peers/prodrome-summary.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, roc_auc_score

import benchkit

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "peer_prodrome_runner.py"
OUT_DIR = REPO_ROOT / "bench" / "out" / "peers"
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "physionet2019" / "training_setA.tar.gz"
DEFAULT_VENV = Path("/work/peers/prodrome-venv")
DEFAULT_WORK = Path("/work/peers/prodrome-work")
SPLITS = ("default", "cv5", "unit-micu-to-sicu", "unit-sicu-to-micu", "temporal")
CV_FOLDS = 5
TEMPORAL_TRAIN_SHARE = 0.8
UTILITY_AGREEMENT = 1e-9


# --------------------------------------------------------------------------- the archive's rows
def archive_rows(archive: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every .psv line of the archive, and one row per stay.

    rows: patient_id, row (0-based line after the header), iculos, sepsis_label.
    stays: patient_id, n_rows, unit ("micu", "sicu" or null: from the first line where Unit1
    or Unit2 is not NaN).
    """
    ids: list[str] = []
    positions: list[np.ndarray] = []
    iculos: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    stays: list[dict[str, Any]] = []
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            name = PurePosixPath(member.name)
            if not member.isfile() or name.suffix != ".psv":
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            lines = [line.split("|") for line in handle.read().decode("utf-8").splitlines() if line.strip()]
            header, body = lines[0], lines[1:]
            at = {column: header.index(column) for column in ("ICULOS", "SepsisLabel", "Unit1", "Unit2")}
            unit = None
            for line in body:
                unit1, unit2 = line[at["Unit1"]], line[at["Unit2"]]
                if unit1 != "NaN" or unit2 != "NaN":
                    unit = "micu" if unit1 != "NaN" and float(unit1) == 1 else (
                        "sicu" if unit2 != "NaN" and float(unit2) == 1 else None)  # fmt: skip
                    break
            ids.append(name.stem)
            positions.append(np.arange(len(body), dtype=np.int64))
            iculos.append(np.array([int(float(line[at["ICULOS"]])) for line in body], dtype=np.int64))
            labels.append(np.array([int(float(line[at["SepsisLabel"]])) for line in body], dtype=np.int8))
            stays.append({"patient_id": name.stem, "n_rows": len(body), "unit": unit})
    rows = pl.DataFrame(
        {
            "patient_id": np.repeat(np.array(ids, dtype=object), [len(p) for p in positions]).astype(str),
            "row": np.concatenate(positions),
            "iculos": np.concatenate(iculos),
            "sepsis_label": np.concatenate(labels),
        }
    )
    return rows, pl.DataFrame(stays, schema={"patient_id": pl.String, "n_rows": pl.Int64, "unit": pl.String})


# --------------------------------------------------------------------------- the splits
def cv5_fold(patient_id: str) -> int:
    """The stay's cv5 fold: the sha256 of its id, as an integer, modulo 5."""
    return int(hashlib.sha256(patient_id.encode()).hexdigest(), 16) % CV_FOLDS


def id_number(patient_id: str) -> int:
    """p000123 -> 123: the admission order the temporal split sorts by."""
    return int(patient_id.lstrip("p"))


def split_runs(stays: pl.DataFrame, split: str) -> list[dict[str, Any]]:
    """The training runs of one split: [{"fold", "train", "test"}] (patient id lists, sorted)."""
    ids = stays.get_column("patient_id").to_list()
    if split == "cv5":
        folds = {p: cv5_fold(p) for p in ids}
        return [
            {"fold": k, "train": sorted(p for p in ids if folds[p] != k), "test": sorted(p for p in ids if folds[p] == k)}
            for k in range(CV_FOLDS)
        ]
    if split in ("unit-micu-to-sicu", "unit-sicu-to-micu"):
        unit = dict(zip(ids, stays.get_column("unit").to_list(), strict=True))
        source, target = ("micu", "sicu") if split == "unit-micu-to-sicu" else ("sicu", "micu")
        return [{"fold": None, "train": sorted(p for p in ids if unit[p] == source),
                 "test": sorted(p for p in ids if unit[p] == target)}]  # fmt: skip
    if split == "temporal":
        ordered = sorted(ids, key=id_number)
        cut = int(np.floor(TEMPORAL_TRAIN_SHARE * len(ordered)))
        return [{"fold": None, "train": sorted(ordered[:cut]), "test": sorted(ordered[cut:])}]
    if split == "default":
        return [{"fold": None, "train": None, "test": None}]
    raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


# --------------------------------------------------------------------------- running prodrome
def run_child(command: list[str], *, log: Path) -> dict[str, Any]:
    """Run one prodrome subprocess; its wall seconds, CPU seconds and peak RSS (os.wait4)."""
    started = time.perf_counter()
    with log.open("w") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"prodrome run failed (exit {child.returncode}); log {log}:\n{tail}")
    return {"wall_seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_gib": usage.ru_maxrss / 1024**2}  # fmt: skip


def runner(venv: Path, *args: str) -> list[str]:
    return [str(venv / "bin" / "python"), str(RUNNER), *args]


def read_json(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def checked_predictions(predictions: pl.DataFrame, truth: pl.DataFrame, test: list[str]) -> pl.DataFrame:
    """prodrome's rows joined to the archive's: exactly one per .psv line of each test stay."""
    expected = truth.filter(pl.col("patient_id").is_in(test))
    if predictions.height != expected.height or predictions.select("patient_id", "row").is_duplicated().any():
        raise RuntimeError(f"prodrome wrote {predictions.height:,} rows for {len(test):,} test stays, "
                           f"whose files hold {expected.height:,}")  # fmt: skip
    joined = expected.join(predictions, on=["patient_id", "row"], how="left", suffix="_prodrome")
    if joined.get_column("probability").null_count():
        raise RuntimeError("some .psv lines of the test stays have no prodrome prediction")
    for column in ("iculos", "sepsis_label"):
        if (joined.get_column(column) != joined.get_column(f"{column}_prodrome").cast(joined.schema[column])).any():
            raise RuntimeError(f"prodrome's {column} differs from the archive's on some rows")
    return joined.select("patient_id", "iculos", "row", "probability", "predicted_label", "sepsis_label")


def riskcast_utility(frame: pl.DataFrame) -> float:
    from riskcast.evaluate import predictions_utility

    scored = frame.select(
        pl.col("patient_id").alias("encounter_id"), pl.col("row").alias("time"), "sepsis_label", "predicted_label"
    )
    return predictions_utility(scored, label="sepsis_label", prediction="predicted_label")


def run_split(split: str, stays: pl.DataFrame, truth: pl.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(args.work) / "runs"
    scratch.mkdir(parents=True, exist_ok=True)
    parts: list[pl.DataFrame] = []
    runs: list[dict[str, Any]] = []
    for plan in split_runs(stays, split):
        name = f"prodrome-{split}" + (f"-fold{plan['fold']}" if plan["fold"] is not None else "")
        spec = {"split": split, "fold": plan["fold"], "protocol": "default" if split == "default" else "external",
                "train": plan["train"], "test": plan["test"],
                "patients": stays.get_column("patient_id").to_list() if args.limit else None}  # fmt: skip
        spec_path, out, result = scratch / f"{name}.spec.json", scratch / f"{name}.parquet", scratch / f"{name}.json"
        spec_path.write_text(json.dumps(spec))
        print(f"[{name}] training on {len(plan['train']) if plan['train'] else 'its own split of'} stays ...", flush=True)
        usage = run_child(runner(args.venv, "run", "--work", str(args.work), "--spec", str(spec_path),
                                 "--out", str(out), "--json", str(result)), log=scratch / f"{name}.log")  # fmt: skip
        outcome = read_json(result)
        if plan["test"] is not None and outcome["test_patients"] != plan["test"]:
            raise RuntimeError(f"prodrome tested other patients than the {split} split's")
        part = checked_predictions(pl.read_parquet(out), truth, outcome["test_patients"])
        parts.append(part.with_columns(pl.lit(split).alias("split"), pl.lit(plan["fold"], dtype=pl.Int64).alias("fold")))
        report = outcome["report"]
        runs.append({
            "fold": plan["fold"], **usage, "runner_peak_rss_gib": outcome["peak_rss_gib"],
            "patients": outcome["patients"], "early_stopping_patients": outcome["early_stopping_patients"],
            "best_iteration": outcome["best_iteration"], "n_features": outcome["n_features"],
            "threshold": outcome["policy"]["threshold"], "policy_attainable": outcome["policy"]["attainable"],
            "policy_statement": outcome["policy"]["statement"], "stage_seconds": outcome["timings"],
            "prodrome_report": {"utility": report["utility"]["normalized"], "auroc": report["discrimination"]["auroc"],
                                "auprc": report["discrimination"]["auprc"],
                                "auroc_patient": report["discrimination"]["auroc_patient"],
                                "detection_rate_in_window": report["timing"]["detection_rate_in_window"],
                                "alerts_per_patient_day": report["operational"]["alerts_per_patient_day"],
                                "precision_among_alerted_patients": report["operational"]["precision_among_alerted_patients"],
                                "ece": report["calibration"]["ece"]},
        })  # fmt: skip
        prodrome_machine = outcome["machine"]
        print(f"[{name}] {usage['wall_seconds']:.0f} s wall, {usage['cpu_seconds']:.0f} s CPU, "
              f"peak RSS {usage['peak_rss_gib']:.2f} GiB; threshold {outcome['policy']['threshold']:.4f}; "
              f"prodrome's report: utility {report['utility']['normalized']:.4f}, "
              f"AUROC {report['discrimination']['auroc']:.4f}", flush=True)  # fmt: skip

    frame = pl.concat(parts).sort("patient_id", "row")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    suffix = f"-first{args.limit}" if args.limit else ""
    path = OUT_DIR / f"prodrome-{split}{suffix}.parquet"
    frame.write_parquet(path)

    usage = run_child(runner(args.venv, "score", "--predictions", str(path), "--json", str(scratch / f"score-{split}.json")),
                      log=scratch / f"score-{split}.log")  # fmt: skip
    prodrome_score = read_json(scratch / f"score-{split}.json")
    y = frame.get_column("sepsis_label").to_numpy()
    p = frame.get_column("probability").to_numpy()
    ours = riskcast_utility(frame)
    if abs(ours - prodrome_score["utility"]) > UTILITY_AGREEMENT:
        print(f"WARNING: the two utilities disagree on {split}: riskcast {ours!r}, prodrome {prodrome_score['utility']!r}")
    return {
        "split": split,
        "file": str(path.relative_to(REPO_ROOT)),
        "test_stays": frame.get_column("patient_id").n_unique(),
        "test_rows": frame.height,
        "septic_test_stays": frame.group_by("patient_id").agg(pl.col("sepsis_label").max()).get_column("sepsis_label").sum(),
        "train_stays_per_run": [r["patients"]["train"] + r["patients"]["calibration"] for r in runs],
        "auroc": float(roc_auc_score(y, p)),
        "auprc": float(average_precision_score(y, p)),
        "flag_rate": float(frame.get_column("predicted_label").mean()),
        "utility_riskcast": ours,
        "utility_prodrome": prodrome_score["utility"],
        "utility_prodrome_totals": prodrome_score["utility_totals"],
        "prodrome_auroc_check": prodrome_score["auroc"],
        "auroc_patient": prodrome_score["auroc_patient"],
        "wall_seconds": sum(r["wall_seconds"] for r in runs),
        "cpu_seconds": sum(r["cpu_seconds"] for r in runs),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
        "runs": runs,
        "score_run": usage,
        "prodrome_machine": prodrome_machine,
    }


# --------------------------------------------------------------------------- output
def print_table(results: dict[str, Any]) -> None:
    print("\nprodrome 0.1.0 (default configuration) on PhysioNet 2019 set A; AUROC/AUPRC over all test hours;")
    print("utility = normalised PhysioNet 2019 utility of prodrome's own 0/1 alerts (riskcast's / prodrome's function)")
    print("| split | train stays (incl. prodrome's calibration) | test stays (septic) | AUROC | AUPRC | utility riskcast | utility prodrome | "
          "flag rate | wall s | CPU s | peak RSS GiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in results["splits"].values():
        sizes = s["train_stays_per_run"]
        train = f"{sizes[0]:,}" if len(sizes) == 1 else f"{min(sizes):,}-{max(sizes):,} per fold"
        print(f"| {s['split']} | {train} | {s['test_stays']:,} ({s['septic_test_stays']:,}) | {s['auroc']:.3f} | "
              f"{s['auprc']:.3f} | {s['utility_riskcast']:.4f} | {s['utility_prodrome']:.4f} | {s['flag_rate']:.1%} | "
              f"{s['wall_seconds']:.0f} | {s['cpu_seconds']:.0f} | {s['peak_rss_gib']:.2f} |")  # fmt: skip
    for s in results["splits"].values():
        if len(s["runs"]) > 1:
            aurocs = [r["prodrome_report"]["auroc"] for r in s["runs"]]
            utilities = ", ".join(f"{r['prodrome_report']['utility']:.3f}" for r in s["runs"])
            rounds = ", ".join(str(r["best_iteration"]) for r in s["runs"])
            print(f"\n{s['split']} per fold (prodrome's own report on each test fold; the table pools the folds): "
                  f"AUROC {', '.join(f'{a:.3f}' for a in aurocs)} (mean {np.mean(aurocs):.3f}); "
                  f"utility {utilities}; boosting rounds kept by early stopping {rounds}")  # fmt: skip
    if results.get("prepare"):
        prep = results["prepare"]
        print(f"\nprepare (extract + prodrome's parse of set A): {prep['wall_seconds']:.0f} s wall, "
              f"{prep['cpu_seconds']:.0f} s CPU, peak RSS {prep['peak_rss_gib']:.2f} GiB")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="prodrome's virtual environment")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="scratch folder outside the repository (extracted data, prodrome's artefacts)")  # fmt: skip
    parser.add_argument("--splits", default=",".join(SPLITS), help=f"comma-separated, of {', '.join(SPLITS)}")
    parser.add_argument("--archive", type=Path, default=REAL_DATA)
    parser.add_argument("--limit", type=int, default=0, help="only the first N stays by id (a smoke run)")
    args = parser.parse_args(argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        parser.error(f"unknown split(s) {', '.join(unknown)}; expected some of {', '.join(SPLITS)}")
    if not (args.venv / "bin" / "python").exists():
        parser.error(f"no prodrome venv at {args.venv}; make it with: python3 -m venv {args.venv} && "
                     f"{args.venv}/bin/pip install prodrome==0.1.0")  # fmt: skip
    if not args.archive.exists():
        print(f"PhysioNet 2019 training set A is not at {args.archive}; nothing to measure (skipped).")
        return 0

    env = benchkit.machine(("riskcast", "polars", "numpy", "scikit-learn"))
    benchkit.print_machine(env)
    results: dict[str, Any] = {"machine": env, "started_at": datetime.now(UTC).isoformat(), "limit": args.limit,
                               "options": {k: str(v) for k, v in vars(args).items()}, "splits": {}}  # fmt: skip
    started = time.perf_counter()
    truth, stays = archive_rows(args.archive)
    if args.limit:
        stays = stays.sort("patient_id").head(args.limit)
        truth = truth.filter(pl.col("patient_id").is_in(stays.get_column("patient_id").to_list()))
    print(f"archive: {stays.height:,} stays, {truth.height:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)

    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "data" / "prepared" / "manifest.json").exists():
        print("preparing set A with prodrome's parser ...", flush=True)
        results["prepare"] = run_child(runner(args.venv, "prepare", "--work", str(args.work), "--archive",
                                              str(args.archive), "--json", str(args.work / "prepare.json")),
                                       log=args.work / "prepare.log")  # fmt: skip
        results["prepare"]["runner"] = read_json(args.work / "prepare.json")
    for split in splits:
        results["splits"][split] = run_split(split, stays, truth, args)
    results["total_seconds"] = time.perf_counter() - started
    results["finished_at"] = datetime.now(UTC).isoformat()
    print_table(results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    summary = OUT_DIR / (f"prodrome-summary-first{args.limit}.json" if args.limit else "prodrome-summary.json")
    if summary.exists() and not args.limit:
        previous = read_json(summary)  # keep splits measured by an earlier invocation with other --splits
        results["splits"] = {**previous.get("splits", {}), **results["splits"]}
        results.setdefault("prepare", previous.get("prepare"))
        results["earlier_runs"] = previous.get("earlier_runs", []) + [{k: previous.get(k) for k in ("started_at", "machine")}]
    summary.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {summary.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
