"""RiskModel: fitting, calibration, explanations, artefacts, registry and devices.

Small synthetic cohorts (200 patients x 10 hourly rows, a real signal in two of eight
features, ~15% positive rows) so every test trains in well under a second.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.special import expit
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from riskcast.errors import ModelError, RegistryError
from riskcast.model import (
    ModelRegistry,
    RiskModel,
    alert_rate_at,
    choose_device,
    gpu_available,
    load_model,
    resolve_device,
    save_model,
)
from riskcast.model.engines import RoundReporter

ENGINES = ["xgboost", "lightgbm"]
FEATURES = [f"feature_{i}" for i in range(8)]
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CARD = {
    "intended_use": "Flag adult ward patients at risk of deterioration within 24 h.",
    "data": "Synthetic test cohort.",
    "metrics": {"auroc": 0.8},
    "limits": ["Not validated on paediatric wards."],
}


def make_cohort(*, patients: int = 200, hours: int = 10, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """X (pandas, 10% missing), y (0/1) and patient ids; risk rises with feature_0 and feature_1."""
    rng = np.random.default_rng(seed)
    patient_ids = np.repeat(np.arange(seed * 10_000, seed * 10_000 + patients), hours)
    frailty = np.repeat(rng.normal(size=patients), hours)
    X = rng.normal(size=(len(patient_ids), len(FEATURES)))
    X[:, 0] += frailty
    X[rng.random(X.shape) < 0.1] = np.nan
    logit = 1.5 * np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) - 2.5
    y = (rng.random(len(patient_ids)) < expit(logit)).astype(int)
    return pd.DataFrame(X, columns=FEATURES), y, patient_ids


def quick_model(**params) -> RiskModel:
    """A RiskModel on the CPU with one thread (fast and steady on a busy 2-core machine)."""
    return RiskModel(**{"device": "cpu", "n_jobs": 1, **params})


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    return make_cohort()


@pytest.fixture(scope="module", params=ENGINES)
def fitted(request, cohort) -> RiskModel:
    X, y, groups = cohort
    return quick_model(engine=request.param).fit(X, y, groups=groups)


# ---------------------------------------------------------------- fit / predict


def test_predict_proba_is_n_by_2_probabilities_summing_to_one(fitted, cohort):
    X, _, _ = cohort
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_margin_and_predict_have_one_value_per_row(fitted, cohort):
    X, _, _ = cohort
    assert fitted.predict_margin(X).shape == (len(X),)
    assert set(np.unique(fitted.predict(X))) <= {0, 1}


def test_model_learns_the_signal(fitted):
    X, y, _ = make_cohort(seed=1)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, fitted.predict_proba(X)[:, 1]) > 0.75


def test_no_patient_is_in_two_splits(fitted, cohort):
    _, _, groups = cohort
    split = fitted.split_
    sets = [set(groups[split.train]), set(groups[split.validation]), set(groups[split.calibration])]
    assert all(sets)
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(split.train) + len(split.validation) + len(split.calibration) == len(groups)


def test_patient_split_does_not_depend_on_row_order(cohort):
    X, y, groups = cohort
    order = np.random.default_rng(5).permutation(len(y))
    first = quick_model(n_estimators=5).fit(X, y, groups=groups).split_
    shuffled = quick_model(n_estimators=5).fit(X.iloc[order], y[order], groups=groups[order]).split_
    assert set(groups[first.calibration]) == set(groups[order][shuffled.calibration])


@pytest.mark.parametrize("engine", ENGINES)
def test_fit_is_deterministic(engine, cohort):
    X, y, groups = cohort
    first = quick_model(engine=engine).fit(X, y, groups=groups).predict_proba(X)
    second = quick_model(engine=engine).fit(X, y, groups=groups).predict_proba(X)
    assert np.array_equal(first, second)


def test_polars_and_pandas_inputs_give_identical_predictions(fitted, cohort):
    X, _, _ = cohort
    assert np.array_equal(fitted.predict_proba(X), fitted.predict_proba(pl.from_pandas(X)))


def test_model_trains_on_a_polars_frame_with_nulls(cohort):
    X, y, groups = cohort
    frame = pl.from_pandas(X).with_columns(pl.col("feature_2").fill_nan(None))
    model = quick_model(engine="lightgbm", n_estimators=20).fit(frame, y, groups=groups)
    assert list(model.feature_names_in_) == FEATURES


def test_extra_columns_are_ignored_and_column_order_is_restored(fitted, cohort):
    X, _, _ = cohort
    shuffled = X[FEATURES[::-1]].assign(encounter_id="e1", patient_id="p1")
    assert np.array_equal(fitted.predict_proba(X), fitted.predict_proba(shuffled))


def test_missing_feature_columns_raise_model_error_naming_them(fitted, cohort):
    X, _, _ = cohort
    with pytest.raises(ModelError, match=r"missing 2 feature column\(s\).*'feature_3', 'feature_5'"):
        fitted.predict_proba(X.drop(columns=["feature_3", "feature_5"]))


def test_non_numeric_feature_column_raises_model_error_naming_it(fitted, cohort):
    X, _, _ = cohort
    with pytest.raises(ModelError, match=r"non-numeric.*'feature_1'"):
        fitted.predict_proba(X.assign(feature_1="high"))


def test_infinite_values_raise_model_error_naming_the_column(cohort):
    X, y, groups = cohort
    bad = X.copy()
    bad.loc[3, "feature_4"] = np.inf
    with pytest.raises(ModelError, match=r"infinite values.*'feature_4'"):
        quick_model().fit(bad, y, groups=groups)


def test_single_class_y_is_rejected(cohort):
    X, _, groups = cohort
    with pytest.raises(ModelError, match="0 positive row"):
        quick_model().fit(X, np.zeros(len(X), dtype=int), groups=groups)


def test_unfitted_model_says_so():
    with pytest.raises(ModelError, match="not fitted"):
        RiskModel().predict_proba(pd.DataFrame({"a": [1.0]}))


def test_sklearn_clone_gives_an_unfitted_copy_with_the_same_params(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "booster_")


def test_early_stopping_stops_before_the_round_limit(fitted):
    assert 1 <= fitted.n_rounds_ < fitted.n_estimators


def _prefix_margins(model: RiskModel, X: np.ndarray, rounds: int) -> np.ndarray:
    """The booster's raw margin on X using only its first `rounds` trees."""
    if model.engine == "xgboost":
        import xgboost as xgb

        return model.booster_[:rounds].predict(xgb.DMatrix(X), output_margin=True)
    return model.booster_.predict(X, num_iteration=rounds, raw_score=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_stopping_on_auroc_keeps_the_round_with_the_best_validation_auroc(engine, cohort):
    X, y, groups = cohort
    params = {"engine": engine, "n_estimators": 40, "scale_pos_weight": None, "stopping_metric": "auc"}
    stopped = quick_model(**params, early_stopping_rounds=40).fit(X, y, groups=groups)
    every_round = quick_model(**params, early_stopping_rounds=None).fit(X, y, groups=groups)
    rows = stopped.split_.validation
    X_val = X.to_numpy(dtype=np.float32)[rows]
    aurocs = [roc_auc_score(y[rows], _prefix_margins(every_round, X_val, k)) for k in range(1, 41)]
    assert every_round.n_rounds_ == 40
    assert aurocs[stopped.n_rounds_ - 1] == pytest.approx(max(aurocs), abs=1e-6)
    assert aurocs[stopped.n_rounds_ - 1] > aurocs[-1]  # stopping chose: the last round ranks worse


@pytest.mark.parametrize("engine", ENGINES)
def test_training_reports_its_progress_every_few_rounds(engine, cohort):
    X, y, groups = cohort
    heard: list[str] = []
    model = quick_model(engine=engine, n_estimators=60, early_stopping_rounds=None)
    model.fit(X, y, groups=groups, progress=heard.append)
    assert [m.split(":")[0] for m in heard] == ["boosting round 25 of at most 60", "boosting round 50 of at most 60"]
    assert all("validation logloss" in m and "best" in m for m in heard)


def test_round_reporter_keeps_the_best_value_in_the_metric_direction():
    heard: list[str] = []
    reporter = RoundReporter(heard.append, limit=10, metric="auc", every=2)
    for iteration, value in enumerate([0.70, 0.75, 0.74, 0.73]):
        reporter.record(iteration, value)
    assert heard == ["boosting round 2 of at most 10: validation auc 0.75000 (best 0.75000 at round 2)",
                     "boosting round 4 of at most 10: validation auc 0.73000 (best 0.75000 at round 2)"]
    quiet: list[str] = []
    no_validation = RoundReporter(quiet.append, limit=4, metric="logloss", every=2)
    for iteration in range(4):
        no_validation.record(iteration, None)
    assert quiet == ["boosting round 2 of at most 4", "boosting round 4 of at most 4"]


def test_an_unknown_stopping_metric_is_rejected_naming_the_choices(cohort):
    X, y, groups = cohort
    with pytest.raises(ModelError, match="stopping_metric must be one of .*'auc'"):
        quick_model(stopping_metric="brier").fit(X, y, groups=groups)


def test_class_weight_auto_is_negatives_over_positives_in_training_rows(fitted, cohort):
    _, y, _ = cohort
    y_train = y[fitted.split_.train]
    assert fitted.scale_pos_weight_ == pytest.approx((y_train == 0).sum() / (y_train == 1).sum())


# ---------------------------------------------------------------- explanations


def test_contributions_have_a_bias_column_and_sum_to_the_margin(fitted, cohort):
    X = cohort[0].iloc[:500]
    contributions = fitted.contributions(X)
    assert contributions.shape == (len(X), len(FEATURES) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), fitted.predict_margin(X), atol=1e-4)


