"""The real scheduler process (`riskcast scheduler`) on a fast schedule, against a real store.

A small synthetic cohort whose "present" is now is ingested and a model trained once per
module; each test copies that home, writes a schedule firing every second or two, starts
the scheduler as a subprocess and polls the store for what it must see, with a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from sqlalchemy import Engine, func, select

from riskcast.clock import shifted_clock
from riskcast.config import Settings
from riskcast.alerts.state import alert_history, list_alerts, system_alerts_frame
from riskcast.contracts import QUARANTINE_SCHEMA
from riskcast.jobs.runner import execute_job
from riskcast.jobs.runs import JobRunRecord, get_job_run, job_runs_frame
from riskcast.jobs.schedule import parse_schedule
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.scoring import score_admitted
from riskcast.pipeline.training import train_and_register
from riskcast.store import open_store
from riskcast.store.tables import alert_events, alerts, drivers, quarantine, runs, scores
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort
from waiting import wait_until

pytestmark = pytest.mark.slow

SLOW_ALERTS = """
CREATE VIEW test_slow AS
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) SELECT count(*) AS n FROM c;
CREATE TRIGGER test_slow_alerts BEFORE INSERT ON alerts BEGIN SELECT n FROM test_slow; END;
"""
NEVER = "0 0 1 1 *"  # once a year: the job is in the schedule, but does not fire during a test


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a lake and a champion model, on a 300-encounter cohort ending now."""
    base = tmp_path_factory.mktemp("trained")
    now = datetime.now(UTC)
    write_cohort(generate_cohort(300, seed=5, now=now), base / "cohort")
    lake = Lake(base / "lake")
    ingest_paths([base / "cohort"], lake=lake, now=now)
    # No bootstrap and no ablation models: not needed here, and they would triple the training time.
    train_and_register(lake, ModelRegistry(base / "models"), now=now, n_boot=0, ablations=False,
                       alerts_per_100_patient_days=60.0)
    return base


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a lake and a champion, on a 1,000-encounter cohort ending at the demo's
    present (DEFAULT_NOW, long before today): big enough for a model that reacts to vitals."""
    base = tmp_path_factory.mktemp("trained-demo")
    write_cohort(generate_cohort(1000, seed=5), base / "cohort")
    lake = Lake(base / "lake")
    ingest_paths([base / "cohort"], lake=lake, now=DEFAULT_NOW)
    registry = ModelRegistry(base / "models")
    train_and_register(lake, registry, now=DEFAULT_NOW, n_boot=0, ablations=False)
    return base


def new_home(tmp_path: Path, trained: Path | None = None) -> Settings:
    """A fresh home (own database); with `trained`, a copy of its lake and models."""
    home = tmp_path / "home"
    home.mkdir(parents=True)
    if trained is not None:
        install_model(home, trained)
    return Settings(home=home)


def install_model(home: Path, trained: Path) -> None:
    """Copy the trained lake and models in; each appears at once (copied aside, then renamed)."""
    for name in ("lake", "models"):
        shutil.copytree(trained / name, home / f".{name}-copy")
        os.rename(home / f".{name}-copy", home / name)


def write_schedule(path: Path, jobs: dict[str, dict[str, Any]], *, lease_seconds: float = 5) -> Path:
    path.write_text(yaml.safe_dump({
        "timezone": "Europe/London", "lease_seconds": lease_seconds, "recover_every_seconds": 1, "jobs": jobs,
    }))
    return path


class Scheduler:
    """`riskcast scheduler` as a subprocess, its output in a log file."""

    def __init__(self, settings: Settings, config: Path, name: str = "scheduler", *, extra: tuple[str, ...] = ()) -> None:
        self.log_path = settings.home / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "riskcast", "--home", str(settings.home), "scheduler", "--config", str(config),
             *extra],
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no cleanup at all
        self.process.wait(timeout=10)

    def terminate(self, *, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def ensure_stopped(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def schedulers() -> Iterator[list[Scheduler]]:
    """Every scheduler a test starts is stopped afterwards, whatever happens."""
    started: list[Scheduler] = []
    yield started
    for scheduler in started:
        scheduler.ensure_stopped()


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, logs: list[Scheduler] = ()) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds with
    the schedulers' logs."""
    return wait_until(condition, timeout=timeout, what=what,
                      detail=lambda: "".join(f"\n--- {s.log_path.name}\n{s.log()[-3000:]}" for s in logs))


