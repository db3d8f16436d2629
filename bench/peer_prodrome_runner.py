"""The half of the prodrome benchmark that runs inside prodrome's own virtual environment.

Run by bench/peer_prodrome.py as `<prodrome venv>/bin/python bench/peer_prodrome_runner.py
...`; it imports `prodrome` (0.1.0, from PyPI) and nothing of riskcast. Three subcommands:

- `prepare`: extract PhysioNet 2019 training set A from the archive into a work folder outside
  the repository, write prodrome's bundled `default.yaml` there unchanged (what `prodrome
  init` does), and parse set A with `prodrome.data.parse.prepare(..., sites=("A",))` (its
  `prodrome data prepare` command would also parse set B, which this machine does not have).
- `run`: one training/test run, from a JSON spec (below); writes one Parquet row per test row
  (patient_id, row, iculos, probability, predicted_label, sepsis_label) and a JSON report.
- `score`: prodrome's own utility (`prodrome.eval.utility.cohort_utility`) and its own hour
  and patient discrimination on a predictions Parquet file written by the riskcast side.

The run spec, `{"split", "fold", "protocol", "train", "test", "patients"}`:

- protocol "default": prodrome's own protocol, as `prodrome train && prodrome calibrate &&
  prodrome eval --site A` run it with the bundled default configuration: its patient split
  of set A (train 0.6 / calibration 0.2 / test 0.2, stratified on sepsis, seed 7), 15 % of
  the training patients held back for early stopping, the alert policy fitted on the
  calibration patients, the test patients scored. `patients` (optional) restricts the cohort
  first (a smoke run on a subset).
- protocol "external": train on the `train` patients, test on the `test` patients. prodrome's
  API takes no external patient list (`Pipeline.splits()` always splits its whole cohort), so
  the adapter here is the smallest one that keeps everything else prodrome's: the
  pipeline's cohort is restricted to the training patients, and those are split by
  prodrome's own `make_splits` (stratified on sepsis, its seed 7) into train and calibration
  in its default ratio 0.6 : 0.2 (so 0.75 / 0.25; its test part is ours). Then
  `Pipeline.fit` (with its own 15 % early-stopping hold-out) and `Pipeline.calibrate` run
  unchanged, and the test patients are scored as `Pipeline.evaluate` does (its
  `build_features`, `predict` and `run_eval`), keeping the risks it computes and throws away.

Nothing of prodrome's code or configuration is changed; only its artefact folder (the model
and policy files, which its config hash does not cover) is moved per run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import benchkit

LIBRARIES = ("prodrome", "lightgbm", "numpy", "pandas", "scikit-learn", "scipy", "pyarrow", "pydantic")
"""What this half reports the versions of (from prodrome's venv)."""


def default_config_path(work: Path) -> Path:
    return work / "configs" / "default.yaml"


# --------------------------------------------------------------------------- prepare
def prepare_command(args: argparse.Namespace) -> dict[str, Any]:
    """Extract set A, write the bundled default configuration, parse with prodrome."""
    from prodrome.cli import bundled_configs_dir
    from prodrome.data.parse import prepare

    work = Path(args.work)
    bundled = bundled_configs_dir() / "default.yaml"
    config = default_config_path(work)
    config.parent.mkdir(parents=True, exist_ok=True)
    if not config.exists() or config.read_bytes() != bundled.read_bytes():
        shutil.copyfile(bundled, config)

    raw = work / "data" / "raw"
    site_dir = raw / "training_setA"
    started = time.perf_counter()
    if not site_dir.is_dir() or not any(site_dir.glob("p*.psv")):
        raw.mkdir(parents=True, exist_ok=True)
        with tarfile.open(args.archive, "r:*") as tar:
            tar.extractall(raw, filter="data")
    extract_seconds = time.perf_counter() - started

    started = time.perf_counter()
    manifest = prepare(raw, work / "data" / "prepared", sites=("A",), workers=args.workers)
    return {
        "config": str(config),
        "config_is_bundled_default": config.read_bytes() == bundled.read_bytes(),
        "extract_seconds": extract_seconds,
        "prepare_seconds": time.perf_counter() - started,
        "manifest": manifest.model_dump(mode="json"),
        "peak_rss_gib": benchkit.peak_rss_gib(),
        "machine": benchkit.machine(LIBRARIES),
    }


# --------------------------------------------------------------------------- run
def restricted_cohort(cohort: Any, keep: set[str]) -> Any:
    """prodrome's Cohort with only the stays in `keep`, every per-stay list filtered alike."""
    from prodrome.core.types import Cohort

    mask = [p in keep for p in cohort.patient_id]
    fields = {name: [v for v, m in zip(getattr(cohort, name), mask, strict=True) if m] for name in Cohort.model_fields}
    return Cohort(**fields)


def external_assignment(pipeline: Any, train: list[str], test: list[str]) -> Any:
    """Train/calibration chosen by prodrome's make_splits inside `train`; `test` as given."""
    from prodrome.core.types import SplitAssignment
    from prodrome.data.splits import check_disjoint, make_splits

    cfg = pipeline.cfg
    fractions = cfg.split.fractions()
    kept = fractions["train"] + fractions["calibration"]
    inner = make_splits(
        pipeline.cohort(),
        sites=cfg.train_sites,
        fractions={"train": fractions["train"] / kept, "calibration": fractions["calibration"] / kept},
        seed=cfg.split.seed,
    )
    assignment = SplitAssignment(
        seed=inner.seed, fractions=inner.fractions, parts={**inner.parts, "test": sorted(test)}
    )
    check_disjoint(assignment)
    return assignment


def run_command(args: argparse.Namespace) -> dict[str, Any]:
    from prodrome.core.config import load_config
    from prodrome.eval.runner import run_eval
    from prodrome.eval.utility import UtilityParams
    from prodrome.pipeline import Pipeline

    spec = json.loads(Path(args.spec).read_text())
    work = Path(args.work)
    cfg = load_config(default_config_path(work))
    artefacts = work / ".prodrome" / Path(args.out).stem
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"artifacts": str(artefacts)})})
    pipeline = Pipeline(cfg)
    timings: dict[str, float] = {}

    everyone = pipeline.cohort()
    if spec["protocol"] == "default":
        if spec.get("patients"):
            pipeline._cohort = restricted_cohort(everyone, set(spec["patients"]))
        assignment = pipeline.splits()
    elif spec["protocol"] == "external":
        known = set(everyone.patient_id)
        unknown = [p for p in (*spec["train"], *spec["test"]) if p not in known]
        if unknown:
            raise SystemExit(f"{len(unknown)} patient(s) of the spec are not in prodrome's prepared corpus")
        pipeline._cohort = restricted_cohort(everyone, set(spec["train"]))
        assignment = external_assignment(pipeline, spec["train"], spec["test"])
        pipeline._splits = assignment
    else:
        raise SystemExit(f"unknown protocol {spec['protocol']!r} (expected default or external)")
    test = assignment.parts["test"]
    print(f"[prodrome] {spec['split']} fold {spec.get('fold')}: {assignment.counts()} patients; "
          f"{len(pipeline.internal_validation_patients())} of train held back for early stopping",
          file=sys.stderr, flush=True)  # fmt: skip

    started = time.perf_counter()
    pipeline.fit()
    timings["fit_with_features"] = time.perf_counter() - started
    timings["fit_booster"] = float(pipeline._fit_seconds or 0.0)
    started = time.perf_counter()
    policy = pipeline.calibrate()
    timings["calibrate"] = time.perf_counter() - started
    print(f"[prodrome] threshold {policy.threshold:.5f} ({policy.statement})", file=sys.stderr, flush=True)

    # What Pipeline.evaluate does, keeping the per-row risk it discards.
    started = time.perf_counter()
    features = pipeline.build_features(["A"], test)
    risk, predict_seconds = pipeline.predict(features)
    timings["test_features_and_predict"] = time.perf_counter() - started
    started = time.perf_counter()
    report = run_eval(
        features,
        risk,
        policy,
        config_name=cfg.name,
        config_hash=cfg.config_hash(),
        corpus_sha256=pipeline.manifest().corpus_sha256,
        split_seed=cfg.split.seed,
        train_sites=cfg.train_sites,
        test_site="A",
        split="test",
        params=UtilityParams(**cfg.utility.model_dump()),
        fit_seconds=pipeline._fit_seconds,
        predict_seconds=predict_seconds,
        notes={"feature_set": pipeline.features.name, "model": pipeline.model.name,
               "n_features": len(features.columns), "calibrated_on": policy.calibrated_on},  # fmt: skip
    )
    timings["eval"] = time.perf_counter() - started

    frame = pipeline.frame_for(["A"], test)  # the rows build_features used, in its order
    if len(frame) != features.n_rows or not np.array_equal(frame["hour"].to_numpy(), features.hour):
        raise SystemExit("prodrome's feature rows do not line up with its prepared rows")
    pd.DataFrame(
        {
            "patient_id": frame["patient_id"].astype(str).to_numpy(),
            "row": frame["hour"].to_numpy(dtype=np.int64),
            "iculos": frame["ICULOS"].to_numpy(dtype=np.float64).astype(np.int64),
            "probability": risk.astype(np.float64),
            "predicted_label": (risk >= policy.threshold).astype(np.int8),
            "sepsis_label": frame["SepsisLabel"].to_numpy(dtype=np.int8),
        }
    ).to_parquet(args.out, index=False)
    return {
        "split": spec["split"],
        "fold": spec.get("fold"),
        "protocol": spec["protocol"],
        "patients": assignment.counts(),
        "test_patients": list(test),
        "early_stopping_patients": len(pipeline.internal_validation_patients()),
        "best_iteration": getattr(pipeline.model, "_best_iteration", None),
        "n_features": len(features.columns),
        "policy": policy.model_dump(mode="json"),
        "report": report.model_dump(mode="json", exclude={"calibration": {"bins"}}),
        "timings": timings,
        "peak_rss_gib": benchkit.peak_rss_gib(),
        "machine": benchkit.machine(LIBRARIES),
    }


