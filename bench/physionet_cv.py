"""Validation: patient-grouped cross-validation of riskcast on PhysioNet 2019 training set A.

What it does, timed step by step:

1. Ingest ../shared/data/physionet2019/training_setA.tar.gz (from the repo root) into a
   temporary lake with riskcast.pipeline.ingest.ingest_paths. If the archive is absent, it
   prints a note and exits 0.
2. Build the labelled hourly matrix with riskcast.pipeline.training.feature_matrix(lake,
   outcome="sepsis", horizon_hours=6, keep_after_event=True): the challenge scores every
   hour, before and after onset, and `label` is then the challenge's SepsisLabel (checked
   here against the attached `sepsis_label`).
3. Keep the challenge's rows. The adapter places ICULOS 0 at the stay's admit_time and
   riskcast's grid starts there, so every stay has at least one extra row before its first
   .psv row, with no data; and about a third of the files do not start at ICULOS 1 (their
   first row is at ICULOS 2 or later), which gives those stays several such rows. The
   PhysioNet utility counts a stay's rows by position (dt = position - (position of the first
   SepsisLabel 1 + 6)); leading rows move both positions alike, so dt of the real rows is
   unchanged, but the extra rows are scored too: hours with no data at which the challenge
   asks for no prediction, and, in stays labelled from their first row, hours inside the
   reward window before onset that raise the best possible utility (the denominator).
   Dropping hours_since_admission < 1 is not enough either, so the archive's own ICULOS
   ranges are read here, only grid rows with first ICULOS <= hours_since_admission <= last
   ICULOS are kept, and the kept rows per stay are checked against the .psv line counts.
   Training uses the same rows.
4. K-fold cross-validation grouped by patient (sklearn GroupKFold on patient_id, shuffled
   with a seed; default 5 folds): per fold, train riskcast.model.RiskModel (xgboost, device
   "auto", riskcast.pipeline.training.TRAINING_DEFAULTS, threshold rule below) on the other
   folds, predict the held-out fold, and evaluate with riskcast.evaluate.evaluate(frame,
   threshold=model.threshold_, baselines=...) on riskcast.pipeline.training.evaluation_frame
   / baselines_of (NEWS2 >= 5, NEWS2 >= 7, qSOFA >= 2, SIRS >= 2) plus a clock-only baseline.
5. Pooled over the out-of-fold predictions: AUROC and AUPRC with patient-bootstrap 95 %
   intervals, alert metrics, and the PhysioNet 2019 normalised utility of the model (each
   fold at its own threshold), NEWS2 >= 5 and the clock.

The clock-only baseline scores a row by hours_since_admission (ICU length of stay so far),
thresholded so that it flags the same share of rows as the model does in that fold: on this
data the chance of a SepsisLabel rises with time in the ICU, and a clock alone earns much
of the utility. A utility sweep over flag rates (model and clock, one global threshold on the
pooled out-of-fold scores) shows how much depends on where the threshold sits; it is
chosen with the answers in view, so it is context, not a result.

Operating point. The utility pays per hour: +1 for an alarm 6 h before onset, falling to 0
at 12 h before and 3 h after; -0.05 for every alarm on a stay without sepsis; up to -2 for a
missed hour near onset; nothing at all from 3 h after onset on. About 2 % of rows carry
SepsisLabel 1. riskcast's training default, an alert budget of 15 episodes per 100
patient-days, is a general ward's burden; hour-by-hour ICU scoring earns most at a much
higher flag rate (on set A the utility sweep peaks at about 15-20 % of rows). So the
threshold is chosen, without looking at the test fold, on the model's own calibration
patients by threshold_rule="sensitivity", --target 0.5: flag half of the positive hours.
Half rather than the RiskModel default of 0.8 because SepsisLabel stays 1 until discharge:
many positive hours lie long after onset, where alarms are easy and earn nothing. On set A
this flags 11-13 % of rows (35 alert episodes per 100 patient-days), within a few hundredths
of the sweep's best utility. Use --rule alert_budget --target N for a ward-style budget.

    python bench/physionet_cv.py                  # full run (about 20 min on a busy 2-core machine)
    python bench/physionet_cv.py --quick          # 3,000 stays, 3 folds: a smoke run
    python bench/physionet_cv.py --folds 3

Figures: a table on stdout and bench/out/physionet_cv.json. Wall times come from a shared,
noisy machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import polars as pl
import benchkit
from benchkit import peak_rss_gib, print_machine

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "physionet2019" / "training_setA.tar.gz"
CLOCK = "clock (hours in ICU)"
NEWS2 = "NEWS2"
SWEEP_FLAG_RATES = (0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30)


# --------------------------------------------------------------------------- environment
# --------------------------------------------------------------------------- the challenge's rows
def machine() -> dict[str, Any]:
    """The machine and the versions of the libraries this benchmark exercises."""
    return benchkit.machine(("riskcast", "polars", "numpy", "pandas", "xgboost", "scikit-learn"))


def challenge_rows(archive: Path, *, stems: set[str] | None = None) -> pl.DataFrame:
    """encounter_id (file stem), first_iculos, last_iculos, psv_rows for every .psv in the archive.

    Read straight from the archive, independently of riskcast's adapter, to say which grid
    rows are the challenge's rows.
    """
    ids: list[str] = []
    first: list[float] = []
    last: list[float] = []
    counts: list[int] = []
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            name = PurePosixPath(member.name)
            if not member.isfile() or name.suffix != ".psv" or (stems is not None and name.stem not in stems):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            lines = [line for line in handle.read().decode("utf-8").splitlines() if line.strip()]
            column = lines[0].split("|").index("ICULOS")
            iculos = [float(line.split("|")[column]) for line in lines[1:]]
            ids.append(name.stem)
            first.append(min(iculos))
            last.append(max(iculos))
            counts.append(len(iculos))
    return pl.DataFrame({"encounter_id": ids, "first_iculos": first, "last_iculos": last, "psv_rows": counts})


def quick_archive(archive: Path, scratch: Path, *, n_stays: int) -> Path:
    """A smaller .tar.gz holding the first n_stays .psv files of the archive (for --quick)."""
    out = scratch / f"training_setA_first{n_stays}.tar.gz"
    kept = 0
    with tarfile.open(archive, "r:*") as tar, tarfile.open(out, "w:gz") as small:
        for member in tar:
            if member.isfile() and member.name.endswith(".psv"):
                small.addfile(member, tar.extractfile(member))
                kept += 1
                if kept >= n_stays:
                    break
    return out


# --------------------------------------------------------------------------- metrics helpers
def clock_threshold(hours: np.ndarray, flag_rate: float) -> float:
    """The smallest clock threshold that flags at most `flag_rate` of the rows (hours >= it)."""
    values = np.sort(hours)[::-1]
    k = int(np.floor(flag_rate * len(values)))
    if k <= 0:
        return float(values[0]) + 1.0
    candidate = values[k - 1]
    # ties: hours >= candidate may flag more than k rows; step up to the next value if so
    if np.count_nonzero(hours >= candidate) > k:
        above = values[values > candidate]
        return float(above.min()) if above.size else float(candidate) + 1.0
    return float(candidate)


def utility(frame: pl.DataFrame, flagged: np.ndarray) -> float:
    from riskcast.evaluate import predictions_utility

    return predictions_utility(frame.select("encounter_id", "time", "sepsis_label").with_columns(
        pl.Series("flagged", flagged.astype(np.int8))
    ), label="sepsis_label", prediction="flagged")  # fmt: skip


# --------------------------------------------------------------------------- the run
def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from sklearn.model_selection import GroupKFold

    from riskcast.evaluate import alert_metrics, discrimination, evaluate
    from riskcast.features.build import feature_columns
    from riskcast.lake import Lake
    from riskcast.model import RiskModel
    from riskcast.pipeline.ingest import ingest_paths
    from riskcast.pipeline.training import TRAINING_DEFAULTS, baselines_of, evaluation_frame, feature_matrix

    results: dict[str, Any] = {"timings": {}}
    timings = results["timings"]
    archive = REAL_DATA
    if args.quick:
        archive = quick_archive(REAL_DATA, scratch, n_stays=args.quick_stays)
        print(f"--quick: the first {args.quick_stays} stays of the archive", flush=True)

    print(f"\n[ingest] {archive.name} ...", flush=True)
    started = time.perf_counter()
    lake = Lake(scratch / "lake")
    summary, _ = ingest_paths([archive], lake=lake, now=datetime.now(UTC))
    timings["ingest"] = time.perf_counter() - started
    print(f"  {timings['ingest']:.1f} s; rows read {summary.rows_read}; accepted {summary.accepted}; "
          f"quarantined {summary.total_quarantined}", flush=True)  # fmt: skip
    results["ingest"] = {"rows_read": summary.rows_read, "accepted": summary.accepted,
                         "quarantined": summary.total_quarantined}  # fmt: skip

    print("\n[features] feature_matrix(outcome='sepsis', horizon_hours=6, keep_after_event=True) ...", flush=True)
    started = time.perf_counter()
    frame = feature_matrix(lake, outcome="sepsis", horizon_hours=6, keep_after_event=True)
    timings["features"] = time.perf_counter() - started
    grid_rows = frame.height
    null_labels = int(frame["label"].null_count())
    label_mismatch = int((frame["label"] != frame["sepsis_label"]).fill_null(True).sum())
    print(f"  {timings['features']:.1f} s: {grid_rows:,} rows x {frame.width} columns; null labels {null_labels}; "
          f"rows where label != sepsis_label: {label_mismatch}; peak RSS {peak_rss_gib():.1f} GiB", flush=True)  # fmt: skip

    print("\n[rows] reading ICULOS ranges from the archive ...", flush=True)
    started = time.perf_counter()
    ranges = challenge_rows(archive)
    timings["read_iculos"] = time.perf_counter() - started
    frame = frame.join(ranges, on="encounter_id", how="left")
    missing_ranges = int(frame["psv_rows"].null_count())
    in_challenge = (pl.col("hours_since_admission") >= pl.col("first_iculos")) & (
        pl.col("hours_since_admission") <= pl.col("last_iculos")
    )
    dropped = frame.filter(~in_challenge)
    dropped_before = int((dropped["hours_since_admission"] < dropped["first_iculos"]).sum())
    frame = frame.filter(in_challenge)
    per_stay = frame.group_by("encounter_id").agg(pl.len().alias("kept"), pl.col("psv_rows").first())
    stays_mismatched = int((per_stay["kept"] != per_stay["psv_rows"]).sum())
    first_counts = ranges["first_iculos"].value_counts(sort=True).head(5)
    rows_info = {
        "grid_rows": grid_rows,
        "kept_rows": frame.height,
        "dropped_before_first_psv_row": dropped_before,
        "dropped_after_last_psv_row": dropped.height - dropped_before,
        "psv_rows_in_archive": int(ranges["psv_rows"].sum()),
        "stays": ranges.height,
        "stays_without_grid_match": missing_ranges,
        "stays_whose_kept_rows_differ_from_psv_rows": stays_mismatched,
        "stays_whose_first_iculos_is_not_1": int((ranges["first_iculos"] != 1).sum()),
        "first_iculos_most_common": first_counts.rows(),
        "null_labels": null_labels,
        "label_differs_from_sepsis_label": label_mismatch,
    }
    results["rows"] = rows_info
    print(f"  kept {frame.height:,} of {grid_rows:,} grid rows (dropped {dropped_before:,} before the first .psv row, "
          f"{rows_info['dropped_after_last_psv_row']:,} after the last); the archive has {rows_info['psv_rows_in_archive']:,} "
          f".psv rows in {ranges.height:,} stays; stays whose kept rows differ from their .psv rows: {stays_mismatched}; "
          f"first ICULOS != 1 in {rows_info['stays_whose_first_iculos_is_not_1']} stays", flush=True)  # fmt: skip
    del dropped, per_stay
    frame = frame.drop("first_iculos", "last_iculos", "psv_rows").sort("encounter_id", "time")
    gc.collect()

    features = feature_columns(frame.drop("label", "event_time", "sepsis_label", strict=False))
    patients = frame["patient_id"].to_numpy()
    n_septic = frame.filter(pl.col("sepsis_label") == 1)["encounter_id"].n_unique()
    results["data"] = {
        "rows": frame.height,
        "patients": int(frame["patient_id"].n_unique()),
        "encounters": int(frame["encounter_id"].n_unique()),
        "septic_encounters": int(n_septic),
        "positive_rows": int(frame["sepsis_label"].sum()),
        "features": len(features),
    }
    print(f"  {results['data']}", flush=True)

    splitter = GroupKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    folds: list[dict[str, Any]] = []
    pooled: list[pl.DataFrame] = []
    cv_started = time.perf_counter()
    for fold, (train_rows, test_rows) in enumerate(splitter.split(np.zeros(frame.height), groups=patients), start=1):
        if args.max_folds and fold > args.max_folds:
            break
        fold_started = time.perf_counter()
        train, test = frame[train_rows], frame[test_rows]
        X_train = train.select(features).to_pandas()
        model = RiskModel(
            engine="xgboost", device=args.device, threshold_rule=args.rule, threshold_target=args.target,
            random_state=args.seed, **TRAINING_DEFAULTS,
        )  # fmt: skip
        print(f"\n[fold {fold}/{args.folds}] training on {train.height:,} rows of {train['patient_id'].n_unique():,} "
              f"patients; testing on {test.height:,} rows of {test['patient_id'].n_unique():,} ...", flush=True)  # fmt: skip
        started = time.perf_counter()
        model.fit(X_train, train["label"].to_numpy(), groups=train["patient_id"].to_numpy(),
                  encounter_ids=train["encounter_id"].to_numpy())  # fmt: skip
        train_seconds = time.perf_counter() - started
        del X_train
        started = time.perf_counter()
        risk = model.predict_proba(test.select(features).to_pandas())[:, 1]
        predict_seconds = time.perf_counter() - started

        scored = evaluation_frame(test, risk).with_columns(test["hours_since_admission"].alias(CLOCK))
        flagged_model = risk >= model.threshold_
        flag_rate = float(flagged_model.mean())
        clock_cut = clock_threshold(test["hours_since_admission"].to_numpy(), flag_rate)
        baselines = {**baselines_of(scored), CLOCK: clock_cut}
        started = time.perf_counter()
        report = evaluate(scored, threshold=model.threshold_, baselines=baselines, n_boot=0, seed=args.seed,
                          outcome="sepsis")  # fmt: skip
        evaluate_seconds = time.perf_counter() - started
        u = dict(report.utility or {})
        d = report.discrimination
        fold_result = {
            "fold": fold,
            "train_rows": train.height,
            "test_rows": test.height,
            "test_patients": int(test["patient_id"].n_unique()),
            "test_septic_encounters": int(test.filter(pl.col("sepsis_label") == 1)["encounter_id"].n_unique()),
            "device": model.device_,
            "n_rounds": int(model.n_rounds_),
            "threshold": float(model.threshold_),
            "flag_rate": flag_rate,
            "clock_threshold_hours": clock_cut,
            "clock_flag_rate": float((test["hours_since_admission"].to_numpy() >= clock_cut).mean()),
            "auroc": d["risk"].auroc,
            "auprc": d["risk"].auprc,
            "auroc_news2": d[NEWS2].auroc,
            "auroc_clock": d[CLOCK].auroc,
            "utility": u,
            "alerts_per_100_patient_days": report.operating_point.alerts_per_100_patient_days,
            "row_sensitivity": report.operating_point.sensitivity,
            "ppv": report.operating_point.ppv,
            "train_seconds": train_seconds,
            "predict_seconds": predict_seconds,
            "evaluate_seconds": evaluate_seconds,
            "fold_seconds": time.perf_counter() - fold_started,
            "training_metrics": model.training_metrics_,
        }
        folds.append(fold_result)
        print(f"  {model.n_rounds_} rounds on {model.device_} in {train_seconds:.0f} s; threshold {model.threshold_:.4f} "
              f"flags {flag_rate:.1%} of rows; AUROC {d['risk'].auroc:.3f} (NEWS2 {d[NEWS2].auroc:.3f}, clock "
              f"{d[CLOCK].auroc:.3f}); utility model {u.get('risk', float('nan')):.3f}, NEWS2>=5 "
              f"{u.get(NEWS2, float('nan')):.3f}, clock >= {clock_cut:g} h {u.get(CLOCK, float('nan')):.3f}; "
              f"fold {fold_result['fold_seconds']:.0f} s; peak RSS {peak_rss_gib():.1f} GiB", flush=True)  # fmt: skip
        pooled.append(
            scored.select("encounter_id", "patient_id", "time", "label", "event_time", "sepsis_label", "risk", NEWS2, CLOCK)
            .with_columns(
                pl.Series("flag_model", flagged_model.astype(np.int8)),
                pl.Series("flag_clock", (test["hours_since_admission"].to_numpy() >= clock_cut).astype(np.int8)),
                pl.lit(fold).alias("fold"),
            )
        )  # fmt: skip
        del train, test, scored, model
        gc.collect()
    timings["cross_validation"] = time.perf_counter() - cv_started
    results["folds"] = folds

    print("\n[pooled] out-of-fold predictions: bootstrap intervals, utility, sweep ...", flush=True)
    started = time.perf_counter()
    oof = pl.concat(pooled).sort("encounter_id", "time")
    news2_flag = (oof[NEWS2].fill_null(-1.0).fill_nan(-1.0) >= 5.0).to_numpy()
    pooled_result: dict[str, Any] = {
        "rows": oof.height,
        "patients": int(oof["patient_id"].n_unique()),
        "discrimination": {
            name: discrimination(oof, score=column, n_boot=args.n_boot, seed=args.seed).to_dict()
            for name, column in (("model", "risk"), (NEWS2, NEWS2), (CLOCK, CLOCK))
        },
        "utility": {
            "model": utility(oof, oof["flag_model"].to_numpy() == 1),
            "NEWS2 >= 5": utility(oof, news2_flag),
            "clock at the model's flag rate": utility(oof, oof["flag_clock"].to_numpy() == 1),
            "flag every row": utility(oof, np.ones(oof.height, dtype=bool)),
        },
        "flag_rate": {
            "model": float(oof["flag_model"].mean()),
            "NEWS2 >= 5": float(news2_flag.mean()),
            "clock at the model's flag rate": float(oof["flag_clock"].mean()),
        },
        "alerts": {
            "model": alert_metrics(oof, score="flag_model", threshold=1.0).to_dict(),
            "NEWS2 >= 5": alert_metrics(oof, score=NEWS2, threshold=5.0).to_dict(),
            "clock at the model's flag rate": alert_metrics(oof, score="flag_clock", threshold=1.0).to_dict(),
        },
    }
    sweep = []
    risk_all = oof["risk"].to_numpy()
    clock_all = oof[CLOCK].to_numpy()
    for rate in SWEEP_FLAG_RATES:
        risk_cut = float(np.quantile(risk_all, 1 - rate))
        cut = clock_threshold(clock_all, rate)
        sweep.append({
            "flag_rate": rate,
            "model_threshold": risk_cut,
            "model_utility": utility(oof, risk_all >= risk_cut),
            "model_flag_rate": float((risk_all >= risk_cut).mean()),
            "clock_threshold_hours": cut,
            "clock_utility": utility(oof, clock_all >= cut),
            "clock_flag_rate": float((clock_all >= cut).mean()),
        })  # fmt: skip
    pooled_result["sweep"] = sweep
    timings["pooled"] = time.perf_counter() - started
    results["pooled"] = pooled_result
    return results


# --------------------------------------------------------------------------- report
def _ci(d: dict[str, Any], key: str) -> str:
    low, high = d[f"{key}_ci"] if d.get(f"{key}_ci") else (None, None)
    value = d[key]
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    print("\n" + "=" * 110)
    print_machine(results["machine"])
    data, rows, t = results["data"], results["rows"], results["timings"]
    print(f"Data: PhysioNet 2019 training set A{' (--quick subset)' if args.quick else ''}: {data['encounters']:,} stays, "
          f"{data['rows']:,} hourly rows (the challenge's rows: {rows['dropped_before_first_psv_row']:,} admission rows "
          f"before the first .psv row dropped), {data['positive_rows']:,} with SepsisLabel 1 "
          f"({data['positive_rows'] / data['rows']:.2%}), {data['septic_encounters']:,} septic stays; {data['features']} features.")  # fmt: skip
    print(f"Model: RiskModel xgboost, TRAINING_DEFAULTS, threshold_rule={args.rule!r} target {args.target}; "
          f"{args.folds}-fold GroupKFold by patient (seed {args.seed}); device {results['folds'][0]['device']}.")  # fmt: skip
    print(f"Wall time: ingest {t['ingest']:.0f} s, features {t['features']:.0f} s, cross-validation "
          f"{t['cross_validation']:.0f} s, pooled metrics {t['pooled']:.0f} s; total {t['total']:.0f} s "
          f"(shared, noisy machine).")  # fmt: skip

    print("\nPer fold (utility = PhysioNet 2019 normalised utility; clock flags the model's share of rows):")
    print("| fold | test stays | septic | rounds | threshold | flag rate | AUROC | AUPRC | AUROC NEWS2 | AUROC clock "
          "| U model | U NEWS2>=5 | U clock | train s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in results["folds"]:
        u = f["utility"]
        print(f"| {f['fold']} | {f['test_patients']:,} | {f['test_septic_encounters']:,} | {f['n_rounds']} | "
              f"{f['threshold']:.4f} | {f['flag_rate']:.1%} | {f['auroc']:.3f} | {f['auprc']:.3f} | {f['auroc_news2']:.3f} | "
              f"{f['auroc_clock']:.3f} | {u.get('risk', float('nan')):.3f} | {u.get(NEWS2, float('nan')):.3f} | "
              f"{u.get(CLOCK, float('nan')):.3f} | "
              f"{f['train_seconds']:.0f} |")  # fmt: skip

    p = results["pooled"]
    print(f"\nPooled out-of-fold ({p['rows']:,} rows, {p['patients']:,} patients; 95 % patient-bootstrap intervals):")
    print("| score | AUROC | AUPRC | flag rate | alerts / 100 patient-days | row sensitivity | PPV | utility |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    labels = (("model", "model", "model"), (NEWS2, "NEWS2 >= 5", "NEWS2 >= 5"),
              (CLOCK, "clock at the model's flag rate", "clock at the model's flag rate"))  # fmt: skip
    for disc_key, key, title in labels:
        d, a = p["discrimination"][disc_key], p["alerts"][key]
        print(f"| {title} | {_ci(d, 'auroc')} | {_ci(d, 'auprc')} | {p['flag_rate'][key]:.1%} | "
              f"{a['alerts_per_100_patient_days']:.1f} | {a['sensitivity']:.3f} | {a['ppv']:.3f} | {p['utility'][key]:.3f} |")  # fmt: skip
    print(f"| flag every row | | | 100% | | 1.000 | | {p['utility']['flag every row']:.3f} |")

    print("\nUtility by flag rate (one threshold on the pooled out-of-fold scores; chosen with the answers in view):")
    print("| flag rate | model utility | clock utility | clock threshold (h) |")
    print("|---:|---:|---:|---:|")
    for s in p["sweep"]:
        print(f"| {s['flag_rate']:.1%} | {s['model_utility']:.3f} | {s['clock_utility']:.3f} | {s['clock_threshold_hours']:g} |")
    print("=" * 110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, default=0, help="stop after this many folds (a pilot); 0 = all")
    parser.add_argument("--rule", default="sensitivity", choices=["sensitivity", "alert_budget"])
    parser.add_argument("--target", type=float, default=0.5, help="sensitivity, or alerts per 100 patient-days")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-boot", type=int, default=200, help="patient-bootstrap resamples for the pooled intervals")
    parser.add_argument("--quick", action="store_true", help="the first --quick-stays stays, 3 folds")
    parser.add_argument("--quick-stays", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=2019)
    args = parser.parse_args(argv)
    if args.quick:
        args.folds, args.n_boot = min(args.folds, 3), min(args.n_boot, 50)

    if not REAL_DATA.exists():
        print(f"PhysioNet 2019 training set A is not at {REAL_DATA}; nothing to validate (skipped).")
        return 0
    results: dict[str, Any] = {"machine": machine(), "started_at": datetime.now(UTC).isoformat(), "quick": args.quick,
                               "options": vars(args)}  # fmt: skip
    print_machine(results["machine"])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="riskcast-bench-physionet-") as scratch:
        results.update(run(args, Path(scratch)))
    results["timings"]["total"] = time.perf_counter() - started
    results["finished_at"] = datetime.now(UTC).isoformat()
    print_table(results, args)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / ("physionet_cv-quick.json" if args.quick else "physionet_cv.json")
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
