"""The data scientists' read models (riskcast.read_models) and the model and
fairness pages' role checks, without a browser.

A small home is built in the test: a tiny registered model (trained on random numbers; its
card carries training-like metadata and, for the champion, a held-out evaluation), the
evaluation's export and the trade-off written as `riskcast train` writes them, hourly scores in the store against outcomes in the lake, and
fairness audits whose JSON comes from riskcast.fairness.audit on a hand-made frame, stored
as riskcast.pipeline.audit stores them. Times are around 2026-01-15 12:00 UTC (a Thursday).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score
from sqlalchemy import insert

from riskcast import read_models
from riskcast.config import Settings
from riskcast.contracts import QUARANTINE_SCHEMA
from riskcast.dashboards import auth
from riskcast.dashboards.app import create_app
from riskcast.errors import EvaluationError, RegistryError
from riskcast.evaluate import AlertMetrics, BaselineComparison, CalibrationResult, Discrimination, EvaluationReport
from riskcast.fairness import Gate, GateConfig, audit
from riskcast.lake import LAKE_SCHEMAS, Lake
from riskcast.model import ModelRegistry, RiskModel
from riskcast.pipeline import performance
from riskcast.pipeline.reports import HeldOutEvaluation, PromiseCheck, ReportStore, TradeoffCurve
from riskcast.store import finish_run, open_store, start_run, write_scores
from riskcast.store.tables import audits

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
WEEK_A = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: the week before NOW's
WEEK_B = datetime(2026, 1, 12, tzinfo=UTC)  # NOW's week
UTC_US = pl.Datetime("us", "UTC")
PASSWORD = "correct horse battery"
HORIZON = 12.0


def _at(day: int, hour: float) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC) + timedelta(hours=hour)


# ------------------------------------------------------------------------ scores and outcomes

# encounter, patient, discharge, (event time, type) or None
STAYS = [
    ("E1", "P1", _at(7, 12), (_at(6, 20), "icu_transfer")),  # week A: deteriorates at 20:00 on the 6th
    ("E2", "P2", _at(8, 0), None),  # week A: goes home
    ("E3", "P3", None, None),  # week B: still in hospital
    ("E5", "P5", _at(16, 9), None),  # week B: the lake already holds a discharge after NOW
    ("E6", "P6", None, (_at(15, 14), "death")),  # week B: an event after NOW
]
# encounter, scored_at, risk (None: insufficient data)
SCORES = [
    ("E1", _at(6, 0), 0.10), ("E1", _at(6, 6), 0.20), ("E1", _at(6, 12), 0.60), ("E1", _at(6, 18), 0.70),
    ("E1", _at(6, 21), 0.90),  # after the event: not labelled
    ("E2", _at(6, 0), 0.05), ("E2", _at(6, 6), 0.30), ("E2", _at(6, 12), 0.15), ("E2", _at(6, 18), None),
    ("E3", _at(12, 0), 0.30), ("E3", _at(15, 6), 0.40),
    ("E5", _at(15, 6), 0.20),
    ("E6", _at(15, 6), 0.80),
]  # fmt: skip


def _stay_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    encounters = pl.DataFrame(
        [(e, p, _at(1, 0), discharge, "north-medical-1", "north") for e, p, discharge, _ in STAYS],
        schema=LAKE_SCHEMAS["encounters"], orient="row",
    )  # fmt: skip
    outcomes = pl.DataFrame(
        [(e, event[0], event[1]) for e, _, _, event in STAYS if event is not None], schema=LAKE_SCHEMAS["outcomes"], orient="row"
    )
    return encounters, outcomes


def _scored() -> pl.DataFrame:
    patient = {e: p for e, p, _, _ in STAYS}
    return pl.DataFrame(
        [(e, patient[e], t, r) for e, t, r in SCORES],
        schema={"encounter_id": pl.String, "patient_id": pl.String, "scored_at": UTC_US, "risk": pl.Float64}, orient="row",
    )  # fmt: skip


def weekly(**options: Any) -> pl.DataFrame:
    encounters, outcomes = _stay_frames()
    arguments = {"outcome": "deterioration", "horizon_hours": HORIZON, "now": NOW, "n_boot": 20} | options
    return performance.weekly_performance(_scored(), outcomes, encounters, **arguments)


def week(frame: pl.DataFrame, start: datetime) -> dict[str, Any]:
    return frame.filter(pl.col("week_start") == start).row(0, named=True)


# ----------------------------------------------------------------------------------- the home

CARD_METADATA = {
    "intended_use": "Flag ward patients at high risk of deterioration, as an aid to judgement.",
    "data": {"outcome": "deterioration", "horizon_hours": HORIZON, "rows": 2400, "patients": 60, "test_patients": 12,
             "split": "random by patient"},
    "metrics": {},
    "limits": ["Validated at one site only.", "Stale vitals give 'insufficient data', not a score."],
    "top_variables": [{"name": "resp_rate", "mean_abs_contribution": 0.3}, {"name": "news2", "mean_abs_contribution": 0.2}],
    "outcome": "deterioration",
    "horizon_hours": HORIZON,
}  # fmt: skip


def _register(registry: ModelRegistry, *, at: datetime, promote: bool, metadata: dict[str, Any] = CARD_METADATA) -> str:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    y = (X["a"] + rng.normal(size=400) > 1.2).astype(int).to_numpy()
    model = RiskModel(device="cpu", n_jobs=1, n_estimators=10).fit(X, y, groups=np.repeat(np.arange(40), 10))
    version = registry.register(model, metadata=metadata, now=at)
    if promote:
        registry.promote(version, by="tests", reason="fixture", now=at)
    return version


def _interval(value: float, width: float = 0.05) -> tuple[float, float]:
    return (value - width, value + width)


def _discrimination(score: str, auroc: float, auprc: float) -> Discrimination:
    return Discrimination(score=score, label="label", auroc=auroc, auroc_ci=_interval(auroc), auprc=auprc,
                          auprc_ci=_interval(auprc), n_rows=1000, n_positive=20, prevalence=0.02, n_missing_score=0,
                          cluster="patient_id", n_clusters=12, n_boot=200, n_boot_valid=200)  # fmt: skip


def _alert_metrics(score: str, threshold: float, rate: float, sensitivity: float, ppv: float) -> AlertMetrics:
    return AlertMetrics(
        score=score, threshold=threshold, detection_window_hours=48.0, n_rows=1000, n_encounters=14, patient_days=41.7,
        n_flagged_rows=50, flag_rate=0.05, true_positives=11, false_positives=39, true_negatives=941, false_negatives=9,
        sensitivity=sensitivity, specificity=0.96, ppv=ppv, npv=0.99, n_alert_episodes=6, alerts_per_100_patient_days=rate,
        alert_ppv=0.3, n_event_encounters=5, n_event_encounters_evaluable=5, n_event_encounters_detected=4,
        encounter_sensitivity=0.8, median_lead_time_hours=9.5, nonevent_encounter_flag_rate=0.1, promise=f"{score} promise",
    )  # fmt: skip


RELIABILITY = pl.DataFrame(
    [(1, 0.05, 0.04, 100, 0.03, 0.07), (0, 0.01, 0.0, 800, 0.0, 0.03), (2, 0.30, 0.35, 100, 0.07, 0.9)],
    schema=["bin", "mean_predicted", "observed_rate", "count", "min_predicted", "max_predicted"], orient="row",
)
REPORT = EvaluationReport(
    outcome="deterioration", score="risk", label="label", threshold=0.2, detection_window_hours=48.0, n_rows=1000,
    n_encounters=14, n_patients=12, n_positive=20, prevalence=0.02, patient_days=41.7,
    discrimination={
        "risk": _discrimination("risk", 0.85, 0.30), "NEWS2": _discrimination("NEWS2", 0.75, 0.20),
        "NEWS2 (high)": _discrimination("NEWS2 (high)", 0.75, 0.20), "qSOFA": _discrimination("qSOFA", 0.65, 0.08),
        "clock only": _discrimination("clock only", 0.55, 0.03),
        "physiology only": _discrimination("physiology only", 0.82, 0.25),
    },
    calibration=CalibrationResult(score="risk", label="label", n_rows=1000, n_bins=3, brier=0.02, ece=0.004,
                                  calibration_in_the_large=-0.001, mean_predicted=0.019, observed_rate=0.02,
                                  reliability=RELIABILITY),
    operating_point=_alert_metrics("risk", 0.2, 14.0, 0.55, 0.12),
    comparisons={
        "NEWS2": BaselineComparison(baseline="NEWS2", baseline_threshold=5.0, baseline_metrics=_alert_metrics("NEWS2", 5.0, 16.0, 0.4, 0.08),
                                    score="risk", model_threshold=0.18, model_metrics=_alert_metrics("risk", 0.18, 15.5, 0.58, 0.11)),
        "clock only": BaselineComparison(baseline="clock only", baseline_threshold=0.1, score="risk", model_threshold=0.2,
                                         baseline_metrics=_alert_metrics("clock only", 0.1, 14.0, 0.2, 0.02),
                                         model_metrics=_alert_metrics("risk", 0.2, 14.0, 0.55, 0.12)),
    },
    utility=None,
)  # fmt: skip
PROMISE_CHECK = {
    "promise": "risk >= 0.2: at most 15 alerts per 100 patient-days; PPV at least 10%",
    "promised_alerts_per_100_patient_days": 15.0, "observed_alerts_per_100_patient_days": 14.0,
    "promised_ppv": 0.10, "observed_ppv": 0.12, "burden_kept": True, "ppv_kept": True, "kept": True,
}  # fmt: skip
EVALUATED_CARD = CARD_METADATA | {"metrics": REPORT.to_dict(), "promise_check_held_out": PROMISE_CHECK}
"""The champion's card, as `riskcast train` fills it: the held-out evaluation and its promise check."""
TRADEOFF = {
    "model": [
        {"threshold": 0.1, "alerts_per_100_patient_days": 30.0, "sensitivity": 0.8, "ppv": 0.05, "encounter_sensitivity": 0.9},
        {"threshold": 0.4, "alerts_per_100_patient_days": 5.0, "sensitivity": 0.3, "ppv": 0.3, "encounter_sensitivity": 0.5},
        {"threshold": 0.2, "alerts_per_100_patient_days": 14.0, "sensitivity": 0.55, "ppv": 0.12, "encounter_sensitivity": None},
    ],
    "news2": [{"threshold": t} | _alert_metrics("NEWS2", t, r, s, p).to_dict()
              for t, r, s, p in ((3.0, 40.0, 0.6, 0.03), (5.0, 16.0, 0.4, 0.08), (7.0, 6.0, 0.2, 0.2))],
}  # fmt: skip


