"""Staff actions on alerts from the dashboard, through riskcast.alerts.state only.

Every value comes from the browser, so each is checked here on every call, and anything a
page could not have sent is refused with a sentence, never an error: the alert id must be a
whole number in the store's range, the snooze length a number of hours within the ward's
policy, the reason text of at most MAX_REASON_CHARACTERS; the user's role must allow acting
on alerts, and the alert must be on one of their wards. The actor recorded in the alert's
history is the signed-in user, never a name sent by the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from riskcast.alerts import state
from riskcast.dashboards.auth import DashboardUser
from riskcast.dashboards.components.text import clock_text
from riskcast.dashboards.context import context
from riskcast.errors import AlertError
from riskcast.read_models import alert_scope

ACTIONS = ("acknowledge", "snooze", "resolve")
MAX_ALERT_ID = 2**31 - 1
"""The largest id the store's alerts table holds (a 32-bit INTEGER on PostgreSQL)."""
MAX_REASON_CHARACTERS = 500
NOT_YOURS = "That alert is not on your wards."


@dataclass(frozen=True)
class ActionOutcome:
    """Whether an action was recorded, the sentence to show, and the alert's encounter (from
    the store; None when the alert was not found or not the user's)."""

    ok: bool
    message: str
    encounter_id: str | None = None


def valid_alert_id(value: object) -> int | None:
    """`value` when it can be an alert id (a whole number from 1 to MAX_ALERT_ID), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ALERT_ID:
        return None
    return value


def _snooze_hours(value: object, *, most: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    hours = float(value)
    return hours if math.isfinite(hours) and 0 < hours <= most else None


def act_on_alert(
    user: DashboardUser, alert_id: object, action: str, *, reason: object, snooze_hours: object
) -> ActionOutcome:
    """Acknowledge, snooze (for `snooze_hours`) or resolve alert `alert_id` as `user`.

    Returns an ActionOutcome; never raises for a refusal (the message says why).
    """
    if action not in ACTIONS:
        return ActionOutcome(False, "Unknown action.")
    if not user.may_act:
        return ActionOutcome(False, "Your role can see alerts but not act on them.")
    if reason is not None and not isinstance(reason, str):
        return ActionOutcome(False, "The reason must be text.")
    if reason is not None and len(reason) > MAX_REASON_CHARACTERS:
        return ActionOutcome(False, f"The reason is too long: at most {MAX_REASON_CHARACTERS} characters.")
    ctx = context()
    checked_id = valid_alert_id(alert_id)
    scope = alert_scope(ctx.engine, checked_id) if checked_id is not None else None
    if scope is None or not user.may_see_ward(scope.ward):
        return ActionOutcome(False, NOT_YOURS)
    now = ctx.clock()
    cleaned = (reason or "").strip() or None
    try:
        if action == "acknowledge":
            state.acknowledge(ctx.engine, scope.alert_id, actor=user.username, role=user.role, reason=cleaned, now=now,
                              policy_set=ctx.policy_set)  # fmt: skip
            return ActionOutcome(True, f"Acknowledged at {clock_text(now, ctx.zone, now=now)}.", scope.encounter_id)
        if action == "snooze":
            most = ctx.policy_set.for_ward(scope.ward).max_snooze_hours
            hours = _snooze_hours(snooze_hours, most=most)
            if hours is None:
                return ActionOutcome(False, f"Choose how long to snooze for (at most {most:g} h).", scope.encounter_id)
            until = now + timedelta(hours=hours)
            state.snooze(ctx.engine, scope.alert_id, actor=user.username, role=user.role, until=until, reason=cleaned or "",
                         now=now, policy_set=ctx.policy_set)  # fmt: skip
            return ActionOutcome(True, f"Snoozed until {clock_text(until, ctx.zone, now=now)}.", scope.encounter_id)
        state.resolve(ctx.engine, scope.alert_id, actor=user.username, role=user.role, reason=cleaned or "", now=now,
                      policy_set=ctx.policy_set)  # fmt: skip
        return ActionOutcome(True, f"Resolved at {clock_text(now, ctx.zone, now=now)}.", scope.encounter_id)
    except AlertError as exc:
        return ActionOutcome(False, _plain(str(exc)), scope.encounter_id)


def _plain(message: str) -> str:
    """AlertError's message for staff: first letter up, ends with a full stop."""
    text = message.strip()
    if not text:
        return "The alert could not be changed."
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."
