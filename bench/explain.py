"""Benchmark: SHAP contributions from the boosters themselves against shap.TreeExplainer.

riskcast explains a score with the booster's own TreeSHAP (RiskModel.contributions: xgboost
`Booster.predict(pred_contribs=True)`, LightGBM `Booster.predict(pred_contrib=True)`), which
returns (n, p + 1) values on the margin (log-odds) scale, the last column the bias. This
script checks that `shap.TreeExplainer(booster)` gives the same numbers on the same model and
rows, and which is faster, for both engines:

- "native": RiskModel.contributions(X) (the DataFrame -> float64 matrix conversion included);
  "booster only" is the engine's contributions call on a ready float64 matrix.
- "shap": shap.TreeExplainer(booster) (construction timed apart: it parses every tree in
  Python) then .shap_values(X) with its default additivity check. With the default
  feature_perturbation="tree_path_dependent" and no background data, shap 0.51 hands xgboost
  and LightGBM models straight back to the booster's own pred_contribs, so the values should
  be identical and the difference is shap's overhead.
- "shap C++ (own)": shap's own TreeSHAP implementation (`_cext.dense_tree_shap`), which
  shap only uses for these boosters when the shortcut above is off. It is reached here by
  setting the parsed model's `model_type` to "internal" (a private switch, so this may need
  updating with shap): an independent implementation of the same algorithm, which makes the
  equality check meaningful.

Compared: max |shap - native| over the feature columns, shap's expected_value against the
native bias column (constant across rows), and each method's additivity (features + bias
against RiskModel.predict_margin). Models: RiskModel with riskcast.pipeline.training's
TRAINING_DEFAULTS, trained on a synthetic cohort's labelled feature matrix (deterioration,
12 h), once with early stopping as in production and once with a fixed 400 rounds (a larger
model: TreeSHAP's cost grows with trees x leaves x depth). Rows: --rows (default 5,000) rows
of the same matrix, every real feature column.

    python bench/explain.py           # full run (about 25 min on a busy 2-core machine, mostly training)
    python bench/explain.py --quick   # small cohort, 1,000 rows, one timing each

Figures: a table on stdout and bench/out/explain.json. Timings are medians of 3 on a shared,
noisy machine; CPU seconds are printed beside wall seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl
import benchkit
from benchkit import print_machine, timed

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
T = TypeVar("T")


# --------------------------------------------------------------------------- environment
# --------------------------------------------------------------------------- data and models
def machine() -> dict[str, Any]:
    """The machine and the versions of the libraries this benchmark exercises."""
    return benchkit.machine(("riskcast", "numpy", "pandas", "polars", "xgboost", "lightgbm", "shap"))


def labelled_matrix(scratch: Path, *, n_encounters: int, seed: int) -> pl.DataFrame:
    """The labelled feature matrix (deterioration, 12 h) of a synthetic cohort, censored rows dropped."""
    from riskcast import synth
    from riskcast.lake import Lake
    from riskcast.pipeline.ingest import ingest_paths
    from riskcast.pipeline.training import feature_matrix

    synth.write_cohort(synth.generate_cohort(n_encounters, seed=seed), scratch / "files")
    lake = Lake(scratch / "lake")
    ingest_paths([scratch / "files"], lake=lake, now=synth.DEFAULT_NOW)
    return feature_matrix(lake, outcome="deterioration", horizon_hours=12.0).filter(pl.col("label").is_not_null())


def train(frame: pl.DataFrame, features: list[str], *, engine: str, fixed_rounds: int | None, seed: int) -> Any:
    """RiskModel with the training defaults; fixed_rounds turns early stopping off."""
    from riskcast.model import RiskModel
    from riskcast.pipeline.training import TRAINING_DEFAULTS

    extra: dict[str, Any] = {"n_estimators": fixed_rounds, "early_stopping_rounds": None} if fixed_rounds else {}
    model = RiskModel(engine=engine, device="cpu", threshold_rule="none", random_state=seed, **TRAINING_DEFAULTS, **extra)
    return model.fit(frame.select(features).to_pandas(), frame["label"].to_numpy(), groups=frame["patient_id"].to_numpy())


def tree_shape(model: Any) -> dict[str, Any]:
    """Trees, leaves per tree and depth of a fitted RiskModel's booster."""
    if model.engine == "xgboost":
        trees = model.booster_.trees_to_dataframe()
        leaves = trees[trees["Feature"] == "Leaf"].groupby("Tree").size()
        return {"trees": int(trees["Tree"].nunique()), "mean_leaves": float(leaves.mean())}
    dump = model.booster_.dump_model()["tree_info"]
    return {"trees": len(dump), "mean_leaves": float(np.mean([t["num_leaves"] for t in dump]))}


