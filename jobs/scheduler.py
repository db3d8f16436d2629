"""The scheduler process: APScheduler 3 firing riskcast's jobs from the schedule file.

Why no persistent APScheduler job store: APScheduler 3's SQLAlchemyJobStore pickles its
jobs, and riskcast never loads pickles. Nothing here needs one: what each job does is code
(riskcast.jobs.definitions) and when it runs is the schedule file, both read at every
start into APScheduler's in-memory store. What must survive a restart is in the store,
beside everything else:

- job_runs: one row per (job, scheduled_for), UNIQUE, with status, counts and error;
- job_locks: a lease per job, so two scheduler processes on one database never run the
  same job at once (riskcast.jobs.locks).

From those the scheduler does the bookkeeping a persistent job store would have done:

- catch-up: at start, a job whose latest fire time since its last recorded run was missed
  (the scheduler was down) runs once, if it is within the job's misfire grace time;
  several missed runs coalesce into the latest;
- recovery: at start and every `recover_every_seconds`, a run left "running" whose lease
  is free or expired (its process died) is run again for the same scheduled time and
  finished; one older than its misfire grace time is marked failed instead.

Every firing passes its scheduled time to the job (`ScheduledForExecutor`), so a run is
keyed by the time it was due, not the time it happened to start.

On a shifted clock (riskcast.clock.ShiftedClock: the demo, whose data ends at 2026-01-15
12:00 UTC) the schedule still fires by the wall clock, and each run is stamped with the
shifted time it fired at: an hourly score job scores the shifted present's hour, and runs,
leases and alerts carry shifted times, as the dashboard on the same clock expects.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import Engine

from riskcast.alerts.state import sync_system_alert
from riskcast.clock import Clock, offset_of, wall_clock
from riskcast.config import Settings
from riskcast.jobs.locks import JobLease, is_held, this_process_holder
from riskcast.jobs.runner import RunOutcome, execute_job
from riskcast.jobs.runs import JobRunRecord, RunStatus, finish_job_run, get_job_run, latest_job_runs, running_job_runs
from riskcast.jobs.schedule import Schedule, latest_missed_fire_time, next_fire_time

log = logging.getLogger(__name__)
RECOVER_JOB_ID = "riskcast:recover"


class _WithScheduledFor:
    """An APScheduler job seen with `scheduled_for=<its run time>` added to its keyword arguments."""

    def __init__(self, job: Any, run_time: datetime) -> None:
        self._job = job
        self.kwargs = {"scheduled_for": run_time, **job.kwargs}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


def _run_with_scheduled_for(
    job: Any, jobstore_alias: str, run_times: list[datetime], logger_name: str, offset: timedelta
) -> list[Any]:
    events: list[Any] = []
    for run_time in run_times:
        events.extend(run_job(_WithScheduledFor(job, run_time + offset), jobstore_alias, [run_time], logger_name))
    return events


class ScheduledForExecutor(ThreadPoolExecutor):
    """A thread pool that tells each job the time it was scheduled for (APScheduler's own
    executors call the function without it), on the scheduler's clock: APScheduler's wall
    run time plus `offset` (zero unless the clock is shifted)."""

    def __init__(self, max_workers: int, *, offset: timedelta = timedelta(0)) -> None:
        super().__init__(max_workers=max_workers)
        self.offset = offset

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def callback(future: Any) -> None:
            exc = future.exception()
            if exc:
                self._run_job_error(job.id, exc, getattr(exc, "__traceback__", None))
            else:
                self._run_job_success(job.id, future.result())

        future = self._pool.submit(
            _run_with_scheduled_for, job, job._jobstore_alias, run_times, self._logger.name, self.offset
        )
        future.add_done_callback(callback)


class RiskcastScheduler:
    """riskcast's jobs on an APScheduler scheduler, with catch-up and crash recovery.

        RiskcastScheduler(schedule, settings, engine=open_store(settings.database_url)).run()

    `run()` blocks until `stop()` (or SIGTERM/SIGINT via `install_signal_handlers`);
    `start_background()` runs it in threads instead (tests, embedding).
    """

    def __init__(self, schedule: Schedule, settings: Settings, *, engine: Engine, clock: Clock = wall_clock) -> None:
        self.schedule = schedule
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.offset = offset_of(clock)
        self.holder = this_process_holder()
        self._scheduler: BaseScheduler | None = None

    # ------------------------------------------------------------------ firing

    def fire(self, name: str, scheduled_for: datetime | None = None) -> RunOutcome:
        """Run `name` for `scheduled_for` through the shared path; waits for a busy lease up to
        the job's misfire grace time (after which this firing would be too late anyway).

        `scheduled_for` is given by ScheduledForExecutor (it is optional only because
        APScheduler checks the function's arguments before it is known).
        """
        if scheduled_for is None:
            raise ValueError(f"job {name}: fired without its scheduled time; use ScheduledForExecutor")
        grace = self.schedule.job(name).misfire_grace_seconds
        return execute_job(
            name, scheduled_for, settings=self.settings, engine=self.engine, schedule=self.schedule,
            clock=self.clock, holder=self.holder, wait_seconds=grace,
        )

    def recover(self) -> list[str]:
        """Finish the runs dead processes left "running"; the ids of what was resubmitted or abandoned."""
        now = self.clock()
        acted = []
        for record in running_job_runs(self.engine):
            job_schedule = self.schedule.jobs.get(record.job)
            if job_schedule is None or is_held(self.engine, record.job, now=now, me=self.holder):
                continue
            key = f"recover:{record.job}:{record.scheduled_for.isoformat()}"
            late = now - record.scheduled_for
            if late > timedelta(seconds=job_schedule.misfire_grace_seconds):
                if self._abandon(record, late=late, grace_seconds=job_schedule.misfire_grace_seconds):
                    acted.append(key)
                continue
            if self._scheduler is None or self._scheduler.get_job(key) is not None:
                continue
            log.warning("job %s scheduled for %s was left running by a process that stopped; running it again",
                        record.job, record.scheduled_for.isoformat())
            self._scheduler.add_job(
                self.fire, trigger="date", run_date=wall_clock(), id=key, name=key,
                kwargs={"name": record.job, "scheduled_for": record.scheduled_for},
                misfire_grace_time=None, coalesce=True, max_instances=1,
            )
            acted.append(key)
        return acted

    def _abandon(self, record: JobRunRecord, *, late: timedelta, grace_seconds: int) -> bool:
        """Mark a dead process's run failed (too late to rerun), holding the job's lease while at it."""
        lease = JobLease(self.engine, record.job, lease_seconds=self.schedule.lease_seconds, holder=self.holder,
                         clock=self.clock)
        if not lease.acquire():
            return False
        with lease:
            current = get_job_run(self.engine, record.job, record.scheduled_for)
            if current is None or current.status != RunStatus.RUNNING:
                return False
            now = self.clock()
            error = (f"interrupted at step {current.counts.get('step', 'start')!r} (its process stopped) and "
                     f"{late.total_seconds() / 60:.0f} min late, beyond the misfire grace time of "
                     f"{grace_seconds} s: not rerun; later runs take over")
            finish_job_run(self.engine, current.id, status=RunStatus.FAILED, now=now, error=error)
        sync_system_alert(self.engine, f"job:{record.job}", f"{record.job}: {error}",
                          raised_for=record.scheduled_for, now=now)
        log.warning("job %s scheduled for %s: %s", record.job, record.scheduled_for.isoformat(), error)
        return True

    def _recover_safely(self) -> None:
        try:
            self.recover()
        except Exception as exc:  # noqa: BLE001 - try again at the next sweep
            log.error("recovery sweep failed: %s: %s", type(exc).__name__, exc)

    # ------------------------------------------------------------------ assembly

    def _build(self, scheduler: BaseScheduler) -> BaseScheduler:
        now = wall_clock()  # triggers fire by the wall clock; runs are stamped on self.clock
        latest = latest_job_runs(self.engine)
        for job in self.schedule.enabled_jobs:
            options: dict[str, Any] = {}
            last = latest.get(job.name)
            missed = latest_missed_fire_time(
                job.trigger, last_scheduled=None if last is None else last.scheduled_for - self.offset, now=now,
                grace_seconds=job.misfire_grace_seconds,
            )
            if missed is not None:
                log.warning("job %s missed its run at %s while no scheduler ran; running it now",
                            job.name, (missed + self.offset).isoformat())
                options["next_run_time"] = missed
            scheduler.add_job(
                self.fire, trigger=job.trigger, id=job.name, name=job.name, kwargs={"name": job.name},
                coalesce=True, max_instances=1, misfire_grace_time=job.misfire_grace_seconds, **options,
            )
        scheduler.add_job(
            self._recover_safely, trigger="interval", seconds=self.schedule.recover_every_seconds,
            id=RECOVER_JOB_ID, name=RECOVER_JOB_ID, next_run_time=now, coalesce=True, max_instances=1,
            executor="recovery",
        )
        return scheduler

    def _executors(self) -> dict[str, Any]:
        workers = len(self.schedule.jobs) + 4
        return {
            "default": ScheduledForExecutor(max_workers=workers, offset=self.offset),
            "recovery": ThreadPoolExecutor(max_workers=1),
        }

    def run(self) -> None:
        """Run in the foreground until stopped."""
        scheduler = BlockingScheduler(executors=self._executors(), timezone=self.schedule.zone)
        self._scheduler = self._build(scheduler)
        self._log_start()
        scheduler.start()

    def start_background(self) -> None:
        """Run in background threads; `stop()` ends it."""
        scheduler = BackgroundScheduler(executors=self._executors(), timezone=self.schedule.zone)
        self._scheduler = self._build(scheduler)
        self._log_start()
        scheduler.start()

    def stop(self, *, wait: bool = False) -> None:
        """Stop firing jobs; with `wait`, also wait for running ones to finish."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop firing and let running jobs finish; a second one exits at once
        (a run cut short is finished by the next start)."""
        received = threading.Event()

        def handle(signum: int, _frame: Any) -> None:
            if received.is_set():
                log.warning("second %s: exiting now; interrupted runs finish at the next start",
                            signal.Signals(signum).name)
                os._exit(1)
            received.set()
            log.warning("%s: stopping; running jobs finish first (send it again to exit now)",
                        signal.Signals(signum).name)
            threading.Thread(target=self.stop, name="riskcast-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _log_start(self) -> None:
        now = wall_clock()
        log.info("riskcast scheduler %s started: %d job(s) from %s, time zone %s", self.holder,
                 len(self.schedule.enabled_jobs), self.schedule.source, self.schedule.timezone)
        if self.offset:
            log.info("  on a shifted clock: it is %s for the jobs (wall clock + %s)",
                     self.clock().isoformat(timespec="seconds"), self.offset)
        for job in self.schedule.enabled_jobs:
            upcoming = next_fire_time(job.trigger, now=now)
            log.info("  %-12s %s; next %s", job.name, job.timing, upcoming.isoformat() if upcoming else "never")