def audit_frame() -> pl.DataFrame:
    """Hourly rows of 60 patients: 36 women, 24 men, and 6 patients whose sex is "other" (too
    few to report). Every fifth patient deteriorates (12 positive hours); women's events are
    flagged, other events only for every tenth patient (half the men's)."""
    rows = []
    for index in range(66):
        sex = "female" if index < 36 else ("male" if index < 60 else "other")
        event = index % 5 == 0
        flagged = event and (sex == "female" or index % 10 == 0)
        for hour in range(24):
            positive = event and hour >= 12
            rows.append((f"E{index}", f"P{index}", _at(10, hour), 0.9 if (positive and flagged) else 0.05,
                         int(positive), _at(11, 0) if event else None, sex, "north"))  # fmt: skip
    return pl.DataFrame(
        rows,
        schema={"encounter_id": pl.String, "patient_id": pl.String, "time": UTC_US, "risk": pl.Float64,
                "label": pl.Int8, "event_time": UTC_US, "sex": pl.String, "site": pl.String},
        orient="row",
    )  # fmt: skip


GATES = GateConfig(
    gates=(
        Gate(name="sensitivity_ratio", metric="sensitivity", compare="ratio_to_reference", fail_below=0.8, warn_below=0.9),
        Gate(name="calibration", metric="calibration_in_the_large", compare="value", warn_below=-0.5, warn_above=0.5),
    ),
    min_patients=10, min_events=3, n_boot=20,
)  # fmt: skip


