"""`riskcast alerts list|ack|snooze|resolve|history`: the same code path as the dashboard.

Acting on an alert signs in as a dashboard user (riskcast.cli.identity): the role and wards
come from the users table, and the history records the user, their role and the
operating-system account that ran the command.
"""

from __future__ import annotations

import click

from riskcast.cli.app import cli, emit, friendly_errors, parse_time, settings_of
from riskcast.cli.identity import authenticated_actor, may_act_on_alert, read_password
from riskcast.clock import wall_clock


def _engine(ctx: click.Context):
    from riskcast.store import open_store

    return open_store(settings_of(ctx).database_url)


def _no_role(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--role is not taken any more: the role comes from the users table. "
            "Give your dashboard user name with --user (you will be asked for its password)."
        )


def _actor_options(func):
    func = click.option("--role", hidden=True, expose_value=False, callback=_no_role)(func)
    func = click.option("--password-stdin", is_flag=True,
                        help="Read the password from the first line of standard input (else it is asked for).")(func)
    func = click.option("--user", "--by", "username", envvar="RISKCAST_USER", required=True,
                        help="Your dashboard user name (or $RISKCAST_USER); your role and wards come from the users table.")(func)
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


def _act(ctx: click.Context, action: str, alert_id: int, *, username: str, password_stdin: bool, **kwargs) -> None:
    from riskcast.alerts import state

    password = read_password(username, from_stdin=password_stdin)
    engine = _engine(ctx)
    try:
        actor = authenticated_actor(engine, username, password)
        may_act_on_alert(actor, engine, alert_id)
        snapshot = getattr(state, action)(engine, alert_id, actor=actor.user.username, role=actor.user.role,
                                          os_user=actor.os_user, now=wall_clock(), **kwargs)
    finally:
        engine.dispose()
    emit(ctx, {"alert_id": alert_id, "state": str(snapshot.state), "by": actor.user.username, "role": actor.user.role,
               "os_user": actor.os_user}, f"alert #{alert_id} is now {snapshot.state}")


@alerts.command("ack")
@click.argument("alert_id", type=int)
@_actor_options
@click.option("--reason", default=None)
@click.pass_context
@friendly_errors
def alerts_ack(ctx: click.Context, alert_id: int, username: str, password_stdin: bool, reason: str | None) -> None:
    """Acknowledge an alert, as dashboard user --user."""
    _act(ctx, "acknowledge", alert_id, username=username, password_stdin=password_stdin, reason=reason)


@alerts.command("snooze")
@click.argument("alert_id", type=int)
@_actor_options
@click.option("--until", "until_text", required=True, help="ISO 8601 time (bounded by the ward policy).")
@click.option("--reason", required=True)
@click.pass_context
@friendly_errors
def alerts_snooze(ctx: click.Context, alert_id: int, username: str, password_stdin: bool, until_text: str, reason: str) -> None:
    """Snooze an alert until a time, with a reason, as dashboard user --user."""
    _act(ctx, "snooze", alert_id, username=username, password_stdin=password_stdin, until=parse_time(until_text), reason=reason)


@alerts.command("resolve")
@click.argument("alert_id", type=int)
@_actor_options
@click.option("--reason", required=True)
@click.pass_context
@friendly_errors
def alerts_resolve(ctx: click.Context, alert_id: int, username: str, password_stdin: bool, reason: str) -> None:
    """Resolve an alert, with a reason, as dashboard user --user."""
    _act(ctx, "resolve", alert_id, username=username, password_stdin=password_stdin, reason=reason)


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
        f"by {r['actor']} ({r['role'] or 'system'}{', OS user ' + r['os_user'] if r.get('os_user') else ''})"
        f"{': ' + r['reason'] if r.get('reason') else ''}"
        for r in rows
    ) or "no alert events")
