"""`riskcast alerts list|ack|snooze|resolve`: the same code path as the dashboard."""

from __future__ import annotations

import getpass

import click

from riskcast.cli.app import cli, emit, friendly_errors, now_utc, parse_time, settings_of


def _engine(ctx: click.Context):
    from riskcast.store import open_store

    return open_store(settings_of(ctx).database_url)


def _actor_options(func):
    func = click.option("--role", type=click.Choice(["nurse", "physician", "data_scientist", "admin"]), required=True,
                        help="Your role, recorded with the action.")(func)
    func = click.option("--by", "actor", default=None, help="Who acts (default: the login name).")(func)
    return func


@cli.group()
def alerts() -> None:
    """List alerts and acknowledge, snooze or resolve them."""


@alerts.command("list")
@click.option("--ward", default=None)
@click.option("--state", "states", multiple=True, type=click.Choice(["new", "acknowledged", "snoozed", "escalated", "resolved"]),
              help="Only these states (repeatable; default: open ones).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
@friendly_errors
def alerts_list(ctx: click.Context, ward: str | None, states: tuple[str, ...], limit: int) -> None:
    """Alerts, most urgent first."""
    from riskcast.alerts.state import list_alerts

    engine = _engine(ctx)
    try:
        frame = list_alerts(engine, ward=ward, states=list(states) or ["new", "escalated", "snoozed", "acknowledged"], limit=limit)
    finally:
        engine.dispose()
    rows = frame.to_dicts()
    emit(ctx, {"alerts": rows}, lambda: "\n".join(
        f"#{r['alert_id']:<5} {r['state']:<12} {r['kind']:<10} {r['ward']:<22} {r['encounter_id']:<12} "
        f"risk {r['risk'] if r['risk'] is None else format(r['risk'], '.3f')}  raised for {r['raised_for']}"
        for r in rows
    ) or "no alerts")


def _act(ctx: click.Context, action: str, alert_id: int, **kwargs) -> None:
    from riskcast.alerts import state

    engine = _engine(ctx)
    try:
        snapshot = getattr(state, action)(engine, alert_id, now=now_utc(), **kwargs)
    finally:
        engine.dispose()
    emit(ctx, {"alert_id": alert_id, "state": str(snapshot.state)}, f"alert #{alert_id} is now {snapshot.state}")


@alerts.command("ack")
@click.argument("alert_id", type=int)
@_actor_options
@click.option("--reason", default=None)
@click.pass_context
@friendly_errors
def alerts_ack(ctx: click.Context, alert_id: int, actor: str | None, role: str, reason: str | None) -> None:
    """Acknowledge an alert."""
    _act(ctx, "acknowledge", alert_id, actor=actor or getpass.getuser(), role=role, reason=reason)


@alerts.command("snooze")
@click.argument("alert_id", type=int)
@_actor_options
@click.option("--until", "until_text", required=True, help="ISO 8601 time (bounded by the ward policy).")
@click.option("--reason", required=True)
@click.pass_context
@friendly_errors
def alerts_snooze(ctx: click.Context, alert_id: int, actor: str | None, role: str, until_text: str, reason: str) -> None:
    """Snooze an alert until a time, with a reason."""
    _act(ctx, "snooze", alert_id, actor=actor or getpass.getuser(), role=role, until=parse_time(until_text), reason=reason)


@alerts.command("resolve")
@click.argument("alert_id", type=int)
@_actor_options
@click.option("--reason", required=True)
@click.pass_context
@friendly_errors
def alerts_resolve(ctx: click.Context, alert_id: int, actor: str | None, role: str, reason: str) -> None:
    """Resolve an alert, with a reason."""
    _act(ctx, "resolve", alert_id, actor=actor or getpass.getuser(), role=role, reason=reason)


@alerts.command("history")
@click.argument("encounter_id")
@click.pass_context
@friendly_errors
def alerts_history(ctx: click.Context, encounter_id: str) -> None:
    """Every alert event of an encounter: who did what, when and why."""
    from riskcast.alerts.state import alert_history

    engine = _engine(ctx)
    try:
        frame = alert_history(engine, encounter_id=encounter_id)
    finally:
        engine.dispose()
    rows = frame.to_dicts()
    emit(ctx, {"events": rows}, lambda: "\n".join(
        f"{r['at']}  alert #{r['alert_id']}  {r['action']:<13} {r.get('from_state') or '-'} → {r['to_state']}  "
        f"by {r['actor']} ({r['role'] or 'system'}){': ' + r['reason'] if r.get('reason') else ''}"
        for r in rows
    ) or "no alert events")
