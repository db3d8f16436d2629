"""Transport benchmark: does riskcast hold at a unit or a time it never trained on?

PhysioNet 2019 training set A (one hospital system), three kinds of split, the same patient
assignments as bench/peer_prodrome.py (so prodrome is measured on identical splits):

- `cv5`: patient-grouped 5-fold cross-validation (fold = sha256(patient id) mod 5), pooled
  out-of-fold predictions;
- `unit-micu-to-sicu` / `unit-sicu-to-micu`: train on one ICU, test on the other
  (leave-one-unit-out; stays with no unit are left out);
- `temporal`: train on the first 80 % of stays by admission order, test on the last 20 %.

For the unit and temporal splits, 20 % of the training patients are held out as well, so each
row of the table reads *internal* (held-out patients of the training population) against
*transported* (the other unit, the later stays). Every model is riskcast's own: RiskModel with
the training defaults of `riskcast train --outcome sepsis` (XGBoost, the hours after onset kept,
early-stopping and calibration patients inside the training part, the threshold chosen by
the PhysioNet utility on the calibration patients), on features read from riskcast's feature
store. Each is evaluated on exactly the challenge's rows (one per .psv line).

Reported per split: AUROC and AUPRC (per hour) and the normalised PhysioNet 2019 utility, with
95 % intervals from resampling patients (200 resamples), for the model, each feature family
switched off (the ablation table), the clock alone, NEWS2, qSOFA and SIRS (each baseline's
threshold also chosen by the utility on the training part), and prodrome 0.1.0 when its
predictions are in bench/out/peers/ (run bench/peer_prodrome.py first).

    python bench/transport.py                      # every split, model and baselines
    python bench/transport.py --ablations          # ... and one model per family switched off
    python bench/transport.py --splits unit,temporal --quick

Writes bench/out/transport.json; prints the tables. The ingest and the feature store are kept
in --home (default bench/out/transport-home) and reused on the next run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import benchkit
from benchkit import peak_rss_gib, print_machine
from peer_prodrome import archive_rows, split_runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from riskcast.evaluate import discrimination  # noqa: E402
from riskcast.feature_store import FeatureStore, refresh_store  # noqa: E402
from riskcast.features.families import DEFAULT_FAMILIES, FAMILIES, columns_of  # noqa: E402
from riskcast.ingest.physionet import physionet_rows  # noqa: E402
from riskcast.lake import Lake  # noqa: E402
from riskcast.model import RiskModel  # noqa: E402
from riskcast.model.operating_point import threshold_for_utility  # noqa: E402
from riskcast.pipeline.ingest import ingest_paths  # noqa: E402
from riskcast.pipeline.training import TRAINING_DEFAULTS  # noqa: E402
from riskcast.pipeline.training_data import LabelSource, Labelling  # noqa: E402
from riskcast.utility import row_utilities  # noqa: E402

ARCHIVE = REPO / "../shared/data/physionet2019/training_setA.tar.gz"
OUT = REPO / "bench" / "out"
SPLITS = ("cv5", "unit-micu-to-sicu", "unit-sicu-to-micu", "temporal")
INTERNAL_SHARE = 0.2
BASELINE_SCORES = {"NEWS2": "news2", "qSOFA": "qsofa", "SIRS": "sirs"}


# --------------------------------------------------------------------------- data
def labelled_rows(home: Path, archive: Path, *, limit: int | None) -> tuple[pl.DataFrame, list[str]]:
    """The store's features, labelled for sepsis (the hours after onset kept, as riskcast train
    labels them), for every grid row; `psv` marks the challenge's own rows."""
    lake = Lake(home / "lake")
    if lake.is_empty():
        print(f"[ingest] {archive} -> {lake.root}", flush=True)
        started = time.perf_counter()
        ingest_paths([archive], lake=lake, now=datetime.now(UTC))
        print(f"  {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    store = FeatureStore(home / "features")
    summary = refresh_store(lake, store)
    print(f"[features] store {summary.generation}: {summary.rows:,} rows, {summary.features} features, "
          f"rebuilt {summary.rebuilt} shard(s) in {time.perf_counter() - started:.1f} s", flush=True)
    generation = store.open(FAMILIES)
    labels = LabelSource(lake, batches=generation.batches)
    labelling = Labelling("sepsis", 6.0, keep_after_event=True)
    source = physionet_rows(archive, limit=limit).select("encounter_id", "time", pl.lit(True).alias("psv"))
    parts = []
    for frame in generation.iter_shards():
        frame = labels.attach(frame, labelling)
        parts.append(frame.join(source, on=["encounter_id", "time"], how="left").with_columns(pl.col("psv").fill_null(False)))
    frame = pl.concat(parts).sort("encounter_id", "time")
    if limit:
        frame = frame.filter(pl.col("encounter_id").is_in(source["encounter_id"].unique().implode()))
    print(f"[rows] {frame.height:,} labelled grid rows, {int(frame['psv'].sum()):,} of them .psv lines; "
          f"peak RSS {peak_rss_gib():.1f} GiB", flush=True)
    return frame, generation.features


# --------------------------------------------------------------------------- metrics
def utility_with_interval(frame: pl.DataFrame, flagged: np.ndarray, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Normalised utility and a patient-bootstrap 95 % interval (the utility adds up per stay)."""
    utilities = row_utilities(frame["sepsis_label"].to_numpy(), frame["encounter_id"].to_numpy())
    patients, index = np.unique(frame["patient_id"].to_numpy(), return_inverse=True)
    observed = np.bincount(index, np.where(flagged, utilities.alarm, utilities.no_alarm), len(patients))
    none = np.bincount(index, utilities.no_alarm, len(patients))
    best = np.bincount(index, utilities.best, len(patients))
    value = float((observed.sum() - none.sum()) / (best.sum() - none.sum()))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        weight = np.bincount(rng.integers(0, len(patients), len(patients)), minlength=len(patients))
        span = (weight * (best - none)).sum()
        if span > 0:
            draws.append((weight * (observed - none)).sum() / span)
    low, high = (np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan))
    return {"utility": value, "utility_ci": [float(low), float(high)], "flag_rate": float(np.mean(flagged))}


def scores_of(frame: pl.DataFrame, risk: np.ndarray, flagged: np.ndarray, *, n_boot: int, seed: int) -> dict[str, Any]:
    scored = frame.select("patient_id", "sepsis_label").with_columns(pl.Series("risk", risk, dtype=pl.Float64))
    disc = discrimination(scored, score="risk", label="sepsis_label", n_boot=n_boot, seed=seed).to_dict()
    return {"auroc": disc["auroc"], "auroc_ci": disc["auroc_ci"], "auprc": disc["auprc"], "auprc_ci": disc["auprc_ci"],
            **utility_with_interval(frame, flagged, n_boot=n_boot, seed=seed)}


def utility_cut(frame: pl.DataFrame, score: np.ndarray) -> float:
    """The threshold that maximises the utility of `score` on these rows (as riskcast's rule)."""
    utilities = row_utilities(frame["sepsis_label"].to_numpy(), frame["encounter_id"].to_numpy())
    return threshold_for_utility(np.nan_to_num(score, nan=-1.0), utilities).threshold


# --------------------------------------------------------------------------- one split
PARAMS: dict[str, Any] = dict(TRAINING_DEFAULTS)


def fit(train: pl.DataFrame, features: list[str], *, seed: int) -> RiskModel:
    model = RiskModel(threshold_rule="utility", random_state=seed, **PARAMS)
    return model.fit(train.select(features), train["label"].to_numpy(), groups=train["patient_id"].to_numpy(),
                     encounter_ids=train["encounter_id"].to_numpy())


def run_split(frame: pl.DataFrame, features: list[str], runs: list[dict[str, Any]], *, variants: dict[str, list[str]],
              internal: bool, seed: int) -> dict[str, dict[str, list[pl.DataFrame]]]:
    """Out-of-sample predictions for every variant: {"internal"|"transported": {variant: [frames]}}."""
    out: dict[str, dict[str, list[pl.DataFrame]]] = {"internal": {}, "transported": {}}
    for run in runs:
        train_patients = run["train"]
        inside: list[str] = []
        if internal:
            rng = np.random.default_rng(seed)
            shuffled = rng.permutation(np.array(train_patients, dtype=object))
            inside = sorted(shuffled[: int(len(shuffled) * INTERNAL_SHARE)])
            train_patients = sorted(set(train_patients) - set(inside))
        train = frame.filter(pl.col("patient_id").is_in(pl.Series(train_patients, dtype=pl.String).implode()))
        tests = {"transported": frame.filter(pl.col("psv") & pl.col("patient_id").is_in(
            pl.Series(run["test"], dtype=pl.String).implode()))}
        if inside:
            tests["internal"] = frame.filter(pl.col("psv") & pl.col("patient_id").is_in(pl.Series(inside, dtype=pl.String).implode()))
        for name, columns in variants.items():
            started = time.perf_counter()
            model = fit(train, columns, seed=seed)
            for where, test in tests.items():
                risk = model.predict_proba(test.select(columns))[:, 1]
                out[where].setdefault(name, []).append(
                    test.select("encounter_id", "patient_id", "time", "sepsis_label").with_columns(
                        pl.Series("risk", risk), pl.Series("flagged", risk >= model.threshold_)))
            print(f"    {name}: {model.n_rounds_} rounds, threshold {model.threshold_:.4f}, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        psv_train = train.filter(pl.col("psv"))
        for name, column in BASELINE_SCORES.items():
            cut = utility_cut(psv_train, psv_train[column].cast(pl.Float64).to_numpy())
            for where, test in tests.items():
                score = test[column].cast(pl.Float64).fill_null(-1.0).to_numpy()
                out[where].setdefault(name, []).append(
                    test.select("encounter_id", "patient_id", "time", "sepsis_label").with_columns(
                        pl.Series("risk", score), pl.Series("flagged", score >= cut)))
    return out


def summarise(predictions: dict[str, list[pl.DataFrame]], *, n_boot: int, seed: int) -> dict[str, Any]:
    result = {}
    for name, frames in predictions.items():
        pooled = pl.concat(frames).sort("encounter_id", "time")
        result[name] = scores_of(pooled, pooled["risk"].to_numpy(), pooled["flagged"].to_numpy(), n_boot=n_boot, seed=seed)
    return result


def prodrome_scores(split: str, *, n_boot: int, seed: int) -> dict[str, Any] | None:
    path = OUT / "peers" / f"prodrome-{split}.parquet"
    if not path.exists():
        return None
    frame = pl.read_parquet(path).sort("patient_id", "row").with_columns(pl.col("patient_id").alias("encounter_id"))
    return scores_of(frame, frame["probability"].to_numpy(), frame["predicted_label"].to_numpy() == 1,
                     n_boot=n_boot, seed=seed)


# --------------------------------------------------------------------------- output
def fmt(result: dict[str, Any], metric: str) -> str:
    low, high = result.get(f"{metric}_ci", [None, None])
    interval = f" ({low:.3f}–{high:.3f})" if low is not None and np.isfinite(low) else ""
    return f"{result[metric]:.3f}{interval}"


def print_tables(results: dict[str, Any]) -> None:
    for split, by_where in results["splits"].items():
        for where, rows in by_where.items():
            if not rows:
                continue
            print(f"\n### {split}: {where}\n")
            print("| | AUROC | AUPRC | utility | flagged hours |\n|---|---|---|---|---|")
            for name, r in rows.items():
                print(f"| {name} | {fmt(r, 'auroc')} | {fmt(r, 'auprc')} | {fmt(r, 'utility')} | {r['flag_rate']:.1%} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--home", type=Path, default=OUT / "transport-home")
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--ablations", action="store_true", help="Also one model per feature family switched off.")
    parser.add_argument("--families", default=None, help="Families of the full model (default: riskcast's default).")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="The first 3,000 stays, 50 resamples.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default=None,
                        help='JSON overriding the training defaults, e.g. \'{"min_child_weight": 100}\' (to compare settings)')
    parser.add_argument("--tag", default="", help="Suffix for the JSON file name.")
    args = parser.parse_args(argv)
    if args.params:
        PARAMS.update(json.loads(args.params))
    if not args.archive.exists():
        print(f"PhysioNet 2019 set A not found at {args.archive}: nothing to measure (see ../shared/data/README.md)")
        return 0
    env = benchkit.machine(["polars", "xgboost", "numpy"])
    print_machine(env)
    limit = 3000 if args.quick else None
    n_boot = 50 if args.quick else args.bootstrap
    home = args.home.with_name(args.home.name + "-quick") if args.quick else args.home
    started = time.perf_counter()
    frame, all_features = labelled_rows(home, args.archive, limit=limit)
    families = tuple(args.families.split(",")) if args.families else DEFAULT_FAMILIES
    variants = {"riskcast": columns_of(all_features, families), "clock only": ["hours_since_admission"]}
    if args.ablations:
        for family in families:
            variants[f"without {family}"] = columns_of(all_features, [f for f in families if f != family])
    _, stays = archive_rows(args.archive)
    stays = stays.filter(pl.col("patient_id").is_in(frame["patient_id"].unique().implode()))
    results: dict[str, Any] = {"machine": env, "families": list(families), "training_settings": PARAMS,
                               "splits": {}, "seconds": {}}
    for split in args.splits.split(","):
        split_started = time.perf_counter()
        print(f"\n[{split}]", flush=True)
        runs = split_runs(stays, split)
        predictions = run_split(frame, all_features, runs, variants=variants, internal=split != "cv5", seed=args.seed)
        by_where = {where: summarise(p, n_boot=n_boot, seed=args.seed) for where, p in predictions.items()}
        if split == "cv5":  # every fold's test patients are of the training population
            by_where = {"internal": by_where["transported"], "transported": {}}
        peer = prodrome_scores(split, n_boot=n_boot, seed=args.seed) if not args.quick else None
        if peer is not None:
            by_where["internal" if split == "cv5" else "transported"]["prodrome 0.1.0"] = peer
        results["splits"][split] = by_where
        results["seconds"][split] = round(time.perf_counter() - split_started, 1)
        print_tables({"splits": {split: by_where}})
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    results["peak_rss_gib"] = round(peak_rss_gib(), 2)
    OUT.mkdir(parents=True, exist_ok=True)
    name = "transport-quick" if args.quick else ("transport-ablations" if args.ablations else "transport")
    name = f"{name}{'-' + args.tag if args.tag else ''}.json"
    (OUT / name).write_text(json.dumps(results, indent=1, default=float))
    print(f"\nwrote {OUT / name}; {results['seconds']['total']:.0f} s, peak RSS {results['peak_rss_gib']} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
