"""`riskcast demo`: the whole flow on a synthetic cohort, then the dashboard."""

from __future__ import annotations

import click

from riskcast.cli.app import cli, emit, friendly_errors, now_utc, settings_of


@cli.command()
@click.option("--encounters", type=click.IntRange(200), default=3000, show_default=True, help="Size of the synthetic cohort.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--retrain", is_flag=True, help="Train a new model even if a champion exists.")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the dashboard after the summary.")
@click.option("--port", type=int, default=8050, show_default=True)
@click.pass_context
@friendly_errors
def demo(ctx: click.Context, encounters: int, seed: int, retrain: bool, serve: bool, port: int) -> None:
    """Synthesise, ingest, train, evaluate, score, print a summary, then serve the dashboard."""
    from riskcast.pipeline.demo import run_demo

    def progress(message: str) -> None:
        if not ctx.obj.get("json"):
            click.echo(f"… {message}", err=True)

    summary = run_demo(settings_of(ctx), now=now_utc(), encounters=encounters, seed=seed, retrain=retrain, progress=progress)
    emit(ctx, summary.to_dict(), summary.text)
    if serve:
        try:
            from riskcast.dashboards.app import serve as serve_dashboard
        except ImportError:
            click.echo("the dashboard is not part of this version yet; stopping after the summary", err=True)
            return
        from riskcast.dashboards.app import shifted_clock
        from riskcast.synth import DEFAULT_NOW

        # The synthetic cohort's present is DEFAULT_NOW: show the ward as it was then.
        serve_dashboard(settings_of(ctx), port=port, clock=shifted_clock(DEFAULT_NOW))
