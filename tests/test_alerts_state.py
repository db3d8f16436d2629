"""The alert state machine in the store, on a controlled clock.

Every test runs on a SQLite file and, when a server answers at 127.0.0.1:5432/test (users
postgres or root, trust auth; or RISKCAST_TEST_POSTGRES_URL), on PostgreSQL in a schema
of its own that is dropped afterwards (the approach of tests/test_store.py).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine, event, func, insert, select, text
from sqlalchemy.pool import NullPool

from riskcast.alerts.policy import OPEN_STATES, AlertKind, AlertPolicy, PolicySet
from riskcast.alerts.state import (
    SYSTEM_REASON_MAX_CHARS,
    ProcessSummary,
    acknowledge,
    alert_history,
    count_raised,
    escalate_due,
    list_alerts,
    open_system_subjects,
    process_scores,
    resolve,
    resolve_departed,
    snooze,
    sync_system_alert,
    system_alerts_frame,
    wake_snoozed,
)
from riskcast.errors import AlertError
from riskcast.store import connect, open_store
from riskcast.store.tables import alert_events, alerts, runs
from riskcast.store.tables import scores as scores_table

NOW = datetime(2025, 3, 1, 12, 5, tzinfo=timezone.utc)
HOUR = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
MODEL_THRESHOLD = 0.30  # the packaged policy's "model" threshold; clears below 0.24
POLICIES = PolicySet(default=AlertPolicy(suppression_hours=6, re_alert_step=0.10, escalate_after_minutes=30,
                                         max_snooze_hours=4, max_reason_length=40))  # fmt: skip
# --- helpers -----------------------------------------------------------------------------


def scores(*rows: tuple[str, datetime, float | None], ward: str = "W1") -> pl.DataFrame:
    """One score per (encounter_id, hour, risk); a None risk is an insufficient-data score."""
    return pl.DataFrame(
        {
            "encounter_id": [r[0] for r in rows],
            "patient_id": [f"P-{r[0]}" for r in rows],
            "ward": [ward] * len(rows),
            "scored_at": [r[1] for r in rows],
            "risk": [r[2] for r in rows],
            "status": ["scored" if r[2] is not None else "insufficient_data" for r in rows],
            "model_version": ["v1"] * len(rows),
        },
        schema={
            "encounter_id": pl.String, "patient_id": pl.String, "ward": pl.String,
            "scored_at": pl.Datetime("us", "UTC"), "risk": pl.Float64, "status": pl.String,
            "model_version": pl.String,
        },  # fmt: skip
    )


def run(engine: Engine, frame: pl.DataFrame, *, now: datetime = NOW, policies: PolicySet = POLICIES) -> ProcessSummary:
    return process_scores(engine, frame, policy_set=policies, model_threshold=MODEL_THRESHOLD, now=now)


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def only_alert(engine: Engine) -> dict[str, Any]:
    frame = list_alerts(engine)
    assert frame.height == 1, frame
    return frame.row(0, named=True)


def actions(engine: Engine, alert_id: int) -> list[str]:
    return alert_history(engine, alert_id=alert_id)["action"].to_list()


def raise_one(engine: Engine, risk: float = 0.35, *, encounter: str = "E1") -> int:
    run(engine, scores((encounter, HOUR, risk)))
    return int(list_alerts(engine).filter(pl.col("encounter_id") == encounter)["alert_id"][0])


def nurse(engine: Engine, alert_id: int, action: Any, **kwargs: Any) -> Any:
    return action(engine, alert_id, actor="n.jones", role="nurse", policy_set=POLICIES, **kwargs)


# --- raising, exactly once -----------------------------------------------------------------


def test_risk_at_the_threshold_raises_one_new_alert_with_a_raised_event(store: Engine) -> None:
    summary = run(store, scores(("E1", HOUR, 0.30), ("E2", HOUR, 0.29)))
    assert (summary.scores, summary.raised) == (2, 1)
    row = only_alert(store)
    assert (row["encounter_id"], row["kind"], row["state"], row["risk"]) == ("E1", "risk", "new", 0.30)
    assert (row["raised_at"], row["raised_for"], row["episode"], row["version"]) == (NOW, HOUR, 1, 1)
    event = alert_history(store, alert_id=row["alert_id"]).row(0, named=True)
    assert (event["action"], event["actor"], event["role"], event["from_state"], event["to_state"], event["at"]) == (
        "raised", "riskcast", None, None, "new", NOW,
    )  # fmt: skip
    assert "at or above raise threshold 0.300" in event["reason"]


def test_rescoring_the_same_hour_raises_nothing_new(store: Engine) -> None:
    frame = scores(("E1", HOUR, 0.40))
    run(store, frame)
    again = run(store, frame, now=NOW + timedelta(minutes=20))
    assert (again.raised, again.re_alerted) == (0, 0)
    assert count(store, alerts) == 1 and count(store, alert_events) == 1


def test_rescoring_an_hour_whose_alert_was_resolved_does_not_raise_it_again(store: Engine) -> None:
    no_suppression = PolicySet(default=AlertPolicy(suppression_hours=0))
    alert_id = raise_one(store, 0.40)
    nurse(store, alert_id, resolve, reason="reviewed", now=NOW + timedelta(minutes=5))
    again = run(store, scores(("E1", HOUR, 0.40)), now=NOW + timedelta(minutes=10), policies=no_suppression)
    assert again.already_raised == 1 and again.raised == 0  # the UNIQUE constraint said no
    assert count(store, alerts) == 1 and count(store, alert_events) == 2


def test_two_scorers_at_once_raise_each_alert_once(store: Engine, db_url: str) -> None:
    encounters = [f"E{i}" for i in range(20)]
    frame = scores(*[(e, HOUR, 0.5) for e in encounters])
    second_engine = connect(db_url)
    barrier = threading.Barrier(2)
    summaries: list[ProcessSummary] = []
    errors: list[BaseException] = []

    def score_now(engine: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            summaries.append(run(engine, frame))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=score_now, args=(engine,)) for engine in (store, second_engine)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    second_engine.dispose()
    assert errors == []
    assert sum(s.raised for s in summaries) == len(encounters)
    assert count(store, alerts) == len(encounters)
    assert count(store, alert_events, alert_events.c.action == "raised") == len(encounters)


# --- hysteresis, suppression, re-alerting ------------------------------------------------


def test_risk_hovering_between_clear_and_raise_keeps_one_alert_and_writes_nothing(store: Engine) -> None:
    patient = PolicySet(default=AlertPolicy(escalate_after_minutes=24 * 60))  # nobody is paged meanwhile
    for hours, risk in enumerate([0.35, 0.26, 0.31, 0.25, 0.29]):
        at = HOUR + timedelta(hours=hours)
        run(store, scores(("E1", at, risk)), now=at + timedelta(minutes=5), policies=patient)
    row = only_alert(store)
    assert row["state"] == "new" and actions(store, row["alert_id"]) == ["raised"]


def test_unacknowledged_alert_clears_itself_below_the_clear_threshold(store: Engine) -> None:
    alert_id = raise_one(store, 0.35)
    summary = run(store, scores(("E1", HOUR + timedelta(hours=1), 0.23)), now=NOW + timedelta(minutes=20))
    assert summary.auto_resolved == 1
    assert only_alert(store)["state"] == "resolved"
    assert actions(store, alert_id) == ["raised", "resolved"]


def test_acknowledged_alert_stays_open_when_risk_falls(store: Engine) -> None:
    alert_id = raise_one(store, 0.35)
    nurse(store, alert_id, acknowledge, now=NOW + timedelta(minutes=5))
    run(store, scores(("E1", HOUR + timedelta(hours=1), 0.05)), now=NOW + timedelta(minutes=20))
    assert only_alert(store)["state"] == "acknowledged"


def test_resolved_alert_is_suppressed_within_the_window_and_raised_after_it(store: Engine) -> None:
    alert_id = raise_one(store, 0.35)
    resolved_at = NOW + timedelta(minutes=10)
    nurse(store, alert_id, resolve, reason="seen by the doctor", now=resolved_at)
    inside = run(store, scores(("E1", HOUR + timedelta(hours=5), 0.40)), now=resolved_at + timedelta(hours=5))
    assert inside.raised == 0 and count(store, alerts) == 1
    after = run(store, scores(("E1", HOUR + timedelta(hours=6), 0.40)), now=resolved_at + timedelta(hours=6))
    assert after.raised == 1
    assert list_alerts(store, states=["new"])["episode"].to_list() == [2]


def test_a_rise_by_the_step_breaks_through_suppression(store: Engine) -> None:
    alert_id = raise_one(store, 0.35)
    nurse(store, alert_id, resolve, reason="seen", now=NOW + timedelta(minutes=10))
    summary = run(store, scores(("E1", HOUR + timedelta(hours=1), 0.45)), now=NOW + timedelta(hours=1))
    assert summary.raised == 1 and count(store, alerts) == 2


def test_a_rise_by_the_step_re_alerts_an_acknowledged_alert_back_to_new(store: Engine) -> None:
    alert_id = raise_one(store, 0.35)
    nurse(store, alert_id, acknowledge, now=NOW + timedelta(minutes=5))
    later = NOW + timedelta(hours=1)
    summary = run(store, scores(("E1", HOUR + timedelta(hours=1), 0.46)), now=later)
    assert summary.re_alerted == 1
    row = only_alert(store)
    assert (row["state"], row["risk"], row["updated_at"], row["version"]) == ("new", 0.46, later, 3)
    last = alert_history(store, alert_id=alert_id).row(-1, named=True)
    assert (last["action"], last["from_state"], last["to_state"]) == ("re_alerted", "acknowledged", "new")


# --- escalation and snoozes ----------------------------------------------------------------


def test_unacknowledged_alert_is_escalated_after_the_policy_minutes(store: Engine) -> None:
    alert_id = raise_one(store)
    assert escalate_due(store, policy_set=POLICIES, now=NOW + timedelta(minutes=29)) == []
    assert escalate_due(store, policy_set=POLICIES, now=NOW + timedelta(minutes=30)) == [alert_id]
    assert escalate_due(store, policy_set=POLICIES, now=NOW + timedelta(minutes=31)) == []
    last = alert_history(store, alert_id=alert_id).row(-1, named=True)
    assert (last["action"], last["actor"], last["from_state"], last["to_state"]) == (
        "escalated", "riskcast", "new", "escalated",
    )  # fmt: skip


def test_acknowledged_alert_is_not_escalated(store: Engine) -> None:
    alert_id = raise_one(store)
    nurse(store, alert_id, acknowledge, now=NOW + timedelta(minutes=10))
    assert escalate_due(store, policy_set=POLICIES, now=NOW + timedelta(hours=3)) == []


def test_expired_snooze_returns_the_alert_to_new_and_restarts_the_escalation_clock(store: Engine) -> None:
    alert_id = raise_one(store)
    until = NOW + timedelta(hours=2)
    nurse(store, alert_id, snooze, until=until, reason="family visiting", now=NOW + timedelta(minutes=5))
    assert wake_snoozed(store, now=until - timedelta(seconds=1)) == []
    assert wake_snoozed(store, now=until) == [alert_id]
    row = only_alert(store)
    assert (row["state"], row["snoozed_until"]) == ("new", None)
    assert actions(store, alert_id) == ["raised", "snoozed", "reopened"]
    assert escalate_due(store, policy_set=POLICIES, now=until + timedelta(minutes=29)) == []
    assert escalate_due(store, policy_set=POLICIES, now=until + timedelta(minutes=30)) == [alert_id]


def test_snooze_without_a_reason_is_refused(store: Engine) -> None:
    alert_id = raise_one(store)
    with pytest.raises(AlertError, match=rf"^alert {alert_id}: a reason is required to snooze it$"):
        nurse(store, alert_id, snooze, until=NOW + timedelta(hours=1), reason="  ", now=NOW)
    assert only_alert(store)["state"] == "new"


def test_snooze_longer_than_the_policy_allows_is_refused(store: Engine) -> None:
    alert_id = raise_one(store)
    with pytest.raises(
        AlertError,
        match=rf"^alert {alert_id}: a snooze of 4\.5 hours is longer than the policy's max_snooze_hours of 4$",
    ):
        nurse(store, alert_id, snooze, until=NOW + timedelta(hours=4.5), reason="asleep", now=NOW)


def test_a_reason_longer_than_the_policy_allows_is_refused(store: Engine) -> None:
    alert_id = raise_one(store)
    with pytest.raises(AlertError, match=r"is 41 characters; the policy allows at most 40$"):
        nurse(store, alert_id, acknowledge, reason="x" * 41, now=NOW)


def test_acknowledging_a_resolved_alert_is_refused(store: Engine) -> None:
    alert_id = raise_one(store)
    nurse(store, alert_id, resolve, reason="reviewed", now=NOW + timedelta(minutes=1))
    with pytest.raises(
        AlertError,
        match=rf"^alert {alert_id} is resolved; only an alert that is new, escalated, snoozed can be acknowledged$",
    ):
        nurse(store, alert_id, acknowledge, now=NOW + timedelta(minutes=2))
    assert actions(store, alert_id) == ["raised", "resolved"]


def test_every_staff_action_records_who_their_role_when_why_and_the_states(store: Engine) -> None:
    alert_id = raise_one(store)
    acknowledge(store, alert_id, actor="n.jones", role="nurse", now=NOW + timedelta(minutes=3), policy_set=POLICIES)
    resolve(store, alert_id, actor="dr.patel", role="physician", reason="fluids given",
            now=NOW + timedelta(minutes=40), policy_set=POLICIES)  # fmt: skip
    history = alert_history(store, encounter_id="E1").select(
        "actor", "role", "at", "action", "from_state", "to_state", "reason"
    )
    assert history.rows()[1:] == [
        ("n.jones", "nurse", NOW + timedelta(minutes=3), "acknowledged", "new", "acknowledged", None),
        ("dr.patel", "physician", NOW + timedelta(minutes=40), "resolved", "acknowledged", "resolved", "fluids given"),
    ]


# --- acknowledgement racing a scoring run ---------------------------------------------------


def test_an_acknowledgement_racing_a_scoring_run_is_never_lost(store: Engine, db_url: str) -> None:
    encounters = [f"E{i}" for i in range(30)]
    run(store, scores(*[(e, HOUR, 0.35) for e in encounters]))
    target = int(list_alerts(store).filter(pl.col("encounter_id") == "E0")["alert_id"][0])
    rising = scores(*[(e, HOUR + timedelta(hours=1), 0.50) for e in encounters])
    scorer_engine = connect(db_url)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def in_thread(work: Any) -> threading.Thread:
        def body() -> None:
            try:
                barrier.wait(timeout=10)
                work()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    threads = [
        in_thread(lambda: run(scorer_engine, rising, now=NOW + timedelta(minutes=10))),
        in_thread(lambda: nurse(store, target, acknowledge, now=NOW + timedelta(minutes=10))),
    ]
    for thread in threads:
        thread.join(timeout=60)
    scorer_engine.dispose()
    assert errors == []
    history = alert_history(store, alert_id=target)
    assert sorted(history["action"].to_list()) == ["acknowledged", "raised", "re_alerted"]
    row = list_alerts(store).filter(pl.col("alert_id") == target).row(0, named=True)
    assert row["state"] == history["to_state"][-1]  # state and audit trail agree
    assert row["version"] == history.height  # one version per event: no change was lost


def test_an_acknowledgement_whose_alert_changed_after_it_was_read_is_retried(store: Engine, db_url: str) -> None:
    if store.dialect.name == "sqlite":
        pytest.skip("SQLite: the acknowledgement's read and write hold the write lock; no scorer gets between them")
    alert_id = raise_one(store, 0.35)
    scorer_engine = connect(db_url)
    interleaved: list[str] = []

    def score_between_read_and_write(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ALERTS") and not interleaved:
            interleaved.append("scored")
            run(scorer_engine, scores(("E1", HOUR + timedelta(hours=1), 0.50)), now=NOW + timedelta(minutes=10))

    event.listen(store, "before_cursor_execute", score_between_read_and_write)
    try:
        nurse(store, alert_id, acknowledge, now=NOW + timedelta(minutes=10))
    finally:
        event.remove(store, "before_cursor_execute", score_between_read_and_write)
        scorer_engine.dispose()
    assert interleaved == ["scored"]
    assert actions(store, alert_id) == ["raised", "re_alerted", "acknowledged"]
    row = only_alert(store)
    assert (row["state"], row["risk"], row["version"]) == ("acknowledged", 0.50, 3)


# --- stale data, queries ---------------------------------------------------------------------


def test_an_open_alert_moves_with_its_patient_to_the_new_ward_once(store: Engine) -> None:
    alert_id = raise_one(store, encounter="E1")
    nurse(store, alert_id, acknowledge, now=NOW)
    later = HOUR + timedelta(hours=1)
    summary = run(store, scores(("E1", later, 0.35), ward="W2"), now=later + timedelta(minutes=5))
    assert summary.moved == 1
    alert = only_alert(store)
    assert (alert["ward"], alert["state"]) == ("W2", "acknowledged")
    last = alert_history(store, alert_id=alert_id).row(-1, named=True)
    assert (last["action"], last["from_state"], last["to_state"], last["actor"]) == (
        "moved", "acknowledged", "acknowledged", "riskcast")
    assert last["reason"] == "patient moved from ward W1 to W2"
    assert run(store, scores(("E1", later, 0.35), ward="W2"), now=later + timedelta(minutes=6)).moved == 0


def test_a_rescoring_of_the_alerts_own_hour_on_another_ward_does_not_move_it(store: Engine) -> None:
    """A scorer that read the encounters before or after a transfer cannot be told apart within
    the hour: the move waits for the next hour's score."""
    raise_one(store, encounter="E1")
    assert run(store, scores(("E1", HOUR, 0.35), ward="W3"), now=NOW + timedelta(minutes=1)).moved == 0
    assert only_alert(store)["ward"] == "W1"