def runs_of(engine: Engine, job: str) -> list[JobRunRecord]:
    frame = job_runs_frame(engine, job=job, limit=1000)
    return [get_job_run(engine, job, t) for t in frame["scheduled_for"].to_list()]


def store_snapshot(engine: Engine, *, hour: datetime) -> dict[str, Any]:
    """What a score run at `hour` leaves in the store, without ids or wall-clock times."""
    with engine.connect() as connection:
        score_rows = connection.execute(
            select(scores.c.model_version, scores.c.encounter_id, scores.c.scored_at, scores.c.risk, scores.c.status,
                   scores.c.missing, func.count(drivers.c.id))
            .select_from(scores.outerjoin(drivers, drivers.c.score_id == scores.c.id))
            .where(scores.c.scored_at == hour).group_by(scores.c.id)
        ).all()
        alert_rows = connection.execute(
            select(alerts.c.encounter_id, alerts.c.kind, alerts.c.raised_for, alerts.c.state, alerts.c.risk,
                   alerts.c.model_version, alerts.c.episode).where(alerts.c.kind != "system")
        ).all()
        event_rows = connection.execute(
            select(alerts.c.encounter_id, alerts.c.kind, alert_events.c.action, alert_events.c.from_state,
                   alert_events.c.to_state)
            .join(alerts, alerts.c.id == alert_events.c.alert_id).where(alerts.c.kind != "system")
        ).all()
    return {
        "scores": Counter(tuple(row) for row in score_rows),
        "alerts": Counter(tuple(row) for row in alert_rows),
        "events": Counter(tuple(row) for row in event_rows),
    }


# --- tests ---------------------------------------------------------------------------------


def test_jobs_fire_on_schedule_and_inbox_files_are_ingested_and_archived(
    tmp_path: Path, trained: Path, schedulers: list[Scheduler]
) -> None:
    settings = new_home(tmp_path)
    config = write_schedule(tmp_path / "schedule.yaml", {
        "ingest": {"every_seconds": 1, "options": {"settle_seconds": 0}},
        "monitor": {"cron": {"second": "*/2"}},
    })
    scheduler = Scheduler(settings, config)
    schedulers.append(scheduler)
    shutil.copytree(trained / "cohort", settings.home / "inbox" / ".drop-copy")
    os.rename(settings.home / "inbox" / ".drop-copy", settings.home / "inbox" / "drop-1")
    engine = open_store(settings.database_url)
    try:
        ingested = wait_for(lambda: [r for r in runs_of(engine, "ingest") if r.counts.get("batch_id")],
                            timeout=40, what="an ingest run that committed a batch", logs=[scheduler])
        batch = ingested[0].counts["batch_id"]
        assert ingested[0].status == "succeeded" and ingested[0].counts["accepted"]["observations"] > 10_000
        assert (settings.home / "archive" / batch / "drop-1" / "observations.parquet").exists()
        assert not (settings.home / "inbox" / "drop-1").exists()
        with engine.connect() as connection:
            stored = connection.execute(select(func.count()).select_from(quarantine)).scalar_one()
        assert stored == ingested[0].counts["quarantined"] > 0
        wait_for(lambda: any(r.status == "succeeded" for r in runs_of(engine, "monitor")),
                 timeout=20, what="a monitor run", logs=[scheduler])
        assert scheduler.terminate() == 0  # SIGTERM: a clean stop
    finally:
        engine.dispose()
    assert "started" in scheduler.log()


