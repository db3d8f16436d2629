"""Scheduler commands: `riskcast scheduler` (the service) and `riskcast jobs list|run|history`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from riskcast.cli.app import cli, emit, friendly_errors, parse_time, settings_of
from riskcast.clock import wall_clock

_CONFIG_HELP = "Schedule file (default: <home>/schedule.yaml, else the packaged schemas/schedule.yaml)."


def _schedule(ctx: click.Context, config: Path | None):
    from riskcast.jobs.schedule import load_schedule

    return load_schedule(config, home=settings_of(ctx).home)



class _JobLogLevels:
    """Set the jobs' and flows' loggers to `level` for one command, and put them back on close,
    so a command run in-process (tests, a notebook) leaves the caller's logging as it was."""

    NAMES = ("riskcast.jobs", "riskcast.pipeline")

    def __init__(self, level: int) -> None:
        self.saved = {name: logging.getLogger(name).level for name in self.NAMES}
        for name in self.NAMES:
            logging.getLogger(name).setLevel(level)

    def close(self) -> None:
        for name, level in self.saved.items():
            logging.getLogger(name).setLevel(level)

@cli.command()
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), default=None, help=_CONFIG_HELP)
@click.option("--present", "present_text", default=None, metavar="TIME|demo",
              help="Run on a shifted clock that shows TIME (ISO 8601) now, for data whose present is not "
                   "today; `demo` shares the running `riskcast demo`'s clock. Not for a hospital.")
@click.pass_context
@friendly_errors
def scheduler(ctx: click.Context, config: Path | None, present_text: str | None) -> None:
    """Run the job scheduler in the foreground (ingest, score, monitor, nightly, retrain, ...).

    Logs each run to stderr; every run is also a row in the store's job_runs table. Stop it
    with SIGTERM or Ctrl-C: running jobs finish first (a second signal exits at once).
    """
    from riskcast.clock import read_clock_file, shifted_clock
    from riskcast.cli.demo import demo_clock_path
    from riskcast.errors import ConfigError
    from riskcast.jobs.scheduler import RiskcastScheduler
    from riskcast.store import open_store

    settings = settings_of(ctx)
    schedule = _schedule(ctx, config)
    if present_text == "demo":
        saved = read_clock_file(demo_clock_path(settings.home))
        if not saved.is_live():
            raise ConfigError(f"no `riskcast demo` is serving from {settings.home} (its clock file says it stopped, "
                              "or its process is gone): start it, or give --present TIME")
        clock = saved.clock
    elif present_text is not None:
        clock = shifted_clock(parse_time(present_text))
    else:
        clock = wall_clock
    ctx.call_on_close(_JobLogLevels(logging.INFO).close)
    engine = open_store(settings.database_url)
    try:
        service = RiskcastScheduler(schedule, settings, engine=engine, clock=clock)
        service.install_signal_handlers()
        service.run()
    finally:
        engine.dispose()


@cli.group()
def jobs() -> None:
    """List the scheduled jobs, run one now, or show past runs."""