def test_a_late_rescoring_after_the_alert_but_before_the_latest_scored_hour_does_not_move_it(store: Engine) -> None:
    alert_id = raise_one(store, encounter="E1")
    two_later = HOUR + timedelta(hours=2)
    with store.begin() as connection:  # the store already holds a score of E1 at HOUR + 2 h on W1
        run_id = connection.execute(insert(runs).values(kind="score", started_at=NOW, status="succeeded",
                                                        details={})).inserted_primary_key[0]
        connection.execute(insert(scores_table).values(
            run_id=run_id, model_version="v1", encounter_id="E1", patient_id="P-E1", ward="W1", site=None,
            scored_at=two_later, risk=0.35, status="scored", missing=None, observations=5, created_at=NOW))
    assert run(store, scores(("E1", HOUR + timedelta(hours=1), 0.35), ward="W2"), now=two_later).moved == 0
    assert only_alert(store)["ward"] == "W1" and alert_id == only_alert(store)["alert_id"]


def test_open_alerts_of_patients_no_longer_admitted_are_resolved_with_the_reason(store: Engine) -> None:
    staying = raise_one(store, encounter="E1")
    left_new = raise_one(store, encounter="E2")
    left_acknowledged = raise_one(store, encounter="E3")
    nurse(store, left_acknowledged, acknowledge, now=NOW)
    later = HOUR + timedelta(hours=1)
    run(store, scores(("E4", later, 0.5)), now=later + timedelta(minutes=5))  # raised after the hour below
    raised_later = int(list_alerts(store).filter(pl.col("encounter_id") == "E4")["alert_id"][0])
    resolved = resolve_departed(store, admitted={"E1"}, at=HOUR, now=NOW + timedelta(minutes=1))
    assert sorted(resolved) == sorted([left_new, left_acknowledged])
    states = dict(zip(*list_alerts(store).select("alert_id", "state").to_dict(as_series=False).values()))
    assert states == {staying: "new", left_new: "resolved", left_acknowledged: "resolved", raised_later: "new"}
    last = alert_history(store, alert_id=left_acknowledged).row(-1, named=True)
    assert (last["actor"], last["action"], last["from_state"]) == ("riskcast", "resolved", "acknowledged")
    assert "no longer admitted" in last["reason"]
    assert resolve_departed(store, admitted={"E1"}, at=HOUR, now=NOW + timedelta(minutes=2)) == []  # once


