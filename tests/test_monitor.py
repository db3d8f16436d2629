"""The monitor flow on a small lake and a SQLite store: its system alerts, its options, and the
data-health page judging the same feeds stale as the alerts do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from riskcast import read_models
from riskcast.alerts.policy import load_policy
from riskcast.alerts.state import open_system_subjects, process_scores, system_alerts_frame
from riskcast.config import Settings
from riskcast.contracts import QUARANTINE_SCHEMA
from riskcast.errors import ConfigError
from riskcast.lake import LAKE_SCHEMAS, Lake
from riskcast.model import ModelRegistry, RiskModel
from riskcast.pipeline.monitor import MonitorOptions, monitor_data_health
from riskcast.store import finish_run, open_store, start_run, write_scores

AT = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
BATCH = "20260202T100000-test0001"


def commit(lake: Lake, batch: str, *, encounters: list[tuple], observations: list[tuple]) -> None:
    """One lake batch of encounters (id, ward, discharged hours before AT or None) and
    observations (encounter, hours before AT, variable, value)."""
    lake.commit_batch(
        batch,
        {
            "encounters": pl.DataFrame(
                [(e, f"P-{e}", AT - timedelta(days=3), None if gone is None else AT - timedelta(hours=gone), ward, "north")
                 for e, ward, gone in encounters],
                schema=LAKE_SCHEMAS["encounters"], orient="row",
            ),
            "observations": pl.DataFrame(
                [(e, AT - timedelta(hours=h), v, x, "/min", "test") for e, h, v, x in observations],
                schema=LAKE_SCHEMAS["observations"], orient="row",
            ),
        },
        pl.DataFrame(schema=QUARANTINE_SCHEMA),
        sources=[],
        created_at=AT,
    )  # fmt: skip


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """Ward A: heart rate 20 h old (stale after 12 h); ward B: fresh; ward C: admitted, nothing
    charted; ward D: its only patient left a day ago, its heart rate 30 h old."""
    settings = Settings(home=tmp_path / "home")
    commit(
        Lake(settings.lake_dir), BATCH,
        encounters=[("E1", "A", None), ("E2", "B", None), ("E3", "C", None), ("E4", "D", 24)],
        observations=[("E1", 20, "heart_rate", 80.0), ("E2", 1, "heart_rate", 82.0), ("E4", 30, "heart_rate", 70.0)],
    )  # fmt: skip
    return settings


def monitor(settings: Settings, engine, *, at: datetime = AT, **options):
    return monitor_data_health(Lake(settings.lake_dir), ModelRegistry(settings.models_dir), engine, at=at, now=at,
                               options=MonitorOptions(**options))  # fmt: skip


def test_the_monitor_and_the_data_health_page_judge_the_same_feeds_stale(home: Settings) -> None:
    engine = open_store(home.database_url)
    report = monitor(home, engine)
    page = read_models.feed_freshness(Lake(home.lake_dir), now=AT)
    stale_on_page = page.filter(pl.col("stale")).select("ward", "variable").rows()
    assert stale_on_page == [(r["ward"], r["variable"]) for r in report.feeds["stale"]] == [("C", "*"), ("A", "heart_rate")]
    assert open_system_subjects(engine, prefix="feed:") == {"feed:A", "feed:C"}
    assert "D" not in page["ward"].to_list()  # nobody is admitted there: no feed to be stale
    assert page.filter(pl.col("ward") == "C")["label"].to_list() == ["No observations at all"]
    engine.dispose()


def test_a_feed_that_recovers_resolves_its_system_alert_and_the_others_stay(home: Settings) -> None:
    engine = open_store(home.database_url)
    monitor(home, engine)
    commit(Lake(home.lake_dir), "20260202T101500-test0002", encounters=[],
           observations=[("E1", -0.1, "heart_rate", 81.0)])  # fmt: skip
    later = monitor(home, engine, at=AT + timedelta(minutes=15))
    assert later.system_alerts == {"raised": [], "resolved": ["feed:A"]}
    assert system_alerts_frame(engine)["subject"].to_list() == ["feed:C"]
    assert later.drift == {"note": "no champion model yet: nothing to compare with"}
    engine.dispose()


def test_an_empty_lake_is_noted_not_failed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    engine = open_store(settings.database_url)
    report = monitor(settings, engine).to_dict()
    assert report["feeds"] == {"note": "the lake is empty: nothing to judge yet"}
    assert report["system_alerts"] == {"raised": [], "resolved": []}
    engine.dispose()


def test_a_flood_of_risk_alerts_against_the_models_promise_raises_an_alert_rate_alert(home: Settings) -> None:
    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    model = RiskModel(device="cpu", n_jobs=1, n_estimators=5).fit(
        features, (features["a"] > 1).astype(int).to_numpy(), groups=np.repeat(np.arange(20), 10)
    )
    registry = ModelRegistry(home.models_dir)
    metadata = {"intended_use": "tests", "limits": [], "data": {"lake_batches": [BATCH]},
                "metrics": {"operating_point": {"alerts_per_100_patient_days": 15.0}}}  # fmt: skip
    version = registry.register(model, metadata=metadata, now=AT)
    registry.promote(version, by="tests", reason="fixture", now=AT)
    engine = open_store(home.database_url)
    hours = [AT - timedelta(hours=h) for h in range(6)]  # 40 patients x 6 hours = 10 patient-days
    scores = pl.DataFrame(
        [(f"S{i}", f"P{i}", "A", "north", hour, 0.9, "scored", "") for i in range(40) for hour in hours],
        schema={"encounter_id": pl.String, "patient_id": pl.String, "ward": pl.String, "site": pl.String,
                "scored_at": pl.Datetime("us", "UTC"), "risk": pl.Float64, "status": pl.String, "missing": pl.String},
        orient="row",
    )  # fmt: skip
    run_id = start_run(engine, "score", now=AT, model_version=version)
    write_scores(engine, run_id, version, scores, pl.DataFrame(schema={
        "encounter_id": pl.String, "scored_at": pl.Datetime("us", "UTC"), "rank": pl.Int64, "variable": pl.String,
        "feature": pl.String, "text": pl.String, "contribution": pl.Float64, "value": pl.Float64}), now=AT)  # fmt: skip
    finish_run(engine, run_id, status="succeeded", now=AT)
    process_scores(engine, scores.with_columns(pl.lit(version).alias("model_version")), policy_set=load_policy(),
                   model_threshold=0.3, now=AT)  # fmt: skip
    report = monitor(home, engine)
    assert report.alert_rate["alerts"] == 40 and report.alert_rate["patient_days"] == 10.0
    assert report.alert_rate["problem"].startswith("40 risk alerts in 10.0 patient-days: 400.0 per 100 patient-days")
    assert "alert_rate" in report.system_alerts["raised"]
    assert report.drift["score_psi"] is None and report.drift["variables"] == {}  # too few values to judge
    engine.dispose()


def test_monitor_options_come_from_a_jobs_options_with_their_types() -> None:
    options = MonitorOptions.from_options({"lookback_hours": 72, "min_values": 50, "alert_on_non_essential": True})
    assert (options.lookback_hours, options.min_values, options.alert_on_non_essential) == (72.0, 50, True)
    assert options.window_hours == MonitorOptions().window_hours


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lookback": 72}, r"monitor: unknown option\(s\) \['lookback'\]; it takes: alert_on_non_essential"),
        ({"psi_alert": "high"}, "monitor option psi_alert: expected a number, got 'high'"),
        ({"window_hours": -1}, "monitor option window_hours: expected a number of at least 0, got -1"),
        ({"alert_on_non_essential": "yes"}, "monitor option alert_on_non_essential: expected true or false, got 'yes'"),
    ],
)
def test_a_monitor_option_of_the_wrong_kind_is_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MonitorOptions.from_options(options)