def test_a_failing_job_is_recorded_and_shown_and_the_next_run_still_runs(
    tmp_path: Path, trained: Path, schedulers: list[Scheduler]
) -> None:
    settings = new_home(tmp_path)  # no lake, no model yet: scoring fails
    config = write_schedule(tmp_path / "schedule.yaml", {"score": {"cron": {"second": "*/2"}}})
    scheduler = Scheduler(settings, config)
    schedulers.append(scheduler)
    engine = open_store(settings.database_url)
    try:
        failed = wait_for(lambda: [r for r in runs_of(engine, "score") if r.status == "failed"],
                          timeout=40, what="a failed score run", logs=[scheduler])[-1]
        assert failed.error.startswith("LakeError: the lake at ") and failed.finished_at is not None
        wait_for(lambda: system_alerts_frame(engine).height, timeout=10, what="the failure's system alert",
                 logs=[scheduler])
        shown = system_alerts_frame(engine)
        assert shown["subject"].to_list() == ["job:score"] and "failed: LakeError" in shown["reason"][0]
        install_model(settings.home, trained)
        later = wait_for(lambda: [r for r in runs_of(engine, "score")
                                  if r.status == "succeeded" and r.scheduled_for > failed.scheduled_for],
                         timeout=30, what="a successful score run after the failure", logs=[scheduler])
        assert later[-1].counts["admitted"] > 0
        assert wait_for(lambda: system_alerts_frame(engine).height == 0 or None, timeout=10,
                        what="the job's system alert to resolve", logs=[scheduler]) is True
        assert scheduler.process.poll() is None  # the failure never stopped the scheduler
    finally:
        engine.dispose()


def test_kill_9_between_scores_and_alerts_then_restart_gives_exactly_a_clean_runs_scores_and_alerts(
    tmp_path: Path, trained: Path, schedulers: list[Scheduler]
) -> None:
    settings = new_home(tmp_path / "killed", trained)
    open_store(settings.database_url).dispose()
    database = settings.home / "riskcast.db"
    with sqlite3.connect(database) as connection:  # alert writes now crawl: the kill lands after scores
        connection.executescript(SLOW_ALERTS)
    config = write_schedule(tmp_path / "score-often.yaml", {"score": {"cron": {"second": "*/2"}}})
    first = Scheduler(settings, config, "first")
    schedulers.append(first)
    engine = open_store(settings.database_url)
    try:
        def scores_written_alerts_not() -> JobRunRecord | None:
            running = [r for r in runs_of(engine, "score") if r.status == "running"]
            with engine.connect() as connection:
                n_scores = connection.execute(select(func.count()).select_from(scores)).scalar_one()
            return running[0] if running and n_scores else None

        interrupted = wait_for(scores_written_alerts_not, timeout=40, what="a score run with its scores written",
                               logs=[first])
        first.kill()
        scheduled = interrupted.scheduled_for
        hour = scheduled.replace(minute=0, second=0, microsecond=0)
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(alerts)).scalar_one() == 0
        with sqlite3.connect(database) as connection:
            connection.executescript("DROP TRIGGER test_slow_alerts; DROP VIEW test_slow;")

        restart = write_schedule(tmp_path / "score-yearly.yaml", {"score": {"cron": NEVER}})
        second = Scheduler(settings, restart, "second")
        schedulers.append(second)
        wait_for(lambda: get_job_run(engine, "score", scheduled).status == "succeeded", timeout=40,
                 what="the interrupted run to be finished after the restart", logs=[first, second])
        resumed = get_job_run(engine, "score", scheduled)
        assert resumed.attempt == 2 and resumed.counts["resumed_after_step"] == "started"
        assert resumed.counts["written"] == 0  # the scores were there; nothing written twice
        assert len(runs_of(engine, "score")) == 1
        with engine.connect() as connection:  # the killed process's run record is closed, not left "running"
            statuses = connection.execute(select(runs.c.status).where(runs.c.kind == "score")).scalars().all()
        assert sorted(statuses) == ["failed", "succeeded"]
        second.terminate()
        after_crash = store_snapshot(engine, hour=hour)
    finally:
        engine.dispose()

    clean = new_home(tmp_path / "clean", trained)
    clean_engine = open_store(clean.database_url)
    try:
        schedule = parse_schedule(yaml.safe_load(restart.read_text()), source=str(restart))
        assert execute_job("score", scheduled, settings=clean, engine=clean_engine, schedule=schedule).status == "succeeded"
        clean_run = store_snapshot(clean_engine, hour=hour)
    finally:
        clean_engine.dispose()
    assert sum(clean_run["alerts"].values()) > 0 and sum(clean_run["scores"].values()) > 0
    assert after_crash == clean_run