def _write_audit(settings: Settings, engine: Any, version: str, *, run_id: int, at: datetime, seed: int) -> int:
    """An audit as riskcast.pipeline.audit records one: JSON and HTML reports and an audits row."""
    report = audit(audit_frame(), threshold=0.5, by=("sex", "site"), gates=GATES, mitigate=(), seed=seed)
    stem = f"audit-{version}-{run_id}"
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    meta = {"outcome": "deterioration", "horizon_hours": HORIZON, "threshold": 0.5, "model_version": version,
            "run_id": run_id, "generated_at": at.isoformat()}  # fmt: skip
    (settings.reports_dir / f"{stem}.json").write_text(json.dumps({"meta": meta, "audit": report.to_dict()}))
    (settings.reports_dir / f"{stem}.html").write_text("<!DOCTYPE html><html><body>audit</body></html>")
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(audits).values(model_version=version, run_id=run_id, created_at=at, verdict=str(report.verdict),
                                      summary=report.summary(), report_path=str(settings.reports_dir / f"{stem}.html"))
            ).inserted_primary_key[0]
        )  # fmt: skip


@dataclass(frozen=True)
class Home:
    settings: Settings
    champion: str
    challenger: str
    audit_ids: tuple[int, int]


def _build(path: Path) -> Home:
    settings = Settings(home=path)
    encounters, outcomes = _stay_frames()
    Lake(settings.lake_dir).commit_batch(
        "20260115T120000-test0001", {"encounters": encounters, "outcomes": outcomes}, pl.DataFrame(schema=QUARANTINE_SCHEMA),
        sources=[], created_at=NOW,
    )  # fmt: skip
    registry = ModelRegistry(settings.models_dir)
    champion = _register(registry, at=_at(1, 0), promote=True, metadata=EVALUATED_CARD)
    challenger = _register(registry, at=_at(2, 0), promote=False)
    reports = ReportStore.of(settings, registry)
    reports.export_evaluation(champion, HeldOutEvaluation(REPORT, PromiseCheck.from_dict(PROMISE_CHECK)), markdown="# export")
    reports.write_tradeoff(champion, TradeoffCurve.from_dict(TRADEOFF))
    engine = open_store(settings.database_url)
    scored = _scored()
    frame = scored.join(pl.DataFrame({"encounter_id": [s[0] for s in STAYS]}), on="encounter_id").with_columns(
        pl.lit("north-medical-1").alias("ward"), pl.lit("north").alias("site"),
        pl.when(pl.col("risk").is_null()).then(pl.lit("insufficient_data")).otherwise(pl.lit("scored")).alias("status"),
        pl.when(pl.col("risk").is_null()).then(pl.lit("resp_rate")).otherwise(pl.lit("")).alias("missing"),
    )  # fmt: skip
    drivers = pl.DataFrame(
        schema={"encounter_id": pl.String, "scored_at": UTC_US, "rank": pl.Int64, "variable": pl.String,
                "feature": pl.String, "text": pl.String, "contribution": pl.Float64, "value": pl.Float64}
    )  # fmt: skip
    run_id = start_run(engine, "score", now=NOW, model_version=champion)
    write_scores(engine, run_id, champion, frame, drivers, now=NOW)
    finish_run(engine, run_id, status="succeeded", now=NOW)
    first = _write_audit(settings, engine, champion, run_id=7, at=_at(13, 9), seed=0)
    second = _write_audit(settings, engine, champion, run_id=9, at=_at(14, 9), seed=1)
    engine.dispose()
    return Home(settings, champion, challenger, (first, second))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return _build(tmp_path_factory.mktemp("report-home"))