# --------------------------------------------------------------------------- comparison
def compare_one(model: Any, X: Any, *, repeats: int, own_rows: int) -> dict[str, Any]:
    """Native contributions vs shap.TreeExplainer (shortcut and shap's own C++) on the same rows."""
    import shap

    X_np = np.ascontiguousarray(X.to_numpy(dtype=np.float64))
    margin = model.predict_margin(X)
    native_time, native = timed(lambda: model.contributions(X), repeats=repeats)
    from riskcast.model.engines import engine_for

    booster_time, _ = timed(lambda: engine_for(model.engine).contributions(model.booster_, X_np), repeats=repeats)
    p = native.shape[1] - 1
    bias = native[:, p]
    out: dict[str, Any] = {
        "rows": int(X_np.shape[0]),
        "features": p,
        **tree_shape(model),
        "native": {
            **native_time,
            "bias_min": float(bias.min()),
            "bias_max": float(bias.max()),
            "additivity_max_abs": float(np.abs(native.sum(axis=1) - margin).max()),
        },
        "booster_only": booster_time,
    }

    def explainer() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return shap.TreeExplainer(model.booster_)

    build_time, tree_explainer = timed(explainer, repeats=repeats)

    def shap_values() -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LightGBM binary: "output has changed to a list of ndarray"
            return np.asarray(tree_explainer.shap_values(X_np))

    values_time, values = timed(shap_values, repeats=repeats)
    expected = float(np.ravel(tree_explainer.expected_value)[0])
    out["shap"] = {
        "construct": build_time,
        "shap_values": values_time,
        "seconds": build_time["seconds"] + values_time["seconds"],
        "shape": list(values.shape),
        "max_abs_diff_features": float(np.abs(values - native[:, :p]).max()),
        "expected_value": expected,
        "expected_minus_native_bias": float(np.abs(expected - bias).max()),
        "additivity_max_abs": float(np.abs(values.sum(axis=1) + expected - margin).max()),
    }

    # shap's own TreeSHAP in C++ (the shortcut off): an independent implementation.
    own = explainer()
    own.model.model_type = "internal"
    rows = min(own_rows, X_np.shape[0])
    subset = X_np[:rows]

    def own_values() -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(own.shap_values(subset, check_additivity=False))

    own_time, own_result = timed(own_values, repeats=repeats)
    own_expected = float(np.ravel(own.expected_value)[0])
    gap = margin[:rows] - own_result.sum(axis=1)  # what the bias would have to be for additivity
    out["shap_own_cpp"] = {
        **own_time,
        "rows": rows,
        "seconds_per_1000_rows": own_time["seconds"] / rows * 1000,
        "max_abs_diff_features": float(np.abs(own_result - native[:rows, :p]).max()),
        "expected_value": own_expected,
        "expected_minus_native_bias": float(np.abs(own_expected - bias[:rows]).max()),
        "additivity_max_abs_with_expected_value": float(np.abs(gap - own_expected).max()),
        "additivity_max_abs_with_native_bias": float(np.abs(gap - bias[:rows]).max()),
    }
    out["native_seconds_per_1000_rows"] = native_time["seconds"] / X_np.shape[0] * 1000
    out["speedup_native_vs_shap"] = out["shap"]["seconds"] / native_time["seconds"]
    out["speedup_native_vs_shap_own_cpp"] = out["shap_own_cpp"]["seconds_per_1000_rows"] / out["native_seconds_per_1000_rows"]
    return out