def test_a_departure_resolution_does_not_suppress_the_patient_when_they_turn_out_to_be_admitted(store: Engine) -> None:
    """A discharge a later feed corrects: the next high score alerts again at once."""
    first = raise_one(store, encounter="E2")
    resolve_departed(store, admitted=set(), at=HOUR, now=NOW)
    later = HOUR + timedelta(hours=1)
    run(store, scores(("E2", later, 0.35)), now=later + timedelta(minutes=5))  # same risk, within suppression_hours
    open_now = list_alerts(store).filter(pl.col("encounter_id") == "E2", pl.col("state") == "new")
    assert open_now.height == 1 and int(open_now["alert_id"][0]) != first
    # A resolution by staff still suppresses, as before.
    nurse(store, int(open_now["alert_id"][0]), resolve, reason="reviewed", now=later + timedelta(minutes=6))
    two_later = HOUR + timedelta(hours=2)
    run(store, scores(("E2", two_later, 0.35)), now=two_later + timedelta(minutes=5))
    assert list_alerts(store).filter(pl.col("encounter_id") == "E2", pl.col("state") == "new").height == 0


def test_after_a_departure_an_earlier_staff_resolution_does_not_suppress_either(store: Engine) -> None:
    first = raise_one(store, 0.50, encounter="E3")
    nurse(store, first, resolve, reason="reviewed", now=NOW)
    later = HOUR + timedelta(hours=1)
    run(store, scores(("E3", later, 0.66)), now=later + timedelta(minutes=5))  # re-alerts by the step
    second = list_alerts(store).filter(pl.col("encounter_id") == "E3", pl.col("state") == "new")
    assert second.height == 1
    resolve_departed(store, admitted=set(), at=later, now=later + timedelta(minutes=6))  # a discharge, in error
    two_later = HOUR + timedelta(hours=2)
    run(store, scores(("E3", two_later, 0.60)), now=two_later + timedelta(minutes=5))  # below 0.50 + step
    assert list_alerts(store).filter(pl.col("encounter_id") == "E3", pl.col("state") == "new").height == 1