def test_two_schedulers_on_one_database_never_run_a_job_twice(
    tmp_path: Path, trained: Path, schedulers: list[Scheduler]
) -> None:
    settings = new_home(tmp_path, trained)
    open_store(settings.database_url).dispose()
    config = write_schedule(tmp_path / "schedule.yaml", {"score": {"cron": {"second": "*"}}})
    pair = [Scheduler(settings, config, "a"), Scheduler(settings, config, "b")]
    schedulers.extend(pair)
    engine = open_store(settings.database_url)
    try:
        wait_for(lambda: len([r for r in runs_of(engine, "score") if r.status == "succeeded"]) >= 5,
                 timeout=60, what="five score runs", logs=pair)
        for scheduler in pair:
            assert scheduler.terminate() == 0
        job_runs = runs_of(engine, "score")
        with engine.connect() as connection:
            score_runs = connection.execute(select(func.count()).select_from(runs).where(runs.c.kind == "score")).scalar_one()
            duplicates = connection.execute(
                select(func.count()).select_from(
                    select(scores.c.encounter_id).group_by(scores.c.model_version, scores.c.encounter_id,
                                                           scores.c.scored_at).having(func.count() > 1).subquery()
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert all(r.status == "succeeded" and r.attempt == 1 for r in job_runs)
    assert score_runs == len(job_runs)  # every claimed time scored exactly once
    spans = sorted((r.started_at, r.finished_at) for r in job_runs)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:]))  # never at once
    assert duplicates == 0
    holders = Counter(r.counts["holder"].rsplit(":", 2)[1] for r in job_runs)
    assert len(holders) == 2, f"both schedulers should have run some: {holders}"


def test_nightly_scores_evaluates_and_audits_the_champion(tmp_path: Path, trained_demo: Path) -> None:
    """On the fixed 1,000-encounter cohort (the 300-encounter one is built at the wall clock's
    present, so its model differs from run to run, and its AUROC can fall below 0.5)."""
    settings = new_home(tmp_path, trained_demo)
    schedule = parse_schedule({"jobs": {"nightly": {"cron": "30 2 * * *", "options": {"bootstrap": 20}}}}, source="test")
    engine = open_store(settings.database_url)
    try:
        outcome = execute_job("nightly", DEFAULT_NOW + timedelta(minutes=30), settings=settings, engine=engine, schedule=schedule)
    finally:
        engine.dispose()
    assert outcome.status == "succeeded", outcome.reason
    counts = outcome.record.counts
    assert counts["score"]["admitted"] > 0 and counts["score"]["written"] == counts["score"]["admitted"]
    assert 0.5 < counts["evaluation"]["auroc"] <= 1 and Path(counts["evaluation"]["report"]).exists()
    assert counts["audit"].get("verdict") in ("pass", "warn", "fail") or counts["audit"]["skipped"]
    assert counts["score"]["model_version"] in counts["performance"]  # the Model page's weeks, stored


