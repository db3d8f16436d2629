"""The alert policy on a controlled clock: loading, thresholds, hysteresis, suppression,
re-alerting, escalation, snooze expiry and stale-data alerts. Pure: no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from riskcast.alerts.policy import (
    ActionType,
    AlertKind,
    AlertPolicy,
    AlertSnapshot,
    AlertState,
    ScoreSnapshot,
    decide,
    due_escalations,
    expired_snoozes,
    load_policy,
    parse_policy,
)
from riskcast.errors import ConfigError

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
HOUR = NOW.replace(minute=0)
POLICY = AlertPolicy(raise_threshold=0.30, clear_ratio=0.8, suppression_hours=6, re_alert_step=0.10,
                     escalate_after_minutes=30, max_snooze_hours=4).resolve(None)  # fmt: skip


def score(risk: float | None, *, at: datetime = HOUR, status: str | None = None) -> ScoreSnapshot:
    return ScoreSnapshot(
        encounter_id="E1",
        patient_id="P1",
        ward="W1",
        scored_at=at,
        risk=risk,
        status=status or ("scored" if risk is not None else "insufficient_data"),
        model_version="v1",
    )


def alert(
    state: AlertState = AlertState.NEW,
    *,
    risk: float | None = 0.35,
    kind: AlertKind = AlertKind.RISK,
    raised_at: datetime = NOW - timedelta(minutes=10),
    updated_at: datetime | None = None,
    snoozed_until: datetime | None = None,
    pending_since: datetime | None = None,
) -> AlertSnapshot:
    return AlertSnapshot(
        alert_id=7,
        encounter_id="E1",
        patient_id="P1",
        ward="W1",
        kind=kind,
        state=state,
        raised_at=raised_at,
        raised_for=raised_at.replace(minute=0),
        risk=risk,
        updated_at=updated_at or raised_at,
        snoozed_until=snoozed_until,
        pending_since=pending_since if state == AlertState.NEW else None,
    )


def types(actions: list) -> list[ActionType]:
    return [action.type for action in actions]


# --- loading -----------------------------------------------------------------------------


def test_packaged_policy_defers_to_the_model_threshold_and_clears_at_80_percent_of_it() -> None:
    policy = load_policy().for_ward("any ward")
    assert policy.raise_threshold is None
    resolved = policy.resolve(0.25)
    assert resolved.raise_threshold == 0.25
    assert resolved.clear_threshold == pytest.approx(0.20)
    assert (resolved.suppression_hours, resolved.re_alert_step, resolved.escalate_after_minutes) == (6, 0.10, 30)


def test_a_ward_override_changes_only_the_keys_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "defaults: {raise_threshold: 0.3, clear_threshold: 0.25, escalate_after_minutes: 30}\n"
        "wards:\n  ICU: {raise_threshold: 0.5, stale_data_alert: false}\n"
    )
    policies = load_policy(path)
    icu = policies.for_ward("ICU").resolve(None)
    assert (icu.raise_threshold, icu.stale_data_alert, icu.escalate_after_minutes) == (0.5, False, 30)
    assert icu.clear_threshold == pytest.approx(0.4)  # its own raise x clear_ratio, not the default's 0.25
    assert policies.for_ward("W1").resolve(None).clear_threshold == 0.25


def test_unknown_policy_key_is_refused_naming_the_file_ward_and_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("defaults: {}\nwards:\n  ICU: {escalate_after_minute: 10}\n")
    with pytest.raises(ConfigError, match=r"policy\.yaml: wards\.ICU: unknown key\(s\) \['escalate_after_minute'\]"):
        load_policy(path)


def test_threshold_outside_zero_one_is_refused() -> None:
    expected = r"defaults\.raise_threshold: expected a probability in \[0, 1\] or 'model', got 1\.5"
    with pytest.raises(ConfigError, match=expected):
        parse_policy({"defaults": {"raise_threshold": 1.5}})


def test_clear_threshold_at_or_above_raise_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"clear_threshold 0\.3 must be below raise_threshold 0\.3"):
        parse_policy({"defaults": {"raise_threshold": 0.3, "clear_threshold": 0.3}})


def test_model_policy_without_a_model_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="raise_threshold is 'model' but no model threshold"):
        AlertPolicy().resolve(None)


def test_decide_refuses_an_unresolved_policy() -> None:
    with pytest.raises(ConfigError, match=r"call policy\.resolve\(model_threshold\) first"):
        decide(None, score(0.9), policy=AlertPolicy(), now=NOW)


# --- raising and hysteresis -------------------------------------------------------------


def test_risk_at_the_raise_threshold_raises() -> None:
    actions = decide(None, score(0.30), policy=POLICY, now=NOW)
    assert types(actions) == [ActionType.RAISE]
    assert actions[0].risk == 0.30 and "0.300 at or above raise threshold 0.300" in actions[0].reason


def test_risk_below_the_raise_threshold_raises_nothing() -> None:
    assert decide(None, score(0.29), policy=POLICY, now=NOW) == []


@pytest.mark.parametrize("risk", [0.24, 0.27, 0.31, 0.39])
def test_an_open_alert_stays_quiet_while_risk_hovers_between_clear_and_raise(risk: float) -> None:
    # clear 0.24, raise 0.30; a rise under the 0.10 step over 0.35 is no news either
    assert decide(alert(), score(risk), policy=POLICY, now=NOW) == []


def test_unacknowledged_alert_clears_itself_when_risk_falls_below_the_clear_threshold() -> None:
    actions = decide(alert(AlertState.NEW), score(0.23), policy=POLICY, now=NOW)
    assert types(actions) == [ActionType.AUTO_RESOLVE]
    assert "fell below clear threshold 0.240" in actions[0].reason


@pytest.mark.parametrize("state", [AlertState.ACKNOWLEDGED, AlertState.ESCALATED, AlertState.SNOOZED])
def test_alert_someone_has_seen_is_not_cleared_by_falling_risk(state: AlertState) -> None:
    open_alert = alert(state, snoozed_until=NOW + timedelta(hours=1) if state == AlertState.SNOOZED else None)
    assert decide(open_alert, score(0.05), policy=POLICY, now=NOW) == []


def test_insufficient_data_never_clears_or_raises_a_risk_alert() -> None:
    assert decide(alert(), score(None), policy=POLICY, now=NOW) == []
    assert decide(None, score(None), policy=POLICY, now=NOW) == []


def test_a_late_score_for_an_hour_before_the_alert_is_ignored() -> None:
    open_alert = alert(raised_at=NOW)
    assert decide(open_alert, score(0.01, at=HOUR - timedelta(hours=2)), policy=POLICY, now=NOW) == []


# --- re-alerting and suppression ---------------------------------------------------------


def test_a_rise_by_the_step_re_alerts_an_acknowledged_alert() -> None:
    actions = decide(alert(AlertState.ACKNOWLEDGED, risk=0.35), score(0.45), policy=POLICY, now=NOW)
    assert types(actions) == [ActionType.RE_ALERT]
    assert actions[0].risk == 0.45


def test_a_rise_just_under_the_step_does_not_re_alert() -> None:
    assert decide(alert(AlertState.ACKNOWLEDGED, risk=0.35), score(0.4499), policy=POLICY, now=NOW) == []


def test_within_the_suppression_window_a_resolved_alert_is_not_raised_again() -> None:
    resolved = alert(AlertState.RESOLVED, risk=0.35, updated_at=NOW - timedelta(hours=5, minutes=59))
    assert decide(None, score(0.40), policy=POLICY, now=NOW, last_resolved=resolved) == []


def test_after_the_suppression_window_the_encounter_alerts_again() -> None:
    resolved = alert(AlertState.RESOLVED, risk=0.35, updated_at=NOW - timedelta(hours=6))
    assert types(decide(None, score(0.40), policy=POLICY, now=NOW, last_resolved=resolved)) == [ActionType.RAISE]


def test_a_rise_by_the_step_breaks_through_the_suppression_window() -> None:
    resolved = alert(AlertState.RESOLVED, risk=0.35, updated_at=NOW - timedelta(hours=1))
    assert types(decide(None, score(0.45), policy=POLICY, now=NOW, last_resolved=resolved)) == [ActionType.RAISE]


# --- escalation and snoozes --------------------------------------------------------------


def test_new_alert_unacknowledged_for_the_policy_minutes_is_due_for_escalation() -> None:
    overdue = alert(pending_since=NOW - timedelta(minutes=30))
    recent = replace(overdue, alert_id=8, pending_since=NOW - timedelta(minutes=29))
    acknowledged = replace(overdue, alert_id=9, state=AlertState.ACKNOWLEDGED, pending_since=None)
    actions = due_escalations([overdue, recent, acknowledged], policy=POLICY, now=NOW)
    assert [(a.type, a.alert_id) for a in actions] == [(ActionType.ESCALATE, 7)]
    assert actions[0].reason == "not acknowledged within 30 minutes"


def test_escalation_clock_runs_from_when_the_alert_last_became_new() -> None:
    woken = alert(raised_at=NOW - timedelta(hours=5), pending_since=NOW - timedelta(minutes=10))
    assert due_escalations([woken], policy=POLICY, now=NOW) == []


def test_a_score_for_an_overdue_new_alert_escalates_it() -> None:
    overdue = alert(pending_since=NOW - timedelta(minutes=45))
    assert types(decide(overdue, score(0.33), policy=POLICY, now=NOW)) == [ActionType.ESCALATE]


def test_stale_data_alerts_are_not_escalated() -> None:
    stale = alert(kind=AlertKind.STALE_DATA, risk=None, pending_since=NOW - timedelta(hours=2))
    assert due_escalations([stale], policy=POLICY, now=NOW) == []


def test_expired_snooze_wakes_the_alert_and_an_unexpired_one_does_not() -> None:
    expired = alert(AlertState.SNOOZED, snoozed_until=NOW)
    running = replace(expired, alert_id=8, snoozed_until=NOW + timedelta(minutes=1))
    assert [(a.type, a.alert_id) for a in expired_snoozes([expired, running], now=NOW)] == [(ActionType.WAKE, 7)]


def test_a_score_after_the_snooze_expired_wakes_then_re_alerts() -> None:
    expired = alert(AlertState.SNOOZED, risk=0.35, snoozed_until=NOW - timedelta(minutes=5))
    assert types(decide(expired, score(0.50), policy=POLICY, now=NOW)) == [ActionType.WAKE, ActionType.RE_ALERT]


# --- stale data --------------------------------------------------------------------------


def test_stale_vitals_raise_a_data_alert_not_a_risk_alert() -> None:
    assert types(decide(None, score(None), policy=POLICY, now=NOW, kind=AlertKind.STALE_DATA)) == [
        ActionType.RAISE_STALE
    ]


def test_no_data_alert_when_the_ward_turned_them_off() -> None:
    quiet = replace(POLICY, stale_data_alert=False)
    assert decide(None, score(None), policy=quiet, now=NOW, kind=AlertKind.STALE_DATA) == []


@pytest.mark.parametrize("state", [AlertState.NEW, AlertState.ACKNOWLEDGED])
def test_data_alert_resolves_itself_when_vitals_are_recorded_again(state: AlertState) -> None:
    stale = alert(state, kind=AlertKind.STALE_DATA, risk=None)
    actions = decide(stale, score(0.10), policy=POLICY, now=NOW, kind=AlertKind.STALE_DATA)
    assert types(actions) == [ActionType.AUTO_RESOLVE]
    assert actions[0].reason == "essential vitals recorded again"


def test_decide_refuses_an_alert_of_another_kind() -> None:
    with pytest.raises(ValueError, match="is a new risk alert; expected an open stale_data alert or None"):
        decide(alert(), score(None), policy=POLICY, now=NOW, kind=AlertKind.STALE_DATA)