def test_stale_vitals_raise_a_data_alert_that_clears_when_vitals_return(store: Engine) -> None:
    summary = run(store, scores(("E1", HOUR, None)))
    assert (summary.raised, summary.stale_raised) == (0, 1)
    row = only_alert(store)
    assert (row["kind"], row["state"], row["risk"]) == ("stale_data", "new", None)
    run(store, scores(("E1", HOUR + timedelta(hours=1), 0.10)), now=NOW + timedelta(hours=1))
    assert only_alert(store)["state"] == "resolved"
    assert actions(store, row["alert_id"]) == ["raised", "resolved"]


def test_list_alerts_filters_by_ward_and_state_most_urgent_first(store: Engine) -> None:
    run(store, scores(("E1", HOUR, 0.35), ("E2", HOUR, 0.80)))
    run(store, scores(("E3", HOUR, 0.60)), now=NOW - timedelta(hours=1))
    run(store, scores(("E9", HOUR, 0.90), ward="W2"))
    escalate_due(store, policy_set=POLICIES, now=NOW - timedelta(minutes=20))  # only E3 is 40 minutes old
    e1 = int(list_alerts(store).filter(pl.col("encounter_id") == "E1")["alert_id"][0])
    nurse(store, e1, acknowledge, now=NOW)
    ward = list_alerts(store, ward="W1")
    assert ward.select("encounter_id", "state").rows() == [("E3", "escalated"), ("E2", "new"), ("E1", "acknowledged")]
    assert list_alerts(store, ward="W1", states=OPEN_STATES, limit=1)["encounter_id"].to_list() == ["E3"]
    assert list_alerts(store, states=["resolved"]).height == 0
    with pytest.raises(ValueError, match=r"unknown state\(s\) \['open'\]"):
        list_alerts(store, states=["open"])