def test_contributions_credit_the_features_that_carry_signal(fitted, cohort):
    X = cohort[0].iloc[:500]
    mean_abs = np.abs(fitted.contributions(X)[:, :-1]).mean(axis=0)
    assert set(np.argsort(mean_abs)[-2:]) == {0, 1}


# ---------------------------------------------------------------- calibration


def test_isotonic_calibration_improves_brier_on_new_patients(fitted):
    X, y, _ = make_cohort(seed=2)
    calibrated = fitted.predict_proba(X)[:, 1]
    uncalibrated = expit(fitted.predict_margin(X))  # inflated by the class weights
    assert np.mean((calibrated - y) ** 2) < np.mean((uncalibrated - y) ** 2)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrated_risk_is_monotone_in_the_margin(method, cohort):
    X, y, groups = cohort
    model = quick_model(calibration=method).fit(X, y, groups=groups)
    order = np.argsort(model.predict_margin(X), kind="stable")
    assert np.all(np.diff(model.predict_proba(X)[order, 1]) >= 0)


def test_calibrated_mean_risk_is_close_to_the_event_rate(fitted):
    X, y, _ = make_cohort(seed=3)
    assert fitted.predict_proba(X)[:, 1].mean() == pytest.approx(y.mean(), abs=0.04)


# ---------------------------------------------------------------- operating point


