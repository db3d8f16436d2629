"""Run one job for one scheduled time: the single path the scheduler and `riskcast jobs run` share.

    outcome = execute_job("score", scheduled_for, settings=settings, engine=engine, schedule=schedule)

1. Take the job's lease (riskcast.jobs.locks): if someone alive holds it, wait up to
   `wait_seconds`, then give up ("skipped"): the job is running elsewhere.
2. Claim the (job, scheduled_for) row in job_runs (riskcast.jobs.runs): a run that already
   finished is not run again ("skipped"); one left "running" by a dead process is resumed.
3. Run the job's function with a JobContext; record "succeeded" with its counts, or
   "failed" with the error (type and message; the traceback goes to the log at DEBUG only,
   as it may quote data). A failure raises the system alert "job:<name>"; the job's next
   success resolves it.
4. Release the lease.

The jobs themselves are idempotent for a scheduled time (scores are unique per model,
encounter and hour; alerts per encounter, kind and hour; lake batches by content), so a
resumed run completes what the dead one started without duplicating anything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine

from riskcast.alerts.state import sync_system_alert
from riskcast.clock import wall_clock
from riskcast.config import Settings
from riskcast.jobs.definitions import JOBS, JobContext
from riskcast.jobs.locks import Clock, JobLease, lock_info
from riskcast.jobs.runs import JobRunRecord, RunStatus, claim_job_run, finish_job_run, record_step
from riskcast.jobs.schedule import Schedule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one request to run a job: succeeded, failed or skipped (and why)."""

    job: str
    scheduled_for: datetime
    status: str
    reason: str
    record: JobRunRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "scheduled_for": self.scheduled_for.isoformat(),
            "status": self.status,
            "reason": self.reason,
            "run": None if self.record is None else self.record.to_dict(),
        }


def error_text(exc: BaseException) -> str:
    """The error as stored in job_runs: its type and message, on one line."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def execute_job(
    name: str,
    scheduled_for: datetime,
    *,
    settings: Settings,
    engine: Engine,
    schedule: Schedule,
    clock: Clock = wall_clock,
    holder: str | None = None,
    wait_seconds: float = 0.0,
    retry_failed: bool = False,
    force: bool = False,
) -> RunOutcome:
    """Run job `name` for `scheduled_for` (timezone-aware) once, recorded in job_runs.

    Never raises for a failing job (the failure is recorded and returned); raises
    ConfigError for a job that is not in the schedule. See the module docstring.
    """
    job_schedule = schedule.job(name)
    definition = JOBS[name]
    if scheduled_for.tzinfo is None:
        raise ValueError(f"scheduled_for must be timezone-aware, got naive {scheduled_for.isoformat()}")
    scheduled_for = scheduled_for.astimezone(timezone.utc)
    lease = JobLease(engine, name, lease_seconds=schedule.lease_seconds, holder=holder, clock=clock)
    if not lease.acquire(wait_seconds=wait_seconds, poll_seconds=min(2.0, schedule.lease_seconds / 10)):
        info = lock_info(engine, name)
        who = f" by {info.holder} since {info.acquired_at.isoformat()}" if info else ""
        reason = f"{name} is running elsewhere (locked{who})"
        log.info("job %s scheduled for %s skipped: %s", name, scheduled_for.isoformat(), reason)
        return RunOutcome(name, scheduled_for, "skipped", reason)
    with lease:
        claim = claim_job_run(engine, name, scheduled_for, now=clock(), holder=lease.holder,
                              retry_failed=retry_failed, force=force)
        if claim.record is None:
            log.info("job %s scheduled for %s skipped: %s", name, scheduled_for.isoformat(), claim.reason)
            return RunOutcome(name, scheduled_for, "skipped", claim.reason)
        run = claim.record
        if claim.reason != "new":
            log.warning("job %s scheduled for %s: %s (attempt %d)", name, scheduled_for.isoformat(), claim.reason,
                        run.attempt)

        def step(label: str) -> None:
            record_step(engine, run.id, label)

        context = JobContext(
            job=name, scheduled_for=scheduled_for, settings=settings, engine=engine,
            options=dict(job_schedule.options), clock=clock, step=step,
        )
        started = time.perf_counter()
        log.info("job %s scheduled for %s: started (%s)", name, scheduled_for.isoformat(), claim.reason)
        try:
            context.step("started")
            counts = definition.run(context) or {}
        except Exception as exc:  # a failing job is recorded, never fatal to the scheduler
            error = error_text(exc)
            log.error("job %s scheduled for %s failed after %.1f s: %s", name, scheduled_for.isoformat(),
                      time.perf_counter() - started, error)
            log.debug("job %s traceback", name, exc_info=True)
            extra = {"lease_lost": True} if lease.lost else {}
            record = finish_job_run(engine, run.id, status=RunStatus.FAILED, now=clock(), counts=extra, error=error)
            _sync_alert(engine, name, f"{name} run scheduled for {scheduled_for.isoformat()} failed: {error}",
                        scheduled_for=scheduled_for, now=clock())
            return RunOutcome(name, scheduled_for, "failed", error, record)
        if lease.lost:
            counts = {**counts, "lease_lost": True}
        counts = {**counts, "seconds": round(time.perf_counter() - started, 3)}
        record = finish_job_run(engine, run.id, status=RunStatus.SUCCEEDED, now=clock(), counts=counts)
        log.info("job %s scheduled for %s: succeeded in %.1f s", name, scheduled_for.isoformat(), counts["seconds"])
        _sync_alert(engine, name, None, scheduled_for=scheduled_for, now=clock())
        return RunOutcome(name, scheduled_for, "succeeded", claim.reason, record)


def _sync_alert(engine: Engine, name: str, problem: str | None, *, scheduled_for: datetime, now: datetime) -> None:
    """Raise or clear the job's system alert; a failure to do so is logged, not raised."""
    try:
        change = sync_system_alert(engine, f"job:{name}", problem, raised_for=scheduled_for, now=now)
    except Exception as exc:  # noqa: BLE001 - the run's own record matters more
        log.error("job %s: could not update its system alert: %s", name, error_text(exc))
        return
    if change.action in ("raised", "resolved"):
        log.warning("job %s: system alert %s", name, change.action)
