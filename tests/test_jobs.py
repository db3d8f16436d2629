"""The scheduler's parts, in-process and fast: schedule and DST, leases, job runs, the runner,
ingest, the monitor job, housekeeping and the `riskcast jobs` commands (what the monitor
judges is tested in tests/test_monitoring.py and tests/test_monitor.py).

Lease and job-run tests run on a SQLite file and, when a server answers at
127.0.0.1:5432/test (or RISKCAST_TEST_POSTGRES_URL), on PostgreSQL in a schema of their own.
The real scheduler process is exercised in tests/e2e/test_scheduler_process.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.pool import NullPool

from riskcast.alerts.state import system_alerts_frame
from riskcast.cli import cli
from riskcast.config import Settings
from riskcast.errors import ConfigError
from riskcast.jobs.definitions import JOBS, JobContext, ready_entries, run_housekeeping, run_ingest, run_monitor
from riskcast.jobs.locks import JobLease, holder_is_gone, lock_info, this_process_holder, try_acquire
from riskcast.jobs.runner import execute_job
from riskcast.jobs.runs import claim_job_run, finish_job_run, get_job_run, job_runs_frame, RunStatus
from riskcast.jobs.scheduler import RiskcastScheduler
from riskcast.jobs.schedule import (
    JOB_NAMES,
    JOB_OPTIONS,
    WallClockCronTrigger,
    fire_times,
    latest_missed_fire_time,
    load_schedule,
    parse_schedule,
)
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths
from riskcast.store import open_store
from riskcast.store.tables import alert_events, quarantine
from riskcast.synth import generate_cohort, write_cohort
from waiting import wait_until

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)


# --- backends (postgres_admin_url comes from tests/conftest.py) -----------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty, migrated store: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        engine = open_store(f"sqlite:///{tmp_path / 'riskcast.db'}")
        yield engine
        engine.dispose()
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    if admin_url is None:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432/test")
    schema = f"riskcast_jobs_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = open_store(f"{admin_url}?options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """Settings for an empty riskcast home with a SQLite store inside it."""
    return Settings(home=tmp_path / "home")


@pytest.fixture
def home_store(home: Settings) -> Iterator[Engine]:
    engine = open_store(home.database_url)
    yield engine
    engine.dispose()


def fast_schedule(**jobs: dict) -> object:
    """A schedule of the given jobs (every 5 s unless said), short leases."""
    spec = {name: {"every_seconds": 5, **values} for name, values in jobs.items()}
    return parse_schedule({"timezone": "Europe/London", "lease_seconds": 3, "jobs": spec}, source="test")


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def local_days(times: list[datetime]) -> Counter:
    return Counter(t.astimezone(LONDON).date().isoformat() for t in times)


# --- schedule ------------------------------------------------------------------------------


def test_packaged_schedule_has_every_job_and_each_has_a_definition() -> None:
    schedule = load_schedule()
    assert tuple(schedule.jobs) == JOB_NAMES
    assert set(JOBS) == set(JOB_NAMES) == set(JOB_OPTIONS)
    assert schedule.timezone == "Europe/London"
    assert all(job.enabled for job in schedule.jobs.values())


def test_home_schedule_file_overrides_the_packaged_one(tmp_path: Path) -> None:
    (tmp_path / "schedule.yaml").write_text("timezone: UTC\njobs:\n  score:\n    cron: '5 * * * *'\n")
    schedule = load_schedule(home=tmp_path)
    assert list(schedule.jobs) == ["score"] and schedule.source.endswith("schedule.yaml")


def test_unknown_key_in_a_job_is_refused_naming_the_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"site.yaml: jobs.score: unknown key\(s\) \['crn'\]"):
        parse_schedule({"jobs": {"score": {"crn": "* * * * *"}}}, source="site.yaml")


def test_a_misspelt_job_option_is_refused_listing_the_jobs_options() -> None:
    with pytest.raises(ConfigError, match=r"jobs.ingest.options: unknown option\(s\) \['settle_second'\]; "
                                          r"ingest takes: settle_seconds"):
        parse_schedule({"jobs": {"ingest": {"cron": "*/5 * * * *", "options": {"settle_second": 5}}}}, source="s.yaml")


def test_unknown_job_name_is_refused_listing_the_known_jobs() -> None:
    with pytest.raises(ConfigError, match=r"unknown job\(s\) \['scoring'\]; riskcast's jobs are ingest, score"):
        parse_schedule({"jobs": {"scoring": {"cron": "0 * * * *"}}}, source="site.yaml")


def test_a_crontab_with_the_wrong_number_of_fields_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"jobs.nightly.cron: '30 2 \* \*' has 4 fields; a crontab has 5"):
        parse_schedule({"jobs": {"nightly": {"cron": "30 2 * *"}}}, source="site.yaml")


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ConfigError, match="timezone 'Europe/Londres' is not an IANA zone name"):
        parse_schedule({"timezone": "Europe/Londres", "jobs": {"score": {"cron": "0 * * * *"}}}, source="s.yaml")


# --- DST -----------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [datetime(2026, 3, 29, tzinfo=LONDON), datetime(2026, 10, 25, tzinfo=LONDON)],
                         ids=["march", "october"])
def test_packaged_nightly_runs_exactly_once_on_each_day_around_a_dst_change(change: datetime) -> None:
    trigger = load_schedule().job("nightly").trigger
    times = fire_times(trigger, after=change - timedelta(days=2), until=change + timedelta(days=3))
    assert local_days(times) == {(change + timedelta(days=d)).date().isoformat(): 1 for d in range(-2, 3)}
    assert {t.astimezone(LONDON).strftime("%H:%M") for t in times} == {"02:30"}


@pytest.mark.parametrize("change", [datetime(2026, 3, 29, tzinfo=LONDON), datetime(2026, 10, 25, tzinfo=LONDON)],
                         ids=["march-gap", "october-repeat"])
def test_nightly_inside_the_changing_hour_still_runs_once_per_day(change: datetime) -> None:
    trigger = WallClockCronTrigger(hour="1", minute="30", timezone=LONDON)
    times = fire_times(trigger, after=change - timedelta(days=1), until=change + timedelta(days=2))
    assert local_days(times) == {(change + timedelta(days=d)).date().isoformat(): 1 for d in range(-1, 2)}


def test_apschedulers_own_cron_trigger_would_run_a_nightly_twice_in_october() -> None:
    """Why WallClockCronTrigger exists: 01:30 happens twice on 25 October 2026 in London."""
    plain = CronTrigger(hour="1", minute="30", timezone=LONDON)
    change = datetime(2026, 10, 25, tzinfo=LONDON)
    times = fire_times(plain, after=change - timedelta(hours=1), until=change + timedelta(hours=23))
    assert len(times) == 2


@pytest.mark.parametrize(("day", "runs"), [(datetime(2026, 3, 29, tzinfo=LONDON), 23),
                                           (datetime(2026, 10, 25, tzinfo=LONDON), 25)])
def test_hourly_score_runs_every_real_hour_on_dst_days(day: datetime, runs: int) -> None:
    trigger = load_schedule().job("score").trigger
    times = fire_times(trigger, after=day, until=day + timedelta(days=1) - timedelta(seconds=1))
    assert len(times) == runs
    assert len(set(times)) == runs and all(b - a == timedelta(hours=1) for a, b in zip(times, times[1:]))


def test_missed_runs_within_grace_coalesce_into_the_latest() -> None:
    trigger = WallClockCronTrigger(minute="*/5", timezone=LONDON)
    last = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
    missed = latest_missed_fire_time(trigger, last_scheduled=last, now=datetime(2026, 2, 2, 9, 17, tzinfo=UTC),
                                     grace_seconds=600)
    assert missed == datetime(2026, 2, 2, 9, 15, tzinfo=UTC)


def test_missed_runs_beyond_grace_or_before_any_run_are_not_caught_up() -> None:
    trigger = WallClockCronTrigger(hour="2", minute="30", timezone=LONDON)
    last = datetime(2026, 2, 1, 2, 30, tzinfo=UTC)
    late = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
    assert latest_missed_fire_time(trigger, last_scheduled=last, now=late, grace_seconds=3600) is None
    assert latest_missed_fire_time(trigger, last_scheduled=None, now=late, grace_seconds=10**6) is None


# --- leases --------------------------------------------------------------------------------


def test_only_one_holder_gets_a_jobs_lease(store: Engine) -> None:
    assert try_acquire(store, "score", holder="host-a:1:aaa", lease_seconds=60, now=NOW)
    assert not try_acquire(store, "score", holder="host-b:1:bbb", lease_seconds=60, now=NOW + timedelta(seconds=30))
    assert try_acquire(store, "ingest", holder="host-b:1:bbb", lease_seconds=60, now=NOW)
    assert lock_info(store, "score").holder == "host-a:1:aaa"


def test_a_lease_is_not_reentrant_for_its_own_holder(store: Engine) -> None:
    assert try_acquire(store, "score", holder="host-a:1:aaa", lease_seconds=60, now=NOW)
    assert not try_acquire(store, "score", holder="host-a:1:aaa", lease_seconds=60, now=NOW)


def test_an_expired_lease_is_taken_over(store: Engine) -> None:
    assert try_acquire(store, "score", holder="host-a:1:aaa", lease_seconds=60, now=NOW)
    assert try_acquire(store, "score", holder="host-b:1:bbb", lease_seconds=60, now=NOW + timedelta(seconds=61))
    assert lock_info(store, "score").holder == "host-b:1:bbb"


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(store: Engine) -> None:
    me = this_process_holder()
    host = me.rsplit(":", 2)[0]
    dead = f"{host}:{dead_pid()}:0123456789ab"
    assert holder_is_gone(dead) and not holder_is_gone(me) and not holder_is_gone("elsewhere:1:abc")
    assert try_acquire(store, "score", holder=dead, lease_seconds=600, now=NOW)
    assert try_acquire(store, "score", holder=me, lease_seconds=600, now=NOW + timedelta(seconds=1))


def test_threads_racing_for_one_lease_get_it_exactly_once(store: Engine) -> None:
    barrier = threading.Barrier(8)
    winners: list[str] = []

    def contend(index: int) -> None:
        holder = f"racer-{index}:1:x"
        barrier.wait()
        if try_acquire(store, "nightly", holder=holder, lease_seconds=60, now=NOW):
            winners.append(holder)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and lock_info(store, "nightly").holder == winners[0]


def test_a_heartbeat_keeps_a_lease_past_its_length_and_release_frees_it(store: Engine) -> None:
    lease = JobLease(store, "retrain", lease_seconds=0.3, holder="host-a:1:aaa")
    assert lease.acquire()
    acquired = lock_info(store, "retrain").acquired_at

    def renewed_past_three_lengths() -> bool:
        assert not try_acquire(store, "retrain", holder="host-b:1:bbb", lease_seconds=1, now=datetime.now(UTC))
        return lock_info(store, "retrain").expires_at - acquired > timedelta(seconds=3 * 0.3)

    wait_until(renewed_past_three_lengths, timeout=30, what="the heartbeat to renew the lease past its length")
    lease.release()
    assert lock_info(store, "retrain") is None and not lease.lost


# --- job runs ------------------------------------------------------------------------------


def test_a_finished_run_is_not_claimed_again(store: Engine) -> None:
    claim = claim_job_run(store, "score", NOW, now=NOW)
    assert claim.reason == "new" and claim.record.status == "running"
    finish_job_run(store, claim.record.id, status=RunStatus.SUCCEEDED, now=NOW, counts={"scored": 3})
    again = claim_job_run(store, "score", NOW, now=NOW + timedelta(minutes=1))
    assert not again.claimed and "already succeeded" in again.reason
    assert get_job_run(store, "score", NOW).counts == {"attempt": 1, "scored": 3}


def test_a_run_left_running_is_resumed_as_the_next_attempt(store: Engine) -> None:
    first = claim_job_run(store, "score", NOW, now=NOW)
    resumed = claim_job_run(store, "score", NOW, now=NOW + timedelta(minutes=2))
    assert resumed.reason == "resumed" and resumed.record.id == first.record.id
    assert resumed.record.attempt == 2 and resumed.record.started_at == NOW + timedelta(minutes=2)


def test_a_failed_run_is_retried_only_when_asked(store: Engine) -> None:
    run = claim_job_run(store, "ingest", NOW, now=NOW).record
    finish_job_run(store, run.id, status=RunStatus.FAILED, now=NOW, error="IngestError: bad file")
    assert not claim_job_run(store, "ingest", NOW, now=NOW).claimed
    retry = claim_job_run(store, "ingest", NOW, now=NOW, retry_failed=True)
    assert retry.reason == "retry" and retry.record.error is None and retry.record.attempt == 2


# --- runner --------------------------------------------------------------------------------


def test_a_failing_job_is_recorded_with_its_error_and_raises_a_system_alert(home: Settings, home_store: Engine) -> None:
    outcome = execute_job("score", NOW, settings=home, engine=home_store, schedule=fast_schedule(score={}))
    assert outcome.status == "failed"
    run = get_job_run(home_store, "score", NOW)
    assert run.status == "failed" and run.finished_at is not None
    assert run.error.startswith("LakeError: the lake at ") and "is empty" in run.error
    open_alerts = system_alerts_frame(home_store)
    assert open_alerts["subject"].to_list() == ["job:score"]
    assert "score run scheduled for 2026-02-02T10:00:00+00:00 failed: LakeError" in open_alerts["reason"][0]


def test_after_a_failure_the_next_run_still_runs_and_its_success_resolves_the_alert(
    home: Settings, home_store: Engine
) -> None:
    schedule = fast_schedule(ingest={"options": {"settle_seconds": 0}})
    drop = write_drop(home.home / "inbox" / "drop-1")
    home.lake_dir.parent.mkdir(parents=True, exist_ok=True)
    home.lake_dir.write_text("a file where the lake should be")  # the lake cannot be written: not the data's fault
    failed = execute_job("ingest", NOW, settings=home, engine=home_store, schedule=schedule)
    assert failed.status == "failed" and failed.reason.startswith(("FileExistsError", "NotADirectoryError"))
    assert drop.exists() and not (home.home / "inbox" / "rejected").exists()  # left in place for the next run
    home.lake_dir.unlink()
    later = execute_job("ingest", NOW + timedelta(minutes=5), settings=home, engine=home_store, schedule=schedule)
    assert later.status == "succeeded" and not drop.exists()
    assert system_alerts_frame(home_store).height == 0
    with home_store.connect() as connection:
        actions = connection.execute(select(alert_events.c.action).order_by(alert_events.c.id)).scalars().all()
    assert actions == ["raised", "resolved"]
    assert job_runs_frame(home_store)["status"].to_list() == ["succeeded", "failed"]


def test_a_job_running_elsewhere_is_skipped_and_leaves_no_run(home: Settings, home_store: Engine) -> None:
    assert try_acquire(home_store, "housekeeping", holder="other-host:1:abc", lease_seconds=60, now=datetime.now(UTC))
    outcome = execute_job("housekeeping", NOW, settings=home, engine=home_store,
                          schedule=fast_schedule(housekeeping={}))
    assert outcome.status == "skipped" and "locked by other-host:1:abc" in outcome.reason
    assert get_job_run(home_store, "housekeeping", NOW) is None


def test_the_same_scheduled_time_runs_once_however_often_it_is_fired(home: Settings, home_store: Engine) -> None:
    schedule = fast_schedule(housekeeping={})
    outcomes = [execute_job("housekeeping", NOW, settings=home, engine=home_store, schedule=schedule).status
                for _ in range(3)]
    assert outcomes == ["succeeded", "skipped", "skipped"]
    assert job_runs_frame(home_store).height == 1


def test_the_scheduler_finishes_a_run_a_dead_process_left_running(home: Settings, home_store: Engine) -> None:
    schedule = fast_schedule(housekeeping={"every_seconds": 3600, "misfire_grace_seconds": 600})
    scheduled = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    dead = f"{this_process_holder().rsplit(':', 2)[0]}:{dead_pid()}:feedfacecafe"
    assert try_acquire(home_store, "housekeeping", holder=dead, lease_seconds=600, now=datetime.now(UTC))
    claim_job_run(home_store, "housekeeping", scheduled, now=datetime.now(UTC))
    service = RiskcastScheduler(schedule, home, engine=home_store)
    service.start_background()
    try:
        wait_until(lambda: get_job_run(home_store, "housekeeping", scheduled).status != "running", timeout=10,
                   what="the interrupted run to be finished")
    finally:
        service.stop(wait=True)
    run = get_job_run(home_store, "housekeeping", scheduled)
    assert run.status == "succeeded" and run.attempt == 2 and run.counts["resumed_after_step"] == "start"


def test_a_run_missed_while_no_scheduler_ran_is_caught_up_once_at_start(home: Settings, home_store: Engine) -> None:
    schedule = parse_schedule({"timezone": "Europe/London", "jobs": {
        "housekeeping": {"cron": "0 * * * *", "misfire_grace_seconds": 7200}}}, source="test")
    now = datetime.now(UTC)
    due = now.replace(minute=0, second=0, microsecond=0)  # London is UTC or UTC+1: both have whole hours
    done = claim_job_run(home_store, "housekeeping", due - timedelta(hours=2), now=due - timedelta(hours=2)).record
    finish_job_run(home_store, done.id, status=RunStatus.SUCCEEDED, now=due - timedelta(hours=2))
    service = RiskcastScheduler(schedule, home, engine=home_store)
    service.start_background()
    try:
        wait_until(lambda: (run := get_job_run(home_store, "housekeeping", due)) is not None
                   and run.status == "succeeded", timeout=10, what="the missed run to be caught up")
    finally:
        service.stop(wait=True)
    assert get_job_run(home_store, "housekeeping", due - timedelta(hours=1)) is None  # coalesced into one
    assert job_runs_frame(home_store).height == 2


def test_a_run_left_running_beyond_its_grace_time_is_marked_failed_not_rerun(
    home: Settings, home_store: Engine
) -> None:
    schedule = fast_schedule(housekeeping={"every_seconds": 3600, "misfire_grace_seconds": 60})
    scheduled = datetime.now(UTC) - timedelta(hours=2)
    claim_job_run(home_store, "housekeeping", scheduled, now=scheduled)
    RiskcastScheduler(schedule, home, engine=home_store).recover()
    run = get_job_run(home_store, "housekeeping", scheduled)
    assert run.status == "failed" and "beyond the misfire grace time of 60 s: not rerun" in run.error
    assert run.attempt == 1


# --- ingest --------------------------------------------------------------------------------


def write_drop(folder: Path, *, seed: int = 1) -> Path:
    tables = generate_cohort(25, seed=seed, malformed_rate=0.05, now=datetime(2026, 2, 2, 9, tzinfo=UTC))
    write_cohort(tables, folder, fmt="csv")
    return folder


def context(settings: Settings, engine: Engine, *, job: str, options: dict | None = None,
            at: datetime = NOW) -> JobContext:
    return JobContext(job=job, scheduled_for=at, settings=settings, engine=engine, options=options or {},
                      clock=lambda: datetime.now(UTC))


def test_ingest_moves_settled_inbox_files_into_the_archive_under_their_batch(
    home: Settings, home_store: Engine
) -> None:
    write_drop(home.home / "inbox" / "drop-1")
    counts = run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}))
    batch = counts["batch_id"]
    assert batch in Lake(home.lake_dir).committed_batch_ids()
    assert not any((home.home / "inbox").iterdir())
    assert (home.home / "archive" / batch / "drop-1" / "observations.csv").exists()
    lake_quarantined = Lake(home.lake_dir).scan_quarantine().collect().height
    with home_store.connect() as connection:
        stored = connection.execute(select(quarantine.c.batch_id)).scalars().all()
    assert counts["quarantined"] == lake_quarantined == len(stored) > 0 and set(stored) == {batch}


def test_ingest_leaves_files_that_may_still_be_copying(home: Settings, home_store: Engine) -> None:
    write_drop(home.home / "inbox" / "drop-1")
    (home.home / "inbox" / "observations.csv.part").write_text("encounter_id\n")
    counts = run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 3600}))
    assert counts == {"files": 0} and Lake(home.lake_dir).is_empty()
    assert ready_entries(home.home / "inbox", now=datetime.now(UTC), settle_seconds=0) == [home.home / "inbox" / "drop-1"]


def test_ingest_rerun_after_a_crash_before_archiving_archives_and_stores_the_quarantine(
    home: Settings, home_store: Engine
) -> None:
    drop = write_drop(home.home / "inbox" / "drop-1")
    summary, _ = ingest_paths([drop], lake=Lake(home.lake_dir), now=NOW)  # the run died right after this
    counts = run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}))
    assert counts["batch_id"] is None and counts["already_ingested"]
    assert (home.home / "archive" / summary.batch_id / "drop-1").is_dir()
    assert counts["quarantine_rows_stored"] == summary.total_quarantined > 0
    assert Lake(home.lake_dir).committed_batch_ids() == [summary.batch_id]


def test_an_inbox_file_that_cannot_be_ingested_goes_to_rejected_with_a_note_and_an_alert_and_the_next_go_on(
    home: Settings, home_store: Engine
) -> None:
    inbox = home.home / "inbox"
    write_drop(inbox / "drop-1")
    (inbox / "notes.txt").write_text("hello")  # not a table at all
    (inbox / "observations-broken.csv").write_bytes(b"\x00\x01\x02")  # binary
    counts = run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}))
    assert (home.home / "archive" / counts["batch_id"] / "drop-1" / "observations.csv").exists()
    rejected = inbox / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == [
        "notes.txt", "notes.txt.why.txt", "observations-broken.csv", "observations-broken.csv.why.txt"
    ]
    assert counts["rejected"] == ["notes.txt", "observations-broken.csv"]
    note = (rejected / "observations-broken.csv.why.txt").read_text()
    assert "observations-broken.csv line 1: unreadable_file: the file is not UTF-8 text (it holds NUL bytes)" in note
    assert "cannot tell which table this file holds" in (rejected / "notes.txt.why.txt").read_text()
    assert oct((rejected / "notes.txt.why.txt").stat().st_mode & 0o777) == "0o600"
    alerts = system_alerts_frame(home_store)
    assert alerts["subject"].to_list() == ["ingest:rejected"]
    assert alerts["reason"][0].startswith("2 inbox entries could not be ingested and wait in inbox/rejected/")

    write_drop(inbox / "drop-2", seed=2)  # the next file goes on; the rejected ones are not picked up again
    later = run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}, at=NOW + timedelta(minutes=5)))
    assert later["files"] == 1 and later["rejected"] == [] and later["batch_id"] is not None
    assert system_alerts_frame(home_store)["subject"].to_list() == ["ingest:rejected"]  # still waiting

    shutil.rmtree(rejected)  # a person dealt with them
    run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}, at=NOW + timedelta(minutes=10)))
    assert system_alerts_frame(home_store).height == 0


def test_an_inbox_file_with_no_rows_is_rejected_and_the_run_succeeds(home: Settings, home_store: Engine) -> None:
    inbox = home.home / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "observations.csv").write_text("encounter_id,charttime,variable,value,unit\n")
    outcome = execute_job("ingest", NOW, settings=home, engine=home_store, schedule=fast_schedule(ingest={"options": {"settle_seconds": 0}}))
    assert outcome.status == "succeeded", outcome.reason
    assert "the files hold no rows" in (inbox / "rejected" / "observations.csv.why.txt").read_text()
    assert Lake(home.lake_dir).is_empty()


def test_a_rejected_file_dropped_again_is_rejected_again_from_the_lakes_record(home: Settings, home_store: Engine) -> None:
    inbox = home.home / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "observations-broken.csv").write_bytes(b"\x00\x01\x02")
    run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}))
    (inbox / "observations-broken.csv").write_bytes(b"\x00\x01\x02")  # the same content once more
    again = run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}, at=NOW + timedelta(minutes=5)))
    assert again["already_ingested"] and again["rejected"] == ["observations-broken.csv"]
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
        "observations-broken-1.csv", "observations-broken-1.csv.why.txt",
        "observations-broken.csv", "observations-broken.csv.why.txt",
    ]
    assert "unreadable_file" in (inbox / "rejected" / "observations-broken-1.csv.why.txt").read_text()
    assert len(Lake(home.lake_dir).committed_batch_ids()) == 1


# --- monitor -------------------------------------------------------------------------------


def test_the_monitor_job_records_what_it_judged_and_the_failed_runs_of_its_window(
    home: Settings, home_store: Engine
) -> None:
    failing = fast_schedule(score={})
    execute_job("score", NOW - timedelta(hours=1), settings=home, engine=home_store, schedule=failing)  # no model
    write_drop(home.home / "inbox" / "drop-1")
    run_ingest(context(home, home_store, job="ingest", options={"settle_seconds": 0}))
    counts = run_monitor(context(home, home_store, job="monitor", options={"lookback_hours": 72}))
    assert counts["failed_jobs"] == {"score": 1}
    assert counts["drift"] == {"note": "no champion model yet: nothing to compare with"}
    assert counts["feeds"]["wards"] >= 1 and counts["at"] == NOW.isoformat()
    assert set(counts["system_alerts"]) == {"raised", "resolved"}
    with pytest.raises(ConfigError, match="monitor option lookback_hours: expected a number"):
        run_monitor(context(home, home_store, job="monitor", options={"lookback_hours": "a week"}))


# --- housekeeping --------------------------------------------------------------------------


def test_housekeeping_removes_old_scratch_and_quarantine_rows_but_never_the_lake(
    home: Settings, home_store: Engine
) -> None:
    old, new = home.home / "scratch" / "aaaa", home.home / "scratch" / "bbbb"
    for folder in (old, new, home.lake_dir / "batches"):
        folder.mkdir(parents=True)
        (folder / "file.json").write_text("{}")
    long_ago = (NOW - timedelta(days=90)).timestamp()
    for path in (old, old / "file.json", home.lake_dir / "batches" / "file.json"):
        os.utime(path, (long_ago, long_ago))
    with home_store.begin() as connection:
        connection.execute(insert(quarantine), [
            {"batch_id": "b1", "table_name": "observations", "rule": "out_of_range", "created_at": NOW - timedelta(days=400)},
            {"batch_id": "b2", "table_name": "observations", "rule": "out_of_range", "created_at": NOW - timedelta(days=10)},
        ])
    counts = run_housekeeping(context(home, home_store, job="housekeeping", options={"scratch_days": 30}))
    assert counts["scratch_removed"] == ["aaaa"] and not old.exists() and new.exists()
    assert (home.lake_dir / "batches" / "file.json").exists()
    assert counts["quarantine_rows_deleted"] == 1
    with home_store.connect() as connection:
        assert connection.execute(select(quarantine.c.batch_id)).scalars().all() == ["b2"]


# --- commands ------------------------------------------------------------------------------


def test_jobs_list_shows_each_jobs_next_run_in_local_time_and_its_last_run(tmp_path: Path) -> None:
    runner = CliRunner()
    home_dir = tmp_path / "home"
    failed = runner.invoke(cli, ["--home", str(home_dir), "--json", "jobs", "run", "score"], obj={})
    assert failed.exit_code == 1, failed.output
    listed = runner.invoke(cli, ["--home", str(home_dir), "--json", "jobs", "list"], obj={})
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    by_job = {row["job"]: row for row in data["jobs"]}
    assert list(by_job) == list(JOB_NAMES)
    nightly_local = datetime.fromisoformat(by_job["nightly"]["next_run_local"])
    assert (nightly_local.hour, nightly_local.minute) == (2, 30)
    assert by_job["score"]["last_run"]["status"] == "failed" and by_job["ingest"]["last_run"] is None


def test_jobs_run_with_an_unknown_name_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "jobs", "run", "scores"], obj={})
    assert result.exit_code == 1
    assert "error: schemas/schedule.yaml: no job 'scores' in the schedule (jobs: ingest, score" in result.output