@jobs.command("list")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), default=None, help=_CONFIG_HELP)
@click.pass_context
@friendly_errors
def jobs_list(ctx: click.Context, config: Path | None) -> None:
    """Each job's schedule, next run, and last run with its status."""
    from riskcast.jobs.definitions import JOBS
    from riskcast.jobs.runs import last_succeeded, latest_job_runs
    from riskcast.jobs.schedule import next_fire_time
    from riskcast.store import open_store

    schedule = _schedule(ctx, config)
    now = wall_clock()
    engine = open_store(settings_of(ctx).database_url)
    try:
        latest, succeeded = latest_job_runs(engine), last_succeeded(engine)
    finally:
        engine.dispose()
    rows = []
    for job in schedule.jobs.values():
        upcoming = next_fire_time(job.trigger, now=now) if job.enabled else None
        last = latest.get(job.name)
        rows.append({
            "job": job.name,
            "description": JOBS[job.name].description,
            "schedule": job.timing,
            "enabled": job.enabled,
            "next_run": upcoming.isoformat() if upcoming else None,
            "next_run_local": upcoming.astimezone(schedule.zone).isoformat() if upcoming else None,
            "last_run": None if last is None else {
                "scheduled_for": last.scheduled_for.isoformat(), "status": last.status,
                "finished_at": last.finished_at.isoformat() if last.finished_at else None, "error": last.error,
            },
            "last_succeeded_at": succeeded[job.name].isoformat() if job.name in succeeded else None,
        })
    data = {"schedule": schedule.source, "timezone": schedule.timezone, "jobs": rows}

    def text() -> str:
        lines = [f"schedule {schedule.source} ({schedule.timezone})",
                 f"  {'job':<13} {'next run (local)':<26} {'last run (UTC)':<26} status"]
        for row in rows:
            upcoming = row["next_run_local"][:19].replace("T", " ") if row["next_run_local"] else "disabled"
            last = row["last_run"]
            when = last["scheduled_for"][:19].replace("T", " ") if last else "never"
            status = last["status"] if last else ""
            if last and last["error"]:
                status += f": {last['error'][:80]}"
            lines.append(f"  {row['job']:<13} {upcoming:<26} {when:<26} {status}")
        return "\n".join(lines)

    emit(ctx, data, text)


@jobs.command("run")
@click.argument("name")
@click.option("--at", "at_text", default=None, help="The scheduled time to run it for (ISO 8601; default: now).")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), default=None, help=_CONFIG_HELP)
@click.option("--force", is_flag=True, help="Run it again even if that scheduled time already succeeded.")
@click.pass_context
@friendly_errors
def jobs_run(ctx: click.Context, name: str, at_text: str | None, config: Path | None, force: bool) -> None:
    """Run job NAME once now, through the scheduler's own code path (lock, job_runs row).

    A time that already failed is retried; one that succeeded is skipped unless --force.
    Exits 1 when the run fails, 2 when it was skipped (already done, or running elsewhere).
    """
    from riskcast.jobs.runner import execute_job
    from riskcast.store import open_store

    settings = settings_of(ctx)
    schedule = _schedule(ctx, config)
    schedule.job(name)
    levels = _JobLogLevels(logging.INFO if not ctx.obj.get("json") else logging.WARNING)
    ctx.call_on_close(levels.close)
    engine = open_store(settings.database_url)
    try:
        outcome = execute_job(
            name, parse_time(at_text) or wall_clock(), settings=settings, engine=engine, schedule=schedule,
            retry_failed=True, force=force,
        )
    finally:
        engine.dispose()
    data = outcome.to_dict()

    def text() -> str:
        line = f"{name} for {data['scheduled_for']}: {outcome.status}"
        if outcome.status != "succeeded":
            return f"{line}: {outcome.reason}"
        counts = {k: v for k, v in (outcome.record.counts if outcome.record else {}).items() if k != "archived"}
        return f"{line}\n  " + json.dumps(counts, default=str)

    emit(ctx, data, text)
    if outcome.status == "failed":
        ctx.exit(1)
    if outcome.status == "skipped":
        ctx.exit(2)


@jobs.command("history")
@click.option("--job", "job_name", default=None, help="Only this job.")
@click.option("--status", type=click.Choice(["running", "succeeded", "failed"]), default=None)
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.pass_context
@friendly_errors
def jobs_history(ctx: click.Context, job_name: str | None, status: str | None, limit: int) -> None:
    """Past job runs, newest first: scheduled time, status, duration, error."""
    from riskcast.jobs.runs import job_runs_frame
    from riskcast.store import open_store

    engine = open_store(settings_of(ctx).database_url)
    try:
        frame = job_runs_frame(engine, job=job_name, status=status, limit=limit)
    finally:
        engine.dispose()
    rows = frame.to_dicts()
    for row in rows:
        row["counts"] = json.loads(row["counts"])
    emit(ctx, {"runs": rows}, lambda: "\n".join(
        f"  {r['job']:<13} {r['scheduled_for'].isoformat()[:19]} {r['status']:<10} "
        f"{'' if r['seconds'] is None else format(r['seconds'], '.1f') + ' s':>9} {r['error'] or ''}"
        for r in rows
    ) or "no job runs yet")