# --- system alerts ---------------------------------------------------------------------------


def test_a_system_problem_raises_one_alert_until_it_is_gone_then_resolves_it(store: Engine) -> None:
    raised = sync_system_alert(store, "feed:W1", "ward W1: feed stale", raised_for=HOUR, now=NOW, ward="W1")
    again = sync_system_alert(store, "feed:W1", "ward W1: feed stale", raised_for=HOUR + timedelta(minutes=15),
                              now=NOW + timedelta(minutes=15), ward="W1")  # fmt: skip
    assert (raised.action, again.action, again.alert_id) == ("raised", "open", raised.alert_id)
    shown = system_alerts_frame(store).row(0, named=True)
    assert (shown["subject"], shown["ward"], shown["state"], shown["reason"]) == ("feed:W1", "W1", "new", "ward W1: feed stale")
    assert list_alerts(store).row(0, named=True)["patient_id"] == "system"
    cleared = sync_system_alert(store, "feed:W1", None, raised_for=HOUR + timedelta(hours=1), now=NOW + timedelta(hours=1))
    assert (cleared.action, cleared.alert_id) == ("resolved", raised.alert_id)
    assert actions(store, raised.alert_id) == ["raised", "resolved"]
    assert alert_history(store, alert_id=raised.alert_id)["actor"].to_list() == ["riskcast", "riskcast"]
    assert system_alerts_frame(store).height == 0 and system_alerts_frame(store, open_only=False).height == 1
    assert sync_system_alert(store, "feed:W1", None, raised_for=HOUR, now=NOW).action == "none"


