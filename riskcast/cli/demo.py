"""`riskcast demo`: the whole flow on a synthetic cohort, then the dashboard with the
scheduler running beside it; `riskcast demo-feed`: a file of new observations for it."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click

from riskcast.cli.app import cli, emit, friendly_errors, parse_time, settings_of
from riskcast.clock import wall_clock

DEMO_CLOCK_FILE = "demo-clock.json"
"""In the home: the demo's shifted clock, for `demo-feed`, `scheduler --present demo` and the
next `riskcast demo` (which carries on from where this one stopped)."""


def demo_clock_path(home: Path) -> Path:
    return home / DEMO_CLOCK_FILE


@cli.command()
@click.option("--encounters", type=click.IntRange(200), default=3000, show_default=True, help="Size of the synthetic cohort.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--retrain", is_flag=True, help="Train a new model even if a champion exists.")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the dashboard after the summary.")
@click.option("--scheduler/--no-scheduler", "with_scheduler", default=True, show_default=True,
              help="While serving, also run the scheduler (schemas/demo_schedule.yaml) on <home>/inbox.")
@click.option("--port", type=int, default=8050, show_default=True)
@click.pass_context
@friendly_errors
def demo(ctx: click.Context, encounters: int, seed: int, retrain: bool, serve: bool, with_scheduler: bool,
         port: int) -> None:
    """Synthesise, ingest, train, evaluate, score, print a summary, then serve the dashboard.

    Everything runs on the cohort's clock: the first demo starts at the cohort's present,
    2026-01-15 12:00 UTC, a later one where the last stopped, and time passes at real speed.
    Drop observation files into <home>/inbox (`riskcast demo-feed` writes one) and the ward
    board changes within a minute.
    """
    from riskcast.pipeline.demo import run_demo

    def progress(message: str) -> None:
        if not ctx.obj.get("json"):
            click.echo(f"… {message}", err=True)

    from riskcast.clock import resume_clock
    from riskcast.synth import DEFAULT_NOW

    settings = settings_of(ctx)
    # Everything the demo writes (alerts, events, runs) is stamped on the cohort's clock, which
    # carries on from where the last demo stopped (see riskcast.clock.resume_clock).
    clock_file = demo_clock_path(settings.home)
    clock = resume_clock(clock_file, start=DEFAULT_NOW)
    try:
        summary = run_demo(settings, now=clock(), encounters=encounters, seed=seed, retrain=retrain,
                           progress=progress)
    finally:
        clock.save(clock_file, running=False)
    emit(ctx, summary.to_dict(), summary.text)
    if not serve:
        return
    from riskcast.dashboards.app import serve as serve_dashboard

    # SIGTERM (systemctl stop, docker stop) ends the demo like Ctrl-C, so its clock is saved.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    clock.save(clock_file, running=True)
    service = engine = None
    if with_scheduler:
        from riskcast.jobs.scheduler import RiskcastScheduler
        from riskcast.jobs.schedule import DEMO_SCHEDULE_FILE, load_schedule
        from riskcast.store import open_store

        logging.getLogger("riskcast.jobs").setLevel(logging.INFO)
        engine = open_store(settings.database_url)
        service = RiskcastScheduler(load_schedule(packaged=DEMO_SCHEDULE_FILE), settings, engine=engine, clock=clock)
        service.start_background()
        inbox = settings.home / "inbox"
        click.echo(f"scheduler running (schemas/{DEMO_SCHEDULE_FILE}): files dropped in {inbox} are ingested "
                   "and scored within a minute; try `riskcast demo-feed` in another terminal", err=True)
    try:
        serve_dashboard(settings, port=port, clock=clock)
    finally:
        if service is not None:
            service.stop(wait=True)
        if engine is not None:
            engine.dispose()
        clock.save(clock_file, running=False)


@cli.command("demo-feed")
@click.option("--patients", type=click.IntRange(1, 50), default=3, show_default=True,
              help="How many patients deteriorate.")
@click.option("--at", "at_text", default=None,
              help="The time to feed (ISO 8601; default: the demo's clock, running or where it stopped; "
                   "without a demo clock, now).")
@click.option("--ward", default=None, help="Only patients on this ward (default: any ward).")
@click.option("--seed", type=int, default=0, show_default=True, help="Which patients are chosen.")
@click.pass_context
@friendly_errors
def demo_feed(ctx: click.Context, patients: int, at_text: str | None, ward: str | None, seed: int) -> None:
    """Drop a file of new observations into <home>/inbox: PATIENTS admitted patients, not
    flagged now, get a deteriorating set of vitals charted in the current clock hour.

    With `riskcast demo` running, the scheduler ingests it within ~10 s and rescoring the
    hour shows them on the ward board, with alerts, within a minute.
    """
    from riskcast.clock import read_clock_file
    from riskcast.pipeline.demo_feed import write_demo_feed

    settings = settings_of(ctx)
    at = parse_time(at_text)
    if at is None:
        clock_file = demo_clock_path(settings.home)
        at = read_clock_file(clock_file).current() if clock_file.is_file() else wall_clock()
    feed = write_demo_feed(settings, at=at, patients=patients, ward=ward, seed=seed)
    emit(ctx, feed.to_dict(), feed.text)
