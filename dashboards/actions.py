"""Staff actions on alerts from the dashboard, through riskcast.alerts.state only.

The alert id comes from the browser, so it is checked here on every call: the user's role
must allow acting on alerts, and the alert must be on one of their wards. The actor recorded
in the alert's history is the signed-in user, never a name sent by the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from riskcast.alerts import state
from riskcast.dashboards.auth import DashboardUser
from riskcast.dashboards.components.text import clock_text
from riskcast.dashboards.context import context
from riskcast.errors import AlertError
from riskcast.pipeline.views import alert_scope

ACTIONS = ("acknowledge", "snooze", "resolve")


@dataclass(frozen=True)
class ActionOutcome:
    """Whether an action was recorded, and the sentence to show."""

    ok: bool
    message: str


def act_on_alert(
    user: DashboardUser, alert_id: int | None, action: str, *, reason: str | None, snooze_hours: float | None
) -> ActionOutcome:
    """Acknowledge, snooze (for `snooze_hours`) or resolve alert `alert_id` as `user`.

    Returns an ActionOutcome; never raises for a refusal (the message says why).
    """
    if action not in ACTIONS:
        return ActionOutcome(False, f"Unknown action {action!r}.")
    if not user.may_act:
        return ActionOutcome(False, "Your role can see alerts but not act on them.")
    ctx = context()
    scope = alert_scope(ctx.engine, int(alert_id)) if isinstance(alert_id, int) else None
    if scope is None or not user.may_see_ward(scope.ward):
        return ActionOutcome(False, "That alert is not on your wards.")
    now = ctx.clock()
    cleaned = (reason or "").strip() or None
    try:
        if action == "acknowledge":
            state.acknowledge(ctx.engine, scope.alert_id, actor=user.username, role=user.role, reason=cleaned, now=now,
                              policy_set=ctx.policy_set)  # fmt: skip
            return ActionOutcome(True, f"Acknowledged at {clock_text(now, ctx.zone, now=now)}.")
        if action == "snooze":
            if not snooze_hours or snooze_hours <= 0:
                return ActionOutcome(False, "Choose how long to snooze for.")
            until = now + timedelta(hours=float(snooze_hours))
            state.snooze(ctx.engine, scope.alert_id, actor=user.username, role=user.role, until=until, reason=cleaned or "",
                         now=now, policy_set=ctx.policy_set)  # fmt: skip
            return ActionOutcome(True, f"Snoozed until {clock_text(until, ctx.zone, now=now)}.")
        state.resolve(ctx.engine, scope.alert_id, actor=user.username, role=user.role, reason=cleaned or "", now=now,
                      policy_set=ctx.policy_set)  # fmt: skip
        return ActionOutcome(True, f"Resolved at {clock_text(now, ctx.zone, now=now)}.")
    except AlertError as exc:
        return ActionOutcome(False, _plain(str(exc)))


def _plain(message: str) -> str:
    """AlertError's message for staff: first letter up, ends with a full stop."""
    text = message.strip()
    if not text:
        return "The alert could not be changed."
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."