def test_scoring_closes_a_discharged_patients_alert_but_shadow_scoring_does_not(tmp_path: Path, trained: Path) -> None:
    settings = new_home(tmp_path, trained)
    lake, registry = Lake(settings.lake_dir), ModelRegistry(settings.models_dir)
    champion = registry.champion()
    shadow = registry.register(registry.load(champion), metadata={"intended_use": "tests", "limits": []},
                               now=datetime.now(UTC))
    hour = lake.scan("observations").select(pl.col("charttime").max()).collect().item().replace(
        minute=0, second=0, microsecond=0)
    engine = open_store(settings.database_url)
    try:
        score_admitted(lake, registry, engine, at=hour, now=hour + timedelta(minutes=5))
        open_alerts = list_alerts(engine).filter(pl.col("kind") == "risk", pl.col("state") == "new")
        assert open_alerts.height > 0
        leaving = str(open_alerts["encounter_id"][0])
        stay = lake.scan("encounters").filter(pl.col("encounter_id") == leaving).collect()
        lake.commit_batch(  # a later feed records the discharge, half an hour after the scored hour
            "29990101T000000-discharge", {"encounters": stay.drop("batch_id").with_columns(
                discharge_time=pl.lit(hour + timedelta(minutes=30)).cast(stay.schema["discharge_time"]))},
            pl.DataFrame(schema=QUARANTINE_SCHEMA), sources=[], created_at=hour + timedelta(minutes=40),
        )
        later = hour + timedelta(hours=1)
        score_admitted(lake, registry, engine, at=later, now=later + timedelta(minutes=5), model_version=shadow)
        assert list_alerts(engine).filter(pl.col("encounter_id") == leaving, pl.col("kind") == "risk")["state"][0] == "new"
        summary = score_admitted(lake, registry, engine, at=later, now=later + timedelta(minutes=6))
        alert = list_alerts(engine).filter(pl.col("encounter_id") == leaving, pl.col("kind") == "risk").row(0, named=True)
        history = alert_history(engine, alert_id=alert["alert_id"])
    finally:
        engine.dispose()
    assert alert["state"] == "resolved" and summary.alerts["departed_resolved"] >= 1
    last = history.row(-1, named=True)
    assert (last["actor"], last["action"]) == ("riskcast", "resolved") and "no longer admitted" in last["reason"]


@pytest.mark.parametrize("promote_when_gates_pass", [False, True])
def test_retrain_scores_the_challenger_in_shadow_and_promotes_only_through_the_gates(
    tmp_path: Path, trained: Path, promote_when_gates_pass: bool
) -> None:
    settings = new_home(tmp_path, trained)
    registry = ModelRegistry(settings.models_dir)
    champion = registry.champion()
    schedule = parse_schedule({"jobs": {"retrain": {"cron": "0 4 * * sun", "options": {
        "bootstrap": 10, "ablations": False, "promote_when_gates_pass": promote_when_gates_pass}}}}, source="test")
    at = datetime.now(UTC)
    engine = open_store(settings.database_url)
    try:
        outcome = execute_job("retrain", at, settings=settings, engine=engine, schedule=schedule)
        assert outcome.status == "succeeded", outcome.reason
        counts = outcome.record.counts
        challenger = counts["challenger"]
        with engine.connect() as connection:
            shadow_rows = connection.execute(
                select(func.count()).select_from(scores).where(scores.c.model_version == challenger)
            ).scalar_one()
            challenger_alerts = connection.execute(
                select(func.count()).select_from(alerts).where(alerts.c.model_version == challenger)
            ).scalar_one()
    finally:
        engine.dispose()
    assert counts["champion"] == champion and challenger != champion
    assert shadow_rows == counts["shadow"]["admitted"] > 0 and challenger_alerts == 0
    assert {g["gate"] for g in counts["gates"]} == {"calibration", "fairness"}
    assert all(g["reason"] for g in counts["gates"])
    all_passed = all(g["passed"] for g in counts["gates"])
    no_worse = counts["challenger_evaluation"]["auroc"] >= counts["champion_evaluation"]["auroc"] - 0.01
    promoted = registry.champion() == challenger
    assert promoted == (all_passed and no_worse and promote_when_gates_pass)
    expected = "promoted" if promoted else ("left to a person" if all_passed else "blocked by the gates")
    assert counts["promotion"]["decision"] == expected, counts["gates"]