def test_a_system_problem_resolved_is_not_raised_again_for_the_same_time(store: Engine) -> None:
    sync_system_alert(store, "job:score", "score failed", raised_for=HOUR, now=NOW)
    sync_system_alert(store, "job:score", None, raised_for=HOUR, now=NOW + timedelta(minutes=1))
    assert sync_system_alert(store, "job:score", "score failed", raised_for=HOUR, now=NOW).action == "none"
    assert sync_system_alert(store, "job:score", "score failed", raised_for=HOUR + timedelta(hours=1),
                             now=NOW + timedelta(hours=1)).action == "raised"  # fmt: skip


def test_staff_act_on_a_system_alert_like_any_other_and_scoring_never_touches_it(store: Engine) -> None:
    alert_id = sync_system_alert(store, "drift", "variables shifted", raised_for=HOUR, now=NOW).alert_id
    nurse(store, alert_id, acknowledge, now=NOW + timedelta(minutes=1))
    run(store, scores(("E1", HOUR, 0.05)), now=NOW + timedelta(minutes=2))
    resolve_departed(store, admitted=["E1"], at=HOUR, now=NOW + timedelta(minutes=3))
    assert actions(store, alert_id) == ["raised", "acknowledged"]
    assert sync_system_alert(store, "drift", None, raised_for=HOUR, now=NOW + timedelta(minutes=4)).action == "resolved"