def test_fit_chooses_the_sensitivity_threshold_on_calibration_patients(fitted, cohort):
    X, y, _ = cohort
    rows = fitted.split_.calibration
    point = fitted.operating_point_
    risk = fitted.predict_proba(X.iloc[rows])[:, 1]
    assert point.rule == "sensitivity" and point.n_rows == len(rows)
    assert np.mean(risk[y[rows] == 1] >= point.threshold) >= 0.8
    assert fitted.threshold_ == point.threshold


def test_fit_with_alert_budget_meets_the_budget_on_calibration_patients(cohort):
    X, y, groups = cohort
    encounters = groups * 10 + 1  # one encounter per patient, rows already in time order
    model = quick_model(threshold_rule="alert_budget", threshold_target=20.0).fit(
        X, y, groups=groups, encounter_ids=encounters
    )
    rows = model.split_.calibration
    rate = alert_rate_at(
        model.predict_proba(X.iloc[rows])[:, 1], model.threshold_, encounter_ids=encounters[rows]
    )
    assert model.operating_point_.rule == "alert_budget"
    assert 0 < rate <= 20.0
    assert rate == pytest.approx(model.operating_point_.achieved)


def test_alert_budget_rule_without_encounter_ids_is_an_error(cohort):
    X, y, groups = cohort
    with pytest.raises(ModelError, match="needs encounter_ids"):
        quick_model(threshold_rule="alert_budget").fit(X, y, groups=groups)


# ---------------------------------------------------------------- search


def test_search_refits_with_the_candidate_of_lowest_validation_loss(cohort):
    X, y, groups = cohort
    model = quick_model(engine="lightgbm", n_estimators=100).search(X, y, groups=groups, n_iter=2)
    best = min(model.search_trials_, key=lambda trial: trial.validation_log_loss)
    assert len(model.search_trials_) == 3
    assert {k: model.get_params()[k] for k in best.params} == best.params
    assert model.training_metrics_["validation_log_loss"] == pytest.approx(best.validation_log_loss)