@pytest.fixture(scope="module")
def engine(home: Home) -> Iterator[Any]:
    engine = open_store(home.settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def registry(home: Home) -> ModelRegistry:
    return ModelRegistry(home.settings.models_dir)


@pytest.fixture(scope="module")
def reports(home: Home, registry: ModelRegistry) -> ReportStore:
    return ReportStore(registry, home.settings.reports_dir)


# ------------------------------------------------------------------------------------ models


def test_model_versions_are_newest_first_with_the_champion_marked(home, registry):
    versions = read_models.model_versions(registry)
    assert versions["version"].to_list() == [home.challenger, home.champion]
    assert versions["is_champion"].to_list() == [False, True]


def test_a_version_from_a_url_must_be_registered(home, registry):
    assert read_models.known_version(registry, home.champion) == home.champion
    for version in ("../../etc", "", None, 3, "v9999-20260101T0000-xgboost"):
        assert read_models.known_version(registry, version) is None


def test_the_model_card_gives_use_data_limits_and_top_variables_in_words(home, registry):
    card = read_models.model_card(registry, home.champion)
    assert card.intended_use == CARD_METADATA["intended_use"]
    assert (card.outcome, card.horizon_hours, card.data["test_patients"]) == ("deterioration", HORIZON, 12)
    assert card.limits == tuple(CARD_METADATA["limits"])
    assert card.top_variables["label"].to_list() == ["Respiratory rate", "NEWS2"]
    assert card.markdown is not None and card.markdown.startswith("# Model card")


# -------------------------------------------------------------------------------- evaluation


def test_discrimination_lists_the_model_then_baselines_then_ablations_once_each(home, reports):
    table = read_models.evaluation_report(reports, home.champion).discrimination
    assert table["score"].to_list() == ["risk", "NEWS2", "qSOFA", "clock only", "physiology only"]
    assert table["kind"].to_list() == ["model", "baseline", "baseline", "ablation", "ablation"]
    model = table.row(0, named=True)
    assert (model["auroc"], model["auroc_low"], model["auroc_high"]) == pytest.approx((0.85, 0.80, 0.90))


def test_the_reliability_curve_keeps_every_bin_in_risk_order(home, reports):
    curve = read_models.evaluation_report(reports, home.champion).reliability
    assert curve["mean_predicted"].to_list() == [0.01, 0.05, 0.30]
    assert curve["observed_rate"].to_list() == [0.0, 0.04, 0.35]


def test_the_promise_check_and_the_comparison_with_news2_are_read(home, reports):
    evaluation = read_models.evaluation_report(reports, home.champion)
    assert evaluation.promise_check.kept is True and evaluation.promise_check.observed_ppv == 0.12
    assert evaluation.comparisons["baseline"].to_list() == ["NEWS2"]
    assert evaluation.comparisons.row(0, named=True)["model_sensitivity"] == 0.58


def test_the_evaluation_is_the_model_cards_not_the_export(home, reports, tmp_path):
    """The export in reports/ is for people: a page reads the version's own copy, so an edited
    or deleted export changes nothing."""
    elsewhere = ReportStore(reports.registry, tmp_path / "no-reports")
    evaluation = read_models.evaluation_report(elsewhere, home.champion)
    assert evaluation.path == home.settings.models_dir / home.champion / "model_card.json"
    assert evaluation.n_patients == 12 and evaluation.promise_check.kept is True


def _card_with(registry: ModelRegistry, evaluation: dict[str, Any]) -> str:
    version = _register(registry, at=_at(3, 0), promote=False, metadata=CARD_METADATA | {"metrics": evaluation})
    return version


def test_numbers_that_are_not_there_read_as_null_never_as_zero(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    report = REPORT.to_dict()
    report["discrimination"]["risk"] |= {"auroc_ci": [None, None], "auprc": None}
    report["calibration"] |= {"brier": None, "reliability": []}
    version = _card_with(registry, report)
    evaluation = read_models.evaluation_report(ReportStore(registry), version)
    row = evaluation.discrimination.row(0, named=True)
    assert row["auroc"] == 0.85 and row["auroc_low"] is None and row["auprc"] is None
    assert evaluation.reliability.height == 0 and evaluation.promise_check is None and evaluation.brier is None


def test_a_version_without_an_evaluation_has_none_and_a_broken_one_names_its_file(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    assert read_models.evaluation_report(ReportStore(registry), "v1") is None
    damaged = REPORT.to_dict()
    del damaged["calibration"]["ece"]
    version = _card_with(registry, damaged)
    with pytest.raises(RegistryError, match=rf"{version}/model_card\.json: its held-out evaluation is not one `riskcast "
                                            r"train` wrote \(calibration\.ece is missing\); train a new model"):
        read_models.evaluation_report(ReportStore(registry), version)
    (registry.path_of(version) / "model_card.json").write_text("{not json")
    with pytest.raises(RegistryError, match=rf"{version!r} is incomplete: model_card.json is not JSON.*`riskcast train`"):
        read_models.evaluation_report(ReportStore(registry), version)


def test_an_unreadable_tradeoff_names_its_file_and_what_to_run(home, tmp_path):
    reports = ReportStore(ModelRegistry(home.settings.models_dir), tmp_path)
    reports.tradeoff_path(home.champion).write_text("{not json")
    with pytest.raises(EvaluationError, match=r"tradeoff-.*\.json: the threshold trade-off is not valid JSON \(line 1.*"
                                              r"run `riskcast train`"):
        read_models.threshold_tradeoff(reports, home.champion)


def test_the_tradeoff_runs_from_fewest_alerts_and_marks_the_current_threshold(home, reports):
    tradeoff = read_models.threshold_tradeoff(reports, home.champion)
    assert tradeoff.model["alerts_per_100_patient_days"].to_list() == [5.0, 14.0, 30.0]
    assert tradeoff.model["encounter_sensitivity"].to_list() == [0.5, None, 0.9]
    assert tradeoff.news2["threshold"].to_list() == [3.0, 5.0, 7.0]
    assert (tradeoff.current.threshold, tradeoff.current.alerts_per_100_patient_days) == (0.2, 14.0)


def test_a_version_without_reports_has_none(home, reports):
    assert read_models.evaluation_report(reports, home.challenger) is None
    assert read_models.threshold_tradeoff(reports, home.challenger) is None


# ------------------------------------------------------------------------- performance by week


def test_a_week_with_events_and_non_events_gets_auroc_on_its_labelled_hours():
    first = week(weekly(), WEEK_A)
    # E1 06-06h and 06-00h are 14 h and 20 h before its event: negatives; 12h and 18h: positives.
    labels = [0, 0, 1, 1, 0, 0, 0]
    risks = [0.10, 0.20, 0.60, 0.70, 0.05, 0.30, 0.15]
    assert (first["n_labelled"], first["n_positive"], first["status"]) == (7, 2, "measured")
    assert first["auroc"] == pytest.approx(roc_auc_score(labels, risks))
    assert first["auroc_low"] <= first["auroc"] <= first["auroc_high"]


def test_hours_at_or_after_the_event_and_insufficient_data_are_not_rated():
    first = week(weekly(), WEEK_A)
    assert (first["n_scored"], first["n_insufficient"], first["n_labelled"], first["n_pending"]) == (8, 1, 7, 0)


def test_a_week_without_events_says_not_enough_outcomes_instead_of_a_number():
    current = week(weekly(), WEEK_B)
    assert current["status"] == read_models.STATUS_NO_EVENTS
    assert current["auroc"] is None and current["auprc"] is None


def test_only_outcomes_known_now_count():
    """E6 dies after NOW and E5's discharge after NOW is already in the lake: both hours are
    pending at NOW (E3's 06:00 hour too); E3's hour on the 12th was observed through."""
    current = week(weekly(), WEEK_B)
    assert (current["n_labelled"], current["n_pending"], current["n_positive"]) == (1, 3, 0)
    later = week(weekly(now=_at(16, 12)), WEEK_B)
    assert (later["n_positive"], later["status"]) == (1, "measured")


def test_performance_over_time_reads_the_versions_scores_from_the_store(home, engine, registry):
    frame = performance.performance_over_time(engine, Lake(home.settings.lake_dir), registry, model_version=home.champion,
                                              now=NOW, n_boot=20)  # fmt: skip
    assert frame["week_start"].to_list() == [WEEK_A, WEEK_B]
    assert frame["status"].to_list() == ["measured", read_models.STATUS_NO_EVENTS]
    empty = performance.performance_over_time(engine, Lake(home.settings.lake_dir), registry, model_version=home.challenger,
                                              now=NOW)  # fmt: skip
    assert empty.height == 0



def test_the_nightly_job_stores_the_weeks_the_model_page_reads(home, engine, registry):
    """record_weekly_performance (the nightly job) computes each version's weeks and stores
    them; stored_performance (the Model page) reads the same numbers back, without a bootstrap."""
    lake = Lake(home.settings.lake_dir)
    assert performance.record_weekly_performance(engine, lake, registry, now=NOW, n_boot=20) == {
        home.champion: 2, home.challenger: 0}
    stored = read_models.stored_performance(engine, home.champion)
    computed = performance.performance_over_time(engine, lake, registry, model_version=home.champion, now=NOW, n_boot=20)
    assert stored.computed_at == NOW and stored.weeks.equals(computed)
    later = NOW + timedelta(days=1)
    performance.record_weekly_performance(engine, lake, registry, now=later, n_boot=20, model_versions=[home.champion])
    again = read_models.stored_performance(engine, home.champion)
    assert again.computed_at == later and again.weeks.height == 2  # replaced, not added to
    nothing = read_models.stored_performance(engine, home.challenger)
    assert (nothing.computed_at, nothing.weeks.height, nothing.weeks.schema) == (None, 0, pl.Schema(read_models.PERFORMANCE_SCHEMA))


def test_the_statuses_the_store_allows_are_the_ones_weekly_performance_gives():
    from riskcast.store.tables import PERFORMANCE_STATUSES

    given = (performance.STATUS_MEASURED, performance.STATUS_NO_EVENTS, performance.STATUS_PENDING,
             performance.STATUS_NO_NON_EVENTS)  # fmt: skip
    assert sorted(given) == sorted(PERFORMANCE_STATUSES)


# ------------------------------------------------------------------------------------ audits


def test_audit_history_is_newest_first_with_gate_counts(home, engine):
    history = read_models.audit_history(engine)
    assert history["audit_id"].to_list() == list(reversed(home.audit_ids))
    latest = history.row(0, named=True)
    assert latest["report_name"] == f"audit-{home.champion}-9.html"
    assert (latest["patients"], latest["n_fail"], latest["n_warn"], latest["n_pass"]) == (66, 0, 1, 3)


def test_audit_trend_has_one_row_per_audit_and_feature_oldest_first(home, engine):
    trend = read_models.audit_trend(engine)
    assert trend.select("audit_id", "feature").rows() == [(home.audit_ids[0], "sex"), (home.audit_ids[0], "site"),
                                                          (home.audit_ids[1], "sex"), (home.audit_ids[1], "site")]  # fmt: skip
    sex = trend.filter(pl.col("feature") == "sex").row(0, named=True)
    assert (sex["reference"], sex["reported_groups"], sex["suppressed_groups"]) == ("female", 2, 1)
    assert sex["lowest_sensitivity_ratio"] == pytest.approx(0.5) and sex["lowest_sensitivity_ratio_group"] == "male"


def test_the_audit_detail_has_groups_with_intervals_and_gates_failures_first(home, engine, reports):
    detail = read_models.audit_detail(engine, reports)
    assert detail.audit_id == home.audit_ids[1] and detail.verdict == "warn"
    groups = detail.groups.filter(pl.col("feature") == "sex")
    assert groups["group"].to_list() == ["female", "male", "other"]
    female = groups.row(0, named=True)
    assert female["reference"] and female["sensitivity"] == 1.0 and female["sensitivity_low"] is not None
    assert detail.gates["verdict"].to_list() == ["warn", "pass", "pass", "pass"]
    assert detail.gates.row(0, named=True)["group"] == "male" and "may be noise" in detail.gates.row(0, named=True)["reason"]
    # 14 patients deteriorate: the 8 women's events are flagged, 2 of the 4 men's, 1 of the 2 others'.
    assert detail.overall.filter(pl.col("metric") == "sensitivity")["value"][0] == pytest.approx(11 / 14)


def test_a_suppressed_group_carries_no_number_even_when_its_json_has_one(home, engine, reports, tmp_path):
    detail = read_models.audit_detail(engine, reports)
    other = detail.groups.filter(pl.col("group") == "other").row(0, named=True)
    numbers = {k: v for k, v in other.items() if k not in ("feature", "group", "suppressed", "reference")}
    assert other["suppressed"] and all(v is None for v in numbers.values())
    assert detail.suppressed_label.startswith("suppressed")
    leaky = json.loads(detail.json_path.read_text())
    for group in leaky["audit"]["features"]["sex"]["groups"]:
        if group["suppressed"]:
            group |= {"n_patients": 6, "sensitivity": 0.5}
    copy = tmp_path / "reports"
    copy.mkdir()
    (copy / detail.json_path.name).write_text(json.dumps(leaky))
    leaked = read_models.audit_detail(engine, ReportStore(reports.registry, copy)).groups.filter(pl.col("group") == "other").row(0, named=True)
    assert leaked["n_patients"] is None and leaked["sensitivity"] is None


def test_an_audit_whose_json_is_gone_or_no_audit_at_all_is_none(home, engine, reports, tmp_path):
    assert read_models.audit_detail(engine, ReportStore(reports.registry, tmp_path)) is None
    assert read_models.audit_detail(engine, reports, model_version=home.challenger) is None


def test_an_unreadable_audit_report_names_its_file_and_what_to_run(home, engine, reports, tmp_path):
    copy = ReportStore(reports.registry, tmp_path)
    (tmp_path / f"audit-{home.champion}-9.json").write_text('{"meta": {}}')
    with pytest.raises(EvaluationError, match=rf"audit-{home.champion}-9\.json: not an audit report written by riskcast "
                                              r"\(audit is missing\); run `riskcast audit` again"):
        read_models.audit_detail(engine, copy)


def test_the_html_report_is_only_ever_a_file_in_the_reports_folder(home, engine, reports, tmp_path):
    path = read_models.audit_report_file(engine, reports, home.audit_ids[0])
    assert path == home.settings.reports_dir / f"audit-{home.champion}-7.html"
    assert read_models.audit_report_file(engine, ReportStore(reports.registry, tmp_path), home.audit_ids[0]) is None
    for audit_id in (999, "1", None, True):
        assert read_models.audit_report_file(engine, reports, audit_id) is None


# ------------------------------------------------------------------------------ pages and roles


@pytest.fixture(scope="module")
def app(home: Home) -> Any:
    application = create_app(home.settings, clock=lambda: NOW)
    engine = application.server.extensions["riskcast"].engine
    for name, role, wards in [("nina", "nurse", ["north-medical-1"]), ("dana", "data_scientist", []), ("phil", "physician", [])]:
        auth.add_user(engine, name, role=role, wards=wards, password=PASSWORD, now=NOW, replace=True)
    return application


def sign_in(client: Any, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD})


def dash_call(client: Any, output_contains: str, inputs: dict[str, Any], state: dict[str, Any] | None = None) -> Any:
    """Call the callback whose output names `output_contains`, as the Dash renderer would."""
    dependencies = json.loads(client.get("/_dash-dependencies").get_data())
    spec = next(d for d in dependencies if output_contains in d["output"])

    def values(items: list[dict[str, str]], given: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**item, "value": given.get(f"{item['id']}.{item['property']}")} for item in items]

    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True)) for part in spec["output"].strip(".").split("...")]
    payload = {"output": spec["output"], "outputs": outputs if len(outputs) > 1 else outputs[0], "inputs": values(spec["inputs"], inputs),
               "state": values(spec["state"], state or {}),
               "changedPropIds": [f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"]}  # fmt: skip
    return client.post("/_dash-update-component", json=payload)


def page_layout(client: Any, path: str) -> str:
    """The page's layout as the Dash Pages router draws it for `path`."""
    response = dash_call(client, "_pages_content.children", {"_pages_location.pathname": path, "_pages_location.search": ""})
    return response.get_data(as_text=True)


def test_a_data_scientist_gets_the_model_card_and_reports(home, app):
    client = app.server.test_client()
    sign_in(client, "dana")
    assert 'id":"model-version"' in page_layout(client, "/model").replace(" ", "")
    response = dash_call(client, "model-card.children", {"model-version.value": home.champion})
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and CARD_METADATA["intended_use"] in text and "Promise kept" in text


def test_a_nurse_gets_neither_the_model_page_nor_its_callbacks(home, app):
    client = app.server.test_client()
    sign_in(client, "nina")
    assert "This page is not available to your account." in page_layout(client, "/model")
    response = dash_call(client, "model-card.children", {"model-version.value": home.champion})
    assert response.status_code == 204 and CARD_METADATA["intended_use"].encode() not in response.get_data()
    weekly_rows = dash_call(client, "model-over-time.figure", {"model-version.value": home.champion})
    assert weekly_rows.status_code == 204


def test_a_nurse_gets_neither_the_fairness_page_nor_its_callbacks_nor_the_report(home, app):
    client = app.server.test_client()
    sign_in(client, "nina")
    assert "This page is not available to your account." in page_layout(client, "/fairness")
    for output, inputs, state in (
        ("fairness-verdict.children", {"fairness-audit.value": home.audit_ids[0]}, None),
        ("fairness-download.data", {"fairness-report-button.n_clicks": 1}, {"fairness-audit.value": home.audit_ids[0]}),
    ):
        response = dash_call(client, output, inputs, state)
        assert response.status_code == 204 and b"audit" not in response.get_data()


def test_a_physician_downloads_the_audits_html_report(home, app):
    client = app.server.test_client()
    sign_in(client, "phil")
    response = dash_call(client, "fairness-download.data", {"fairness-report-button.n_clicks": 1},
                         {"fairness-audit.value": home.audit_ids[0]})  # fmt: skip
    data = response.get_json()["response"]["fairness-download"]["data"]
    assert data["filename"] == f"audit-{home.champion}-7.html" and base64.b64decode(data["content"]).startswith(b"<!DOCTYPE")


def test_a_version_in_the_url_is_shown_and_an_unknown_one_is_refused(home, app):
    client = app.server.test_client()
    sign_in(client, "dana")
    assert f'"value":"{home.challenger}"' in page_layout(client, f"/model/{home.challenger}").replace(" ", "")
    assert "There is no model version with that name." in page_layout(client, "/model/v9999-20260101T0000-xgboost")


def test_the_model_page_reads_the_stored_weeks_and_says_the_nightly_job_computes_them(home, app, engine, registry):
    client = app.server.test_client()
    sign_in(client, "dana")
    waiting = dash_call(client, "model-over-time.figure", {"model-version.value": home.challenger}).get_data(as_text=True)
    assert "computed by the nightly job" in waiting
    performance.record_weekly_performance(engine, Lake(home.settings.lake_dir), registry, now=NOW, n_boot=20,
                                          model_versions=[home.champion])  # fmt: skip
    shown = dash_call(client, "model-over-time.figure", {"model-version.value": home.champion}).get_json()["response"]
    assert len(shown["model-over-time-table"]["rowData"]) == 2
    assert "computed by the nightly job" not in json.dumps(shown) and "known when the nightly job computed" in json.dumps(shown)


def test_a_version_without_reports_says_which_command_writes_them(home, app):
    client = app.server.test_client()
    sign_in(client, "dana")
    text = dash_call(client, "model-card.children", {"model-version.value": home.challenger}).get_data(as_text=True)
    assert "No evaluation report for this version" in text and "riskcast train" in text


def test_without_a_model_or_an_audit_the_pages_say_what_to_run(tmp_path):
    empty = create_app(Settings(home=tmp_path / "empty"), clock=lambda: NOW)
    auth.add_user(empty.server.extensions["riskcast"].engine, "dana", role="data_scientist", password=PASSWORD, now=NOW)
    client = empty.server.test_client()
    sign_in(client, "dana")
    assert "No model yet: run `riskcast train`" in page_layout(client, "/model")
    assert "No audit yet: run `riskcast audit`" in page_layout(client, "/fairness")