def print_table(results: dict[str, Any]) -> None:
    print("\n" + "=" * 110)
    print_machine(results["machine"])
    print(f"Data: {results['data']['matrix_rows']:,} labelled rows of a synthetic cohort of "
          f"{results['data']['encounters']:,} encounters; explained {results['data']['rows']:,} rows x "
          f"{results['data']['features']} features. Timings: median of {results['repeats']} on a shared, noisy machine.")  # fmt: skip
    print("\nValues (margin / log-odds scale; 'bias' is the native last column, constant across rows):")
    print(f"| {'model':<28} | {'trees':>5} | {'leaves':>6} | {'shap vs native':>14} | {'E[f] - bias':>11} | "
          f"{'shap C++ own vs native':>22} | {'own E[f] - bias':>15} | {'own additivity':>14} | {'native additivity':>17} |")  # fmt: skip
    print(f"|{'-' * 30}|{'-' * 6}:|{'-' * 7}:|{'-' * 15}:|{'-' * 12}:|{'-' * 23}:|{'-' * 16}:|{'-' * 15}:|{'-' * 18}:|")
    for name, r in results["models"].items():
        print(f"| {name:<28} | {r['trees']:>5} | {r['mean_leaves']:>6.1f} | {r['shap']['max_abs_diff_features']:>14.1e} | "
              f"{r['shap']['expected_minus_native_bias']:>11.1e} | {r['shap_own_cpp']['max_abs_diff_features']:>22.1e} | "
              f"{r['shap_own_cpp']['expected_minus_native_bias']:>15.1e} | "
              f"{r['shap_own_cpp']['additivity_max_abs_with_expected_value']:>14.1e} | {r['native']['additivity_max_abs']:>17.1e} |")  # fmt: skip
    print("\nSpeed (wall seconds, CPU seconds in brackets):")
    print(f"| {'model':<28} | {'rows':>5} | {'native':>14} | {'booster only':>12} | {'TreeExplainer()':>15} | {'.shap_values':>14} | "
          f"{'shap total':>10} | {'native x faster':>15} | {'shap C++ own /1k rows':>21} | {'native /1k rows':>15} |")  # fmt: skip
    print(f"|{'-' * 30}|{'-' * 6}:|{'-' * 15}:|{'-' * 13}:|{'-' * 16}:|{'-' * 15}:|{'-' * 11}:|{'-' * 16}:|{'-' * 22}:|{'-' * 16}:|")
    for name, r in results["models"].items():
        n, s, o = r["native"], r["shap"], r["shap_own_cpp"]
        print(f"| {name:<28} | {r['rows']:>5} | {n['seconds']:>6.3f} ({n['cpu_seconds']:.2f}) | {r['booster_only']['seconds']:>12.3f} | "
              f"{s['construct']['seconds']:>15.3f} | {s['shap_values']['seconds']:>6.3f} ({s['shap_values']['cpu_seconds']:.2f}) | "
              f"{s['seconds']:>10.3f} | {r['speedup_native_vs_shap']:>14.1f}x | {o['seconds_per_1000_rows']:>21.3f} | "
              f"{r['native_seconds_per_1000_rows']:>15.3f} |")  # fmt: skip
    print("=" * 110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000, help="rows to explain (default 5000)")
    parser.add_argument("--encounters", type=int, default=3_000, help="synthetic cohort for training (default 3000)")
    parser.add_argument("--fixed-rounds", type=int, default=400, help="rounds of the larger, fixed-size models")
    parser.add_argument("--own-rows", type=int, default=1_000, help="rows for shap's own (slower) C++ TreeSHAP")
    parser.add_argument("--quick", action="store_true", help="small cohort, 1000 rows, one timing each")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.encounters, args.fixed_rounds, args.own_rows = 1_000, 600, 100, 300
    repeats = 1 if args.quick else 3

    from riskcast.features.build import feature_columns

    results: dict[str, Any] = {"machine": machine(), "started_at": datetime.now(UTC).isoformat(), "quick": args.quick,
                               "repeats": repeats}  # fmt: skip
    print_machine(results["machine"])
    with tempfile.TemporaryDirectory(prefix="riskcast-bench-explain-") as scratch:
        print(f"\nbuilding the labelled feature matrix of {args.encounters} synthetic encounters ...", flush=True)
        started = time.perf_counter()
        frame = labelled_matrix(Path(scratch), n_encounters=args.encounters, seed=args.seed)
        print(f"  {frame.height:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    features = feature_columns(frame.drop("label", "event_time", "sepsis_label", strict=False))
    rows = frame.sample(n=min(args.rows, frame.height), seed=args.seed)
    X = rows.select(features).to_pandas()
    results["data"] = {"encounters": args.encounters, "matrix_rows": frame.height, "rows": len(X), "features": len(features)}
    results["models"] = {}
    for engine in ("xgboost", "lightgbm"):
        for fixed in (None, args.fixed_rounds):
            name = f"{engine}, {'early stopping' if fixed is None else f'{fixed} rounds fixed'}"
            print(f"\n[{name}] training ...", flush=True)
            started = time.perf_counter()
            model = train(frame, features, engine=engine, fixed_rounds=fixed, seed=args.seed)
            print(f"  {model.n_rounds_} rounds in {time.perf_counter() - started:.1f} s; comparing ...", flush=True)
            result = compare_one(model, X, repeats=repeats, own_rows=args.own_rows)
            results["models"][name] = result
            print(f"  native {result['native']['seconds']:.3f} s, shap {result['shap']['seconds']:.3f} s "
                  f"(construct {result['shap']['construct']['seconds']:.3f}), max |diff| "
                  f"{result['shap']['max_abs_diff_features']:.1e}; shap's own C++ on {result['shap_own_cpp']['rows']} rows "
                  f"{result['shap_own_cpp']['seconds']:.3f} s, max |diff| {result['shap_own_cpp']['max_abs_diff_features']:.1e}",
                  flush=True)  # fmt: skip
    results["finished_at"] = datetime.now(UTC).isoformat()
    print_table(results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / ("explain-quick.json" if args.quick else "explain.json")
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