# ---------------------------------------------------------------- artefacts


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("calibration", ["isotonic", "platt"])
def test_reloaded_model_predicts_bit_identical_probabilities(engine, calibration, cohort, tmp_path):
    X, y, groups = cohort
    model = quick_model(engine=engine, calibration=calibration).fit(X, y, groups=groups)
    save_model(model, tmp_path / "model", metadata=CARD)
    reloaded = load_model(tmp_path / "model")
    assert np.array_equal(model.predict_proba(X), reloaded.predict_proba(X))
    assert np.array_equal(model.contributions(X.iloc[:200]), reloaded.contributions(X.iloc[:200]))
    assert reloaded.threshold_ == model.threshold_
    assert reloaded.operating_point_ == model.operating_point_


def test_artefact_holds_native_booster_and_plain_files_only(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "model", metadata=CARD)
    booster = "booster.ubj" if fitted.engine == "xgboost" else "booster.txt"
    names = {p.name for p in path.iterdir()}
    assert names == {
        booster,
        "calibrator.json",
        "features.json",
        "config.json",
        "metrics.json",
        "fingerprint.json",
        "model_card.md",
        "model_card.json",
    }
    for file in path.iterdir():
        assert not file.read_bytes().startswith(b"\x80"), f"{file.name} looks like a pickle"
    assert not list(path.rglob("*.pkl")) and not list(path.rglob("*.pickle"))


def test_artefact_records_features_threshold_versions_and_fingerprint(fitted, cohort, tmp_path):
    _, y, groups = cohort
    path = save_model(fitted, tmp_path / "model", metadata=CARD)
    config = json.loads((path / "config.json").read_text())
    fingerprint = json.loads((path / "fingerprint.json").read_text())
    assert json.loads((path / "features.json").read_text())["names"] == FEATURES
    assert config["engine"] == fitted.engine and config["device"] == "cpu"
    assert config["threshold"] == fitted.threshold_
    assert config["operating_point"]["rule"] == "sensitivity"
    assert {"xgboost", "lightgbm"} <= set(config["versions"])
    assert fingerprint["rows"] == len(y) and fingerprint["patients"] == len(np.unique(groups))
    assert fingerprint["positives"] == int(y.sum()) and len(fingerprint["x_sha256"]) == 64


def test_calibrator_is_saved_as_plain_numbers(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "model", metadata=CARD)
    calibrator = json.loads((path / "calibrator.json").read_text())
    assert calibrator["method"] == "isotonic"
    assert all(isinstance(v, float) for v in calibrator["x_thresholds"] + calibrator["y_thresholds"])


def test_model_card_is_filled_from_metadata(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "model", metadata={**CARD, "trained_by": "nightly job"})
    card = json.loads((path / "model_card.json").read_text())
    markdown = (path / "model_card.md").read_text()
    assert card["intended_use"] == CARD["intended_use"]
    assert card["metrics"]["evaluation"] == {"auroc": 0.8}
    assert card["other"] == {"trained_by": "nightly job"}
    assert "Not validated on paediatric wards." in markdown and "## Limits" in markdown


def test_fingerprint_changes_when_one_label_changes(cohort):
    X, y, groups = cohort
    flipped = y.copy()
    flipped[0] = 1 - flipped[0]
    first = quick_model(n_estimators=5).fit(X, y, groups=groups).fingerprint_
    second = quick_model(n_estimators=5).fit(X, flipped, groups=groups).fingerprint_
    assert first.x_sha256 == second.x_sha256 and first.y_sha256 != second.y_sha256


def test_save_refuses_to_overwrite_an_existing_model(fitted, tmp_path):
    save_model(fitted, tmp_path / "model", metadata=CARD)
    with pytest.raises(ModelError, match="refusing to overwrite"):
        save_model(fitted, tmp_path / "model", metadata=CARD)


def test_load_names_the_missing_files(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "model", metadata=CARD)
    (path / "calibrator.json").unlink()
    with pytest.raises(ModelError, match="missing calibrator.json"):
        load_model(path)


# ---------------------------------------------------------------- registry