def test_on_the_demo_clock_a_dropped_feed_is_ingested_rescored_and_alerted_with_shifted_times(
    tmp_path: Path, trained_demo: Path, schedulers: list[Scheduler]
) -> None:
    """`riskcast scheduler --present demo` with `riskcast demo-feed`: the demo's flow from the
    command line, on data whose present is 2026-01-15 12:00 UTC."""
    settings = new_home(tmp_path, trained_demo)
    present = DEFAULT_NOW + timedelta(minutes=5)
    shifted_clock(present).save(settings.home / "demo-clock.json")
    config = write_schedule(tmp_path / "live.yaml", {
        "ingest": {"every_seconds": 1, "options": {"settle_seconds": 0.5}},
        "score": {"every_seconds": 2},
    })
    started_wall = datetime.now(UTC)
    scheduler = Scheduler(settings, config, extra=("--present", "demo"))
    schedulers.append(scheduler)
    engine = open_store(settings.database_url)
    try:
        encounters: set[str] = set()

        def fed_scores() -> dict[str, tuple[float, int]]:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(scores.c.encounter_id, scores.c.risk, scores.c.observations)
                    .where(scores.c.encounter_id.in_(encounters), scores.c.scored_at == DEFAULT_NOW)
                ).all()
            return {row.encounter_id: (row.risk, row.observations) for row in rows}

        def fed_alerts() -> set[str]:
            with engine.connect() as connection:
                return set(connection.execute(
                    select(alerts.c.encounter_id).where(
                        alerts.c.kind == "risk", alerts.c.raised_for == DEFAULT_NOW, alerts.c.encounter_id.in_(encounters)
                    )
                ).scalars())

        wait_for(lambda: any(r.status == "succeeded" for r in runs_of(engine, "score")), timeout=60,
                 what="a first score run", logs=[scheduler])
        fed = subprocess.run(
            [sys.executable, "-m", "riskcast", "--home", str(settings.home), "--json", "demo-feed", "--patients", "4"],
            capture_output=True, text=True, check=True,
        )
        feed = json.loads(fed.stdout)
        encounters.update(e["encounter_id"] for e in feed["encounters"])
        assert feed["hour"] == DEFAULT_NOW.isoformat() and len(encounters) == 4
        assert not fed_alerts(), "the feed must choose patients without an alert, or this test proves nothing"
        before = fed_scores()

        def revised() -> dict[str, tuple[float, int]]:
            now = fed_scores()
            return now if all(now[e][1] > before[e][1] for e in encounters) else {}

        after = wait_for(revised, timeout=60, what="the fed patients' scores of the hour revised", logs=[scheduler])
        assert all(after[e][0] > before[e][0] for e in encounters), (before, after)
        wait_for(fed_alerts, timeout=30, what="an alert for a fed patient", logs=[scheduler])
        assert scheduler.terminate() == 0
        # Every run is stamped on the demo clock: between its present and the present plus the time this test took.
        elapsed = datetime.now(UTC) - started_wall
        stamps = job_runs_frame(engine, limit=1000)["scheduled_for"].to_list()
        assert stamps and all(present <= t <= present + elapsed for t in stamps)
    finally:
        engine.dispose()
    assert not Path(feed["path"]).exists() and list((settings.home / "archive").rglob(Path(feed["path"]).name))
    assert "on a shifted clock" in scheduler.log()

