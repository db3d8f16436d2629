"""riskcast.dashboards.actions: staff acknowledge, snooze and resolve alerts in their own name,
on their own wards only, with a reason where one is required (a copy of the small dashboard
home, so each test starts from the same alerts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest

from dashboard_home import NOW, POLICY, WARD_A, Home, home, risk_alert_of, writable  # noqa: F401 - fixtures
from riskcast.alerts.state import alert_history, list_alerts
from riskcast.dashboards import auth
from riskcast.dashboards.actions import act_on_alert
from riskcast.dashboards.app import create_app


@pytest.fixture
def acting(writable: Home) -> Iterator[tuple[Any, Home]]:
    application = create_app(writable.settings, clock=lambda: NOW, policy_set=POLICY)
    yield application, writable
    application.server.extensions["riskcast"].engine.dispose()


def test_a_nurse_acknowledges_an_alert_on_her_ward_in_her_name(acting):
    application, home = acting
    engine = application.server.extensions["riskcast"].engine
    alert_id = risk_alert_of(engine, "E1")
    with application.server.test_request_context("/"):
        outcome = act_on_alert(auth.DashboardUser("nina", "nurse", (WARD_A,)), alert_id, "acknowledge",
                               reason="seen, obs every 30 min", snooze_hours=None)  # fmt: skip
    assert outcome.ok, outcome.message
    last = alert_history(engine, alert_id=alert_id).row(-1, named=True)
    recorded = (last["actor"], last["role"], last["action"], last["reason"])
    assert recorded == ("nina", "nurse", "acknowledged", "seen, obs every 30 min")


def test_a_nurse_cannot_act_on_an_alert_of_another_ward(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    alert_id = risk_alert_of(engine, "E4")
    before = alert_history(engine, alert_id=alert_id)
    with application.server.test_request_context("/"):
        outcome = act_on_alert(auth.DashboardUser("nina", "nurse", (WARD_A,)), alert_id, "resolve", reason="x", snooze_hours=None)
    assert not outcome.ok and outcome.message == "That alert is not on your wards."
    assert alert_history(engine, alert_id=alert_id).equals(before)


def test_an_admin_sees_alerts_but_cannot_act_on_them(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    with application.server.test_request_context("/"):
        outcome = act_on_alert(auth.DashboardUser("adam", "admin", ()), risk_alert_of(engine, "E1"), "acknowledge",
                               reason=None, snooze_hours=None)  # fmt: skip
    assert not outcome.ok and "not act" in outcome.message


def test_a_snooze_needs_a_reason_and_ends_within_the_policy(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    nurse = auth.DashboardUser("nina", "nurse", (WARD_A,))
    alert_id = risk_alert_of(engine, "E1")
    with application.server.test_request_context("/"):
        refused = act_on_alert(nurse, alert_id, "snooze", reason="  ", snooze_hours=1)
        snoozed = act_on_alert(nurse, alert_id, "snooze", reason="family visiting", snooze_hours=1)
    assert not refused.ok and "reason is required" in refused.message
    assert snoozed.ok and snoozed.message == "Snoozed until 13:10."


def test_resolving_needs_a_reason_and_closes_the_alert(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    nurse = auth.DashboardUser("nina", "nurse", (WARD_A,))
    alert_id = risk_alert_of(engine, "E1")
    with application.server.test_request_context("/"):
        refused = act_on_alert(nurse, alert_id, "resolve", reason=None, snooze_hours=None)
        resolved = act_on_alert(nurse, alert_id, "resolve", reason="reviewed by outreach team", snooze_hours=None)
    assert not refused.ok and "reason is required" in refused.message
    assert resolved.ok and resolved.message == "Resolved at 12:10."
    assert list_alerts(engine).filter(pl.col("alert_id") == alert_id)["state"].to_list() == ["resolved"]