def test_registry_has_no_champion_until_one_is_promoted(fitted, tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    registry.register(fitted, metadata=CARD, now=NOW)
    assert registry.champion() is None
    with pytest.raises(RegistryError, match=r"no champion model yet: run `riskcast train` first"):
        registry.load()


def test_registry_promote_changes_the_champion_and_records_why(fitted, cohort, tmp_path):
    X, _, _ = cohort
    registry = ModelRegistry(tmp_path / "models")
    first = registry.register(fitted, metadata=CARD, now=NOW)
    second = registry.register(fitted, metadata=CARD, now=NOW + timedelta(days=7))
    registry.promote(first, by="alice", reason="first model", now=NOW)
    registry.promote(second, by="bob", reason="better calibration", now=NOW + timedelta(days=8))
    assert registry.champion() == second
    assert [v.is_champion for v in registry.versions()] == [False, True]
    last = registry.events()[-1]
    assert (last["by"], last["reason"], last["previous"]) == ("bob", "better calibration", first)
    assert np.array_equal(registry.load().predict_proba(X), fitted.predict_proba(X))


def test_registry_version_names_count_up_with_time_and_engine(fitted, tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    first = registry.register(fitted, metadata=CARD, now=NOW)
    second = registry.register(fitted, metadata=CARD, now=datetime(2026, 2, 1, 9, 30, tzinfo=UTC))
    assert first == f"v0001-20260115T1200-{fitted.engine}"
    assert second == f"v0002-20260201T0930-{fitted.engine}"
    assert [v.version for v in registry.versions()] == [first, second]


def test_registry_leaves_only_versions_and_its_state_file(fitted, tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    version = registry.register(fitted, metadata=CARD, now=NOW)
    assert {p.name for p in (tmp_path / "models").iterdir()} == {version, "registry.json", ".registry.lock"}


def test_registry_rejects_unknown_versions_and_naive_times(fitted, tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(RegistryError, match="unknown model version 'v0009"):
        registry.promote("v0009-20260101T0000-xgboost", by="alice", reason="typo", now=NOW)
    with pytest.raises(RegistryError, match="timezone-aware"):
        registry.register(fitted, metadata=CARD, now=datetime(2026, 1, 15, 12, 0))


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize("engine", ENGINES)
def test_auto_device_is_cuda_exactly_when_a_gpu_is_usable(engine):
    expected = "cuda" if gpu_available(engine) else "cpu"
    assert resolve_device("auto", engine) == expected
    assert engine in choose_device("auto", engine=engine).message


def test_cpu_device_is_always_honoured(fitted):
    assert resolve_device("cpu", "xgboost") == "cpu"
    assert fitted.device_ == "cpu"


@pytest.mark.parametrize("engine", ENGINES)
def test_explicit_cuda_without_a_gpu_is_an_error(engine):
    if gpu_available(engine):
        pytest.skip(f"{engine} has a usable GPU here")
    with pytest.raises(ModelError, match="device='cuda' was requested"):
        resolve_device("cuda", engine)


def test_unknown_device_is_rejected():
    with pytest.raises(ModelError, match="device must be one of"):
        resolve_device("tpu", "xgboost")


@pytest.mark.gpu
def test_cpu_and_cuda_predictions_agree(cohort, tmp_path):
    if not gpu_available("xgboost"):
        pytest.skip("no CUDA GPU usable by xgboost")
    X, y, groups = cohort
    model = quick_model(engine="xgboost", device="cuda").fit(X, y, groups=groups)
    assert model.device_ == "cuda"
    save_model(model, tmp_path / "model", metadata=CARD)
    on_cpu = load_model(tmp_path / "model")
    on_gpu = load_model(tmp_path / "model", device="cuda")
    np.testing.assert_allclose(on_cpu.predict_proba(X), on_gpu.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(on_cpu.contributions(X), on_gpu.contributions(X), atol=1e-4)


@pytest.mark.gpu
def test_gpu_and_cpu_training_rank_patients_alike(cohort):
    if not gpu_available("xgboost"):
        pytest.skip("no CUDA GPU usable by xgboost")
    X, y, groups = cohort
    test_X, test_y, _ = make_cohort(seed=1)
    from sklearn.metrics import roc_auc_score

    cpu = quick_model(engine="xgboost").fit(X, y, groups=groups)
    gpu = quick_model(engine="xgboost", device="cuda").fit(X, y, groups=groups)
    auc = [roc_auc_score(test_y, m.predict_proba(test_X)[:, 1]) for m in (cpu, gpu)]
    assert abs(auc[0] - auc[1]) < 0.02
