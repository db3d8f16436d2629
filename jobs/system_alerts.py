"""System alerts: problems with riskcast itself (a failed job, a stale feed, drift), in the alerts table.

A system alert has kind "system" and is keyed by a subject such as "job:score" or
"feed:Ward 7": its encounter_id is "system:<subject>" and its patient_id "system", so it
never mixes with a patient's alerts (riskcast.alerts.state only ever loads the alerts of
scored encounters). At most one alert per subject is open: `sync_system_alert` raises one
when a problem appears and none is open, and resolves the open one when the problem is
gone. Each change appends an alert_events row by the actor "riskcast" with the problem in
words as its reason (never a patient identifier or value), in the same transaction.

Staff acknowledge or resolve system alerts like any other (riskcast.alerts.state).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Engine, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from riskcast.alerts.policy import SYSTEM_ACTOR, AlertKind, AlertState
from riskcast.store import write_session
from riskcast.store.tables import Alert, AlertEvent, alerts

SYSTEM_PATIENT = "system"
SUBJECT_PREFIX = "system:"
MAX_REASON_CHARS = 1000
_ADVISORY_LOCK_KEY = "riskcast.alerts"  # the alert state machine's key: one writer of alerts at a time
_UTC = pl.Datetime("us", "UTC")
SYSTEM_ALERTS_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.Int64(),
    "subject": pl.String(),
    "ward": pl.String(),
    "state": pl.String(),
    "raised_at": _UTC,
    "raised_for": _UTC,
    "updated_at": _UTC,
    "reason": pl.String(),
}


@dataclass(frozen=True)
class SystemAlertChange:
    """What `sync_system_alert` did: "raised", "resolved", "open" (already open) or "none"."""

    subject: str
    action: str
    alert_id: int | None = None


def _insert(session: Session) -> Any:
    return postgresql.insert(alerts) if session.get_bind().dialect.name == "postgresql" else sqlite.insert(alerts)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _ADVISORY_LOCK_KEY})


def _clip(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def sync_system_alert(
    engine: Engine,
    subject: str,
    problem: str | None,
    *,
    raised_for: datetime,
    now: datetime,
    ward: str | None = None,
) -> SystemAlertChange:
    """Raise the system alert of `subject` when there is a `problem`; resolve it when there is none.

    `raised_for` is the time the problem describes (the job's scheduled time, UTC);
    `problem` is one line for people, e.g. "score failed: LakeError: the lake ... is empty".
    """
    key = SUBJECT_PREFIX + subject
    with write_session(engine) as session:
        _lock(session)
        open_alert = session.scalars(
            select(Alert)
            .where(Alert.encounter_id == key, Alert.kind == AlertKind.SYSTEM.value,
                   Alert.state != AlertState.RESOLVED.value)
            .order_by(Alert.id.desc())
        ).first()
        if problem is None:
            if open_alert is None:
                return SystemAlertChange(subject, "none")
            from_state = open_alert.state
            open_alert.state = AlertState.RESOLVED.value
            open_alert.snoozed_until = None
            open_alert.updated_at = now
            session.add(AlertEvent(alert_id=open_alert.id, at=now, actor=SYSTEM_ACTOR, role=None, action="resolved",
                                   from_state=from_state, to_state=AlertState.RESOLVED.value,
                                   reason="cleared: the problem is gone"))
            return SystemAlertChange(subject, "resolved", open_alert.id)
        if open_alert is not None:
            return SystemAlertChange(subject, "open", open_alert.id)
        alert_id = session.execute(
            _insert(session)
            .values(encounter_id=key, patient_id=SYSTEM_PATIENT, ward=ward, kind=AlertKind.SYSTEM.value,
                    state=AlertState.NEW.value, raised_at=now, raised_for=raised_for, risk=None, model_version=None,
                    episode=1, updated_at=now, snoozed_until=None, version_counter=1)
            .on_conflict_do_nothing(index_elements=["encounter_id", "kind", "raised_for"])
            .returning(alerts.c.id)
        ).scalar_one_or_none()
        if alert_id is None:  # raised for this very time before, and resolved since: leave it
            return SystemAlertChange(subject, "none")
        session.add(AlertEvent(alert_id=alert_id, at=now, actor=SYSTEM_ACTOR, role=None, action="raised",
                               from_state=None, to_state=AlertState.NEW.value, reason=_clip(problem)))
        return SystemAlertChange(subject, "raised", alert_id)


def system_alerts_frame(engine: Engine, *, open_only: bool = True) -> pl.DataFrame:
    """System alerts with the reason they were raised, newest first (columns: SYSTEM_ALERTS_SCHEMA)."""
    query = (
        select(Alert.id, Alert.encounter_id, Alert.ward, Alert.state, Alert.raised_at, Alert.raised_for,
               Alert.updated_at, AlertEvent.reason)
        .join(AlertEvent, (AlertEvent.alert_id == Alert.id) & (AlertEvent.action == "raised"))
        .where(Alert.kind == AlertKind.SYSTEM.value)
        .order_by(Alert.raised_at.desc(), Alert.id.desc())
    )
    if open_only:
        query = query.where(Alert.state != AlertState.RESOLVED.value)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame(
        [(r[0], r[1].removeprefix(SUBJECT_PREFIX), *r[2:]) for r in rows], schema=SYSTEM_ALERTS_SCHEMA, orient="row"
    )