# --------------------------------------------------------------------------- score
def score_command(args: argparse.Namespace) -> dict[str, Any]:
    """prodrome's utility and discrimination of a predictions file (rows sorted per stay)."""
    from prodrome.eval.metrics import discrimination, stay_outcomes
    from prodrome.eval.utility import cohort_utility

    frame = pd.read_parquet(args.predictions).sort_values(["patient_id", "row"], kind="stable", ignore_index=True)
    ids = frame["patient_id"].to_numpy(dtype=object)
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1, [len(ids)]]).astype(np.int64)
    labels = frame["sepsis_label"].to_numpy(dtype=np.int8)
    risk = frame["probability"].to_numpy(dtype=np.float64)
    breakdown = cohort_utility(labels, frame["predicted_label"].to_numpy(dtype=np.int8), starts)
    metrics = discrimination(labels, risk, stay_outcomes(labels, risk, starts))
    return {
        "utility": breakdown.normalized,
        "utility_totals": {"observed": breakdown.observed, "best": breakdown.best, "inaction": breakdown.inaction},
        "auroc": metrics.auroc,
        "auprc": metrics.auprc,
        "auroc_patient": metrics.auroc_patient,
        "stays": len(starts) - 1,
        "rows": len(frame),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="extract set A and parse it with prodrome")
    prepare.add_argument("--work", required=True)
    prepare.add_argument("--archive", required=True)
    prepare.add_argument("--workers", type=int, default=2)
    run = commands.add_parser("run", help="one training/test run from a JSON spec")
    run.add_argument("--work", required=True)
    run.add_argument("--spec", required=True)
    run.add_argument("--out", required=True, help="the predictions Parquet file to write")
    score = commands.add_parser("score", help="prodrome's utility of a predictions Parquet file")
    score.add_argument("--predictions", required=True)
    for sub in (prepare, run, score):
        sub.add_argument("--json", required=True, help="where to write this command's JSON result")
    args = parser.parse_args(argv)
    result = {"prepare": prepare_command, "run": run_command, "score": score_command}[args.command](args)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
