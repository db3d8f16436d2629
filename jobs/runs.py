"""Every job run is a row in the store's job_runs table, keyed by (job, scheduled_for).

A run is claimed (inserted as "running") by the holder of the job's lease, then finished as
"succeeded" (with its counts) or "failed" (with the error). The key is UNIQUE in the
database, so one scheduled time runs once however many schedulers fire it; a row left
"running" by a process that died is claimed again ("resumed") by the next holder of the
lease and finished then. The dashboard's data-health page reads these rows
(`job_runs_frame`).

All times are UTC-aware; `now` is passed in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import polars as pl
from sqlalchemy import Engine, delete, func, insert, select, update

from riskcast.errors import StoreError
from riskcast.store import write_transaction
from riskcast.store.tables import job_runs

MAX_ERROR_CHARS = 2000
_UTC = pl.Datetime("us", "UTC")
JOB_RUNS_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "job": pl.String(),
    "scheduled_for": _UTC,
    "started_at": _UTC,
    "finished_at": _UTC,
    "status": pl.String(),
    "seconds": pl.Float64(),
    "attempt": pl.Int64(),
    "counts": pl.String(),
    "error": pl.String(),
}


class RunStatus(StrEnum):
    """Where a job run is: running until it finishes one way or the other."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobRunRecord:
    """One row of job_runs."""

    id: int
    job: str
    scheduled_for: datetime
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: dict[str, Any]
    error: str | None

    @property
    def attempt(self) -> int:
        return int(self.counts.get("attempt", 1))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("scheduled_for", "started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a run: the row to run (None when there is nothing to do) and why."""

    record: JobRunRecord | None
    reason: str

    @property
    def claimed(self) -> bool:
        return self.record is not None


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(timezone.utc)


def _record(row: Any) -> JobRunRecord:
    return JobRunRecord(
        id=row.id,
        job=row.job,
        scheduled_for=row.scheduled_for,
        started_at=row.started_at,
        finished_at=row.finished_at,
        status=row.status,
        counts=dict(row.counts or {}),
        error=row.error,
    )


def get_job_run(engine: Engine, job: str, scheduled_for: datetime) -> JobRunRecord | None:
    """The run of `job` scheduled for `scheduled_for`, or None."""
    scheduled_for = _utc(scheduled_for, "scheduled_for")
    with engine.connect() as connection:
        row = connection.execute(
            select(job_runs).where(job_runs.c.job == job, job_runs.c.scheduled_for == scheduled_for)
        ).one_or_none()
    return None if row is None else _record(row)


def claim_job_run(
    engine: Engine,
    job: str,
    scheduled_for: datetime,
    *,
    now: datetime,
    holder: str | None = None,
    retry_failed: bool = False,
    force: bool = False,
) -> Claim:
    """Mark (job, scheduled_for) running and return it, unless it already finished.

    The caller must hold the job's lease (riskcast.jobs.locks), so a row found "running"
    was left by a holder that is gone: it is resumed (attempt + 1). A failed run is run
    again only with `retry_failed`, a succeeded one only with `force`. `holder` (who runs it)
    is noted in the counts.
    """
    scheduled_for, now = _utc(scheduled_for, "scheduled_for"), _utc(now, "now")
    where = (job_runs.c.job == job, job_runs.c.scheduled_for == scheduled_for)
    with write_transaction(engine) as connection:
        row = connection.execute(select(job_runs).where(*where)).one_or_none()
        if row is None:
            connection.execute(
                insert(job_runs).values(
                    job=job, scheduled_for=scheduled_for, started_at=now, status=RunStatus.RUNNING.value,
                    counts={"attempt": 1, **({"holder": holder} if holder else {})}, error=None,
                )
            )
            reason = "new"
        else:
            previous = _record(row)
            if previous.status == RunStatus.RUNNING:
                reason = "resumed"
            elif previous.status == RunStatus.FAILED and (retry_failed or force):
                reason = "retry"
            elif force:
                reason = "forced"
            else:
                return Claim(None, f"{job} scheduled for {scheduled_for.isoformat()} already {previous.status}")
            counts: dict[str, Any] = {"attempt": previous.attempt + 1, **({"holder": holder} if holder else {})}
            if reason == "resumed":
                counts["resumed_after_step"] = previous.counts.get("step", "start")
            connection.execute(
                update(job_runs).where(*where).values(
                    started_at=now, finished_at=None, status=RunStatus.RUNNING.value, counts=counts, error=None
                )
            )
        claimed = connection.execute(select(job_runs).where(*where)).one()
    return Claim(_record(claimed), reason)


def record_step(engine: Engine, run_id: int, step: str) -> None:
    """Note in the run's counts the step it has reached ("step"), for people and for recovery."""
    with write_transaction(engine) as connection:
        counts = connection.execute(select(job_runs.c.counts).where(job_runs.c.id == run_id)).scalar_one_or_none()
        if counts is None:
            raise StoreError(f"job_runs: no run with id {run_id}")
        connection.execute(update(job_runs).where(job_runs.c.id == run_id).values(counts={**counts, "step": step}))


def finish_job_run(
    engine: Engine,
    run_id: int,
    *,
    status: RunStatus,
    now: datetime,
    counts: dict[str, Any] | None = None,
    error: str | None = None,
) -> JobRunRecord:
    """Finish a run: its status, when, its counts (merged into what it had) and any error."""
    if status == RunStatus.RUNNING:
        raise ValueError("finish_job_run: status must be succeeded or failed")
    now = _utc(now, "now")
    if error is not None and len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 1] + "…"
    with write_transaction(engine) as connection:
        previous = connection.execute(select(job_runs.c.counts).where(job_runs.c.id == run_id)).scalar_one_or_none()
        if previous is None:
            raise StoreError(f"job_runs: no run with id {run_id}")
        merged = {**previous, **json.loads(json.dumps(counts or {}, default=str))}
        merged.pop("step", None)
        connection.execute(
            update(job_runs).where(job_runs.c.id == run_id).values(
                finished_at=now, status=status.value, counts=merged, error=error
            )
        )
        row = connection.execute(select(job_runs).where(job_runs.c.id == run_id)).one()
    return _record(row)