def test_open_system_subjects_are_listed_by_prefix_and_reasons_are_clipped(store: Engine) -> None:
    sync_system_alert(store, "feed:W1", "x" * (SYSTEM_REASON_MAX_CHARS + 50), raised_for=HOUR, now=NOW)
    sync_system_alert(store, "feed:W2", "stale", raised_for=HOUR, now=NOW)
    sync_system_alert(store, "drift", "shifted", raised_for=HOUR, now=NOW)
    assert open_system_subjects(store, prefix="feed:") == {"feed:W1", "feed:W2"}
    assert open_system_subjects(store) == {"feed:W1", "feed:W2", "drift"}
    reason = system_alerts_frame(store).filter(pl.col("subject") == "feed:W1")["reason"][0]
    assert len(reason) == SYSTEM_REASON_MAX_CHARS and reason.endswith("…")


def test_a_system_alert_needs_a_subject_and_aware_times(store: Engine) -> None:
    with pytest.raises(AlertError, match="a system alert needs a subject"):
        sync_system_alert(store, "", "broken", raised_for=HOUR, now=NOW)
    with pytest.raises(ValueError, match="raised_for must be a time-zone-aware datetime"):
        sync_system_alert(store, "drift", "broken", raised_for=HOUR.replace(tzinfo=None), now=NOW)


def test_count_raised_counts_alerts_of_a_kind_raised_for_hours_in_the_window(store: Engine) -> None:
    run(store, scores(("E1", HOUR, 0.35), ("E2", HOUR, 0.50)))
    run(store, scores(("E3", HOUR - timedelta(hours=30), 0.60)), now=NOW - timedelta(hours=30))
    sync_system_alert(store, "drift", "shifted", raised_for=HOUR, now=NOW)
    window = dict(start=HOUR - timedelta(hours=24), end=HOUR)
    assert count_raised(store, kind=AlertKind.RISK, **window) == 2
    assert count_raised(store, kind=AlertKind.SYSTEM, **window) == 1


def test_list_alerts_keeps_wards_and_encounters_and_puts_risk_before_data_before_system(store: Engine) -> None:
    run(store, scores(("E1", HOUR, None)), now=NOW - timedelta(minutes=30))  # stale data, no risk
    run(store, scores(("E2", HOUR, 0.35)))
    run(store, scores(("E9", HOUR, 0.90), ward="W3"))
    sync_system_alert(store, "feed:W1", "ward W1: feed stale", raised_for=HOUR, now=NOW, ward="W1")
    open_w1 = list_alerts(store, wards=["W1", "W2"], states=OPEN_STATES, kind_first=True)
    assert open_w1["kind"].to_list() == ["risk", "stale_data", "system"]
    # Without kind_first the two alerts without a risk are in update order: the system one is newer.
    assert list_alerts(store, wards=["W1"])["kind"].to_list() == ["risk", "system", "stale_data"]
    assert list_alerts(store, encounter_ids=["E9", "E1"])["encounter_id"].to_list() == ["E9", "E1"]