def running_job_runs(engine: Engine) -> list[JobRunRecord]:
    """Every run marked running, oldest scheduled first (live ones and ones a dead process left)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(job_runs).where(job_runs.c.status == RunStatus.RUNNING.value).order_by(job_runs.c.scheduled_for)
        ).all()
    return [_record(row) for row in rows]


def latest_job_runs(engine: Engine) -> dict[str, JobRunRecord]:
    """Per job, its run with the latest scheduled_for (any status)."""
    with engine.connect() as connection:
        latest = (
            select(job_runs.c.job, func.max(job_runs.c.scheduled_for).label("scheduled_for"))
            .group_by(job_runs.c.job)
            .subquery()
        )
        rows = connection.execute(
            select(job_runs).join(
                latest, (job_runs.c.job == latest.c.job) & (job_runs.c.scheduled_for == latest.c.scheduled_for)
            )
        ).all()
    return {row.job: _record(row) for row in rows}


def last_succeeded(engine: Engine) -> dict[str, datetime]:
    """Per job, when its latest successful run finished (UTC)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(job_runs.c.job, func.max(job_runs.c.finished_at))
            .where(job_runs.c.status == RunStatus.SUCCEEDED.value)
            .group_by(job_runs.c.job)
        ).all()
    return {job: finished for job, finished in rows}


def job_runs_frame(
    engine: Engine,
    *,
    job: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> pl.DataFrame:
    """Job runs, newest scheduled first (columns: JOB_RUNS_SCHEMA; counts as JSON text).

    `seconds` is finished_at - started_at (null while running). For the data-health page
    and `riskcast jobs history`.
    """
    query = select(job_runs)
    if job is not None:
        query = query.where(job_runs.c.job == job)
    if status is not None:
        query = query.where(job_runs.c.status == status)
    if since is not None:
        query = query.where(job_runs.c.scheduled_for >= _utc(since, "since"))
    query = query.order_by(job_runs.c.scheduled_for.desc(), job_runs.c.id.desc()).limit(limit)
    with engine.connect() as connection:
        records = [_record(row) for row in connection.execute(query).all()]
    rows = [
        (
            r.id, r.job, r.scheduled_for, r.started_at, r.finished_at, r.status,
            (r.finished_at - r.started_at).total_seconds() if r.finished_at else None,
            r.attempt, json.dumps(r.counts, sort_keys=True), r.error,
        )
        for r in records
    ]
    return pl.DataFrame(rows, schema=JOB_RUNS_SCHEMA, orient="row")


def delete_finished_runs_before(engine: Engine, cutoff: datetime) -> int:
    """Delete finished runs scheduled before `cutoff`; the number deleted (running ones stay)."""
    with write_transaction(engine) as connection:
        result = connection.execute(
            delete(job_runs).where(
                job_runs.c.scheduled_for < _utc(cutoff, "cutoff"), job_runs.c.status != RunStatus.RUNNING.value
            )
        )
    return int(result.rowcount or 0)


def failed_runs_by_job(engine: Engine, *, start: datetime, end: datetime) -> dict[str, int]:
    """How many runs of each job scheduled in (start, end] failed (jobs with none are left out)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(job_runs.c.job, func.count()).where(
                job_runs.c.status == RunStatus.FAILED.value,
                job_runs.c.scheduled_for > _utc(start, "start"), job_runs.c.scheduled_for <= _utc(end, "end"),
            ).group_by(job_runs.c.job)
        ).all()  # fmt: skip
    return {job: int(n) for job, n in rows}
