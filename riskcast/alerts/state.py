"""The alert state machine: applies the policy to scores and staff actions, in the store.

Every change of an alert appends one immutable row to alert_events (who, role, when, why,
from and to state) in the same transaction as the change. riskcast's own changes are made
by the actor "riskcast" with no role. States and the actions that move them:

    (none) --raised--> new --acknowledged--> acknowledged --resolved--> resolved
    new --escalated (unacknowledged too long)--> escalated
    new | acknowledged | escalated --snoozed--> snoozed --reopened (snooze expired)--> new
    acknowledged | snoozed --re_alerted (risk rose by the step)--> new
    any open state --moved (the patient is scored on another ward)--> the same state
    new --resolved (auto: risk below the clear threshold)--> resolved
    any open state --resolved (auto: the patient is no longer admitted)--> resolved

Staff may acknowledge a new, escalated or snoozed alert; snooze a new, acknowledged or
escalated one (with a reason, for at most the ward's max_snooze_hours); resolve any open
alert (with a reason). Anything else raises AlertError naming the alert and its state.

Exactly once. An alert is identified by (encounter_id, kind, raised_for), UNIQUE in the
database, and raised with INSERT ... ON CONFLICT DO NOTHING: rescoring an hour, or two
scorers at once, never raise it twice and never write a second "raised" event. Batch
changes (process_scores, escalate_due, wake_snoozed) run one at a time: on SQLite in a
BEGIN IMMEDIATE transaction (`write_session`), on PostgreSQL under a transaction-level
advisory lock, reading the alerts they change with SELECT ... FOR UPDATE.

Concurrent staff actions. A staff action reads the alert and updates it with SQLAlchemy's
optimistic locking on alerts.version_counter: if a scoring run (or another user) changed
the alert in between, the update matches no row, nothing is written, and the action is
retried on the fresh row (MAX_ATTEMPTS times). An acknowledgement racing a scoring run is
therefore applied before or after the run's change, never lost; if the run resolved the
alert first, acknowledging it raises AlertError.

System alerts. Problems with riskcast itself (a failed job, a stale feed, drift) are alerts
of kind "system" keyed by a subject such as "job:score" or "feed:Ward 7": encounter_id
"system:<subject>", patient_id "system", so they never mix with a patient's alerts (scoring
only loads the alerts of the encounters it scores). `sync_system_alert` keeps at most one
open per subject: it raises one when a problem appears and none is open, and resolves the
open one when the problem is gone, under the same lock as every other batch change. Its
reasons are the problem in words, never a patient identifier or value. Staff acknowledge,
snooze or resolve system alerts like any other.

This module is the one writer of the alerts and alert_events tables.

All times are UTC-aware; `now` is always passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import polars as pl
from sqlalchemy import Engine, case, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from riskcast.alerts.policy import (
    DEPARTURE_REASON,
    OPEN_STATES,
    SYSTEM_ACTOR,
    Action,
    ActionType,
    AlertKind,
    AlertPolicy,
    AlertSnapshot,
    AlertState,
    PolicySet,
    ScoreSnapshot,
    decide,
    departure_resolutions,
    due_escalations,
    expired_snoozes,
    load_policy,
)
from riskcast.errors import AlertError, StoreError
from riskcast.store.session import write_session
from riskcast.store.tables import USER_ROLES, Alert, AlertEvent, alert_events, alerts
from riskcast.store.tables import scores as scores_table

SCORE_COLUMNS = ("encounter_id", "patient_id", "ward", "scored_at", "risk", "status", "model_version")
MAX_ATTEMPTS = 5
"""How many times an action is retried when the alert changed under it."""

_IN_CHUNK = 500
_ADVISORY_LOCK_KEY = "riskcast.alerts"
_UTC = pl.Datetime("us", "UTC")

SYSTEM_PATIENT = "system"
"""The patient_id of every system alert."""
SYSTEM_SUBJECT_PREFIX = "system:"
"""A system alert's encounter_id is this prefix and its subject ("system:job:score")."""
SYSTEM_REASON_MAX_CHARS = 1000
"""A system alert's reason is cut to this many characters (the problem's first words say what it is)."""

ALERTS_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.Int64(),
    "encounter_id": pl.String(),
    "patient_id": pl.String(),
    "ward": pl.String(),
    "kind": pl.String(),
    "state": pl.String(),
    "raised_at": _UTC,
    "raised_for": _UTC,
    "risk": pl.Float64(),
    "model_version": pl.String(),
    "episode": pl.Int64(),
    "updated_at": _UTC,
    "snoozed_until": _UTC,
    "version": pl.Int64(),
}
HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Int64(),
    "alert_id": pl.Int64(),
    "encounter_id": pl.String(),
    "kind": pl.String(),
    "at": _UTC,
    "actor": pl.String(),
    "role": pl.String(),
    "action": pl.String(),
    "from_state": pl.String(),
    "to_state": pl.String(),
    "reason": pl.String(),
    "os_user": pl.String(),
}
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
STATE_URGENCY: dict[str, int] = {"escalated": 0, "new": 1, "snoozed": 2, "acknowledged": 3, "resolved": 4}
"""Most urgent first in list_alerts: the one order of alert states, for the CLI and the boards."""
KIND_URGENCY: dict[str, int] = {"risk": 0, "stale_data": 1, "system": 2}
"""Within a state, risk alerts before overdue vitals before system alerts (list_alerts with
`kind_first`, as the ward board and the patient page list them)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class SystemAlertChange:
    """What `sync_system_alert` did: "raised", "resolved", "open" (already open) or "none"."""

    subject: str
    action: str
    alert_id: int | None = None


@dataclass(frozen=True)
class ProcessSummary:
    """What one process_scores call did, in counts of alerts.

    `already_raised` counts raises that found the alert already in the store (the same
    encounter, kind and hour, e.g. raised by a concurrent scorer) and so wrote nothing;
    `moved`, open alerts that followed their patient to another ward.
    """

    scores: int
    raised: int = 0
    stale_raised: int = 0
    re_alerted: int = 0
    auto_resolved: int = 0
    escalated: int = 0
    woken: int = 0
    already_raised: int = 0
    moved: int = 0


# --- helpers --------------------------------------------------------------------------------


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name} must be a time-zone-aware datetime (UTC), got {value!r}")


def _chunks(values: Sequence[_T], size: int = _IN_CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _snapshot(alert: Alert, pending_since: datetime | None = None) -> AlertSnapshot:
    return AlertSnapshot(
        alert_id=alert.id,
        encounter_id=alert.encounter_id,
        patient_id=alert.patient_id,
        ward=alert.ward,
        kind=AlertKind(alert.kind),
        state=AlertState(alert.state),
        raised_at=alert.raised_at,
        raised_for=alert.raised_for,
        risk=alert.risk,
        updated_at=alert.updated_at,
        episode=alert.episode,
        model_version=alert.model_version,
        snoozed_until=alert.snoozed_until,
        pending_since=pending_since if alert.state == AlertState.NEW else None,
        version=alert.version_counter,
    )


def _lock_batch(session: Session) -> None:
    """Serialise batch changes on PostgreSQL (SQLite's BEGIN IMMEDIATE already does)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _ADVISORY_LOCK_KEY})


def _pending_since(session: Session, alert_ids: Iterable[int]) -> dict[int, datetime]:
    """When each alert last entered state new (from alert_events): its escalation clock."""
    ids = sorted(set(alert_ids))
    result: dict[int, datetime] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(AlertEvent.alert_id, func.max(AlertEvent.at))
            .where(
                AlertEvent.alert_id.in_(chunk),
                AlertEvent.to_state == AlertState.NEW.value,
                or_(AlertEvent.from_state.is_(None), AlertEvent.from_state != AlertState.NEW.value),
            )
            .group_by(AlertEvent.alert_id)
        ).all()
        result.update({alert_id: at for alert_id, at in rows})
    return result


def _retrying(operation: Callable[[], _T], what: str) -> _T:
    """Run `operation` (one transaction), again when an alert changed under it."""
    for _attempt in range(MAX_ATTEMPTS):
        try:
            return operation()
        except StaleDataError:
            continue
    raise AlertError(f"{what}: the alert kept changing under it ({MAX_ATTEMPTS} attempts); try again")


def _event(
    alert_id: int,
    *,
    now: datetime,
    action: str,
    from_state: str | None,
    to_state: str,
    reason: str | None,
    actor: str = SYSTEM_ACTOR,
    role: str | None = None,
    os_user: str | None = None,
) -> AlertEvent:
    """An alert_events row; riskcast's own changes have actor "riskcast" and no role."""
    return AlertEvent(
        alert_id=alert_id,
        at=now,
        actor=actor,
        role=role,
        os_user=os_user,
        action=action,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
    )


def _apply_system_action(
    session: Session, alert: Alert, action: Action, *, now: datetime, model_version: str | None = None
) -> AlertState:
    """Change `alert` as `action` says (not RAISE), append its event, flush; the new state."""
    from_state = AlertState(alert.state)
    if action.type == ActionType.RE_ALERT:
        to_state = AlertState.NEW if from_state in (AlertState.ACKNOWLEDGED, AlertState.SNOOZED) else from_state
        alert.risk = action.risk
        if model_version is not None:
            alert.model_version = model_version
        event_action = "re_alerted"
    elif action.type == ActionType.AUTO_RESOLVE:
        to_state, event_action = AlertState.RESOLVED, "resolved"
    elif action.type == ActionType.ESCALATE:
        to_state, event_action = AlertState.ESCALATED, "escalated"
    elif action.type == ActionType.WAKE:
        to_state, event_action = AlertState.NEW, "reopened"
    else:  # pragma: no cover - RAISE is handled by _raise
        raise ValueError(f"cannot apply {action.type} to an existing alert")
    alert.state = to_state.value
    if to_state != AlertState.SNOOZED:
        alert.snoozed_until = None
    alert.updated_at = now
    session.add(
        _event(alert.id, now=now, action=event_action, from_state=from_state.value, to_state=to_state.value,
               reason=action.reason)
    )  # fmt: skip
    session.flush()
    return to_state


def _insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(alerts)
    if name == "sqlite":
        return sqlite.insert(alerts)
    raise StoreError(f"the store supports SQLite and PostgreSQL, not {name!r}")


# --- scoring --------------------------------------------------------------------------------


def _score_snapshots(scores: pl.DataFrame) -> list[ScoreSnapshot]:
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores frame lacks column(s) {missing}; expected {list(SCORE_COLUMNS)}")
    dtype = scores.schema["scored_at"]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(f"scores.scored_at must be a time-zone-aware Datetime (UTC), got {dtype}")
    versions = scores["model_version"].unique().to_list()
    if len(versions) > 1:
        raise ValueError(
            f"scores frame holds {len(versions)} model versions {sorted(map(str, versions))}; "
            "alerts come from one model (the champion): pass its scores only"
        )
    repeated = scores.height - scores.select("encounter_id", "scored_at").n_unique()
    if repeated:
        raise ValueError(f"scores frame has {repeated} repeated (encounter_id, scored_at) row(s)")
    rows = (
        scores.select(
            pl.col("encounter_id").cast(pl.String),
            pl.col("patient_id").cast(pl.String),
            pl.col("ward").cast(pl.String),
            pl.col("scored_at").dt.convert_time_zone("UTC"),
            pl.col("risk").cast(pl.Float64).fill_nan(None),
            pl.col("status").cast(pl.String),
            pl.col("model_version").cast(pl.String),
        )
        .sort("scored_at", "encounter_id")
        .iter_rows(named=True)
    )
    return [ScoreSnapshot(**row) for row in rows]


def _resolved_on_departure(session: Session, alert_ids: Sequence[int]) -> set[int]:
    """The alerts among `alert_ids` that riskcast resolved because the patient left."""
    departed: set[int] = set()
    for chunk in _chunks(alert_ids):
        departed.update(session.scalars(
            select(alert_events.c.alert_id).where(
                alert_events.c.alert_id.in_(chunk), alert_events.c.action == "resolved",
                alert_events.c.actor == SYSTEM_ACTOR, alert_events.c.reason.startswith(DEPARTURE_REASON),
            )
        ))  # fmt: skip
    return departed


class _ScoringRun:
    """One process_scores transaction: the encounters' alerts, and what was done to them."""

    def __init__(self, session: Session, policy_set: PolicySet, model_threshold: float | None, now: datetime):
        self.session = session
        self.policy_set = policy_set
        self.model_threshold = model_threshold
        self.now = now
        self.policies: dict[str | None, AlertPolicy] = {}
        self.open: dict[tuple[str, AlertKind], Alert] = {}
        self.last_resolved: dict[tuple[str, AlertKind], Alert] = {}
        self.episodes: dict[tuple[str, AlertKind], int] = {}
        self.pending: dict[int, datetime] = {}
        self.departed: set[int] = set()
        self.counts: dict[str, int] = {}

    def policy(self, ward: str | None) -> AlertPolicy:
        if ward not in self.policies:
            self.policies[ward] = self.policy_set.for_ward(ward).resolve(self.model_threshold)
        return self.policies[ward]

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def load(self, encounter_ids: Sequence[str]) -> None:
        kinds = [AlertKind.RISK.value, AlertKind.STALE_DATA.value]
        found: list[Alert] = []
        for chunk in _chunks(encounter_ids):
            query = (
                select(Alert)
                .where(Alert.encounter_id.in_(chunk), Alert.kind.in_(kinds))
                .order_by(Alert.id)
                .with_for_update()
            )
            found.extend(self.session.scalars(query))
        self.departed = _resolved_on_departure(
            self.session, [a.id for a in found if a.state == AlertState.RESOLVED.value]
        )
        for alert in found:
            self.remember(alert)
        self.pending = _pending_since(
            self.session, [a.id for a in self.open.values() if a.state == AlertState.NEW]
        )

    def remember(self, alert: Alert) -> None:
        key = (alert.encounter_id, AlertKind(alert.kind))
        self.episodes[key] = max(self.episodes.get(key, 0), alert.episode)
        if alert.state != AlertState.RESOLVED:
            self.open[key] = alert
            return
        previous = self.last_resolved.get(key)
        if previous is None or (alert.updated_at, alert.id) > (previous.updated_at, previous.id):
            self.last_resolved[key] = alert

    def follow_patient(self, alert: Alert, score: ScoreSnapshot) -> None:
        """An open alert moves with its patient to the ward they are now scored on, so the
        new ward's staff see it and may act on it. Only a score of a later hour than the alert's
        that is the encounter's latest moves it: a late rescoring of an earlier hour, or a stale
        rescoring of the alert's own, does not."""
        if score.ward is None or alert.ward == score.ward or score.scored_at <= alert.raised_for:
            return
        latest = self.session.execute(
            select(func.max(scores_table.c.scored_at)).where(
                scores_table.c.encounter_id == score.encounter_id, scores_table.c.model_version == score.model_version
            )
        ).scalar_one_or_none()
        if latest is not None and score.scored_at < latest:
            return
        self.session.add(
            _event(alert.id, now=self.now, action="moved", from_state=alert.state, to_state=alert.state,
                   reason=f"patient moved from ward {alert.ward or 'unknown'} to {score.ward}")
        )  # fmt: skip
        alert.ward = score.ward
        alert.updated_at = self.now
        self.session.flush()
        self.count("moved")

    def apply(self, score: ScoreSnapshot) -> None:
        policy = self.policy(score.ward)
        for kind in (AlertKind.RISK, AlertKind.STALE_DATA):
            key = (score.encounter_id, kind)
            current = self.open.get(key)
            if current is not None:
                self.follow_patient(current, score)
            resolved = self.last_resolved.get(key)
            if resolved is not None and resolved.id in self.departed:
                resolved = None  # closed because the patient left: suppresses nothing
            actions = decide(
                _snapshot(current, self.pending.get(current.id)) if current is not None else None,
                score,
                policy=policy,
                now=self.now,
                kind=kind,
                last_resolved=_snapshot(resolved) if resolved is not None else None,
            )
            for action in actions:
                if action.type in (ActionType.RAISE, ActionType.RAISE_STALE):
                    self.raise_alert(score, kind, action)
                    continue
                alert = self.open[key]
                from_state = alert.state
                to_state = _apply_system_action(
                    self.session, alert, action, now=self.now, model_version=score.model_version
                )
                self.count(action.type.value)
                if to_state == AlertState.NEW and from_state != AlertState.NEW:
                    self.pending[alert.id] = self.now
                if to_state == AlertState.RESOLVED:
                    del self.open[key]
                    self.remember(alert)

    def raise_alert(self, score: ScoreSnapshot, kind: AlertKind, action: Action) -> None:
        key = (score.encounter_id, kind)
        statement = (
            _insert(self.session)
            .values(
                encounter_id=score.encounter_id,
                patient_id=score.patient_id,
                ward=score.ward,
                kind=kind.value,
                state=AlertState.NEW.value,
                raised_at=self.now,
                raised_for=score.scored_at,
                risk=action.risk,
                model_version=score.model_version,
                episode=self.episodes.get(key, 0) + 1,
                updated_at=self.now,
                snoozed_until=None,
                version_counter=1,
            )
            .on_conflict_do_nothing(index_elements=["encounter_id", "kind", "raised_for"])
            .returning(alerts.c.id)
        )
        alert_id = self.session.execute(statement).scalar_one_or_none()
        if alert_id is None:
            # Raised before (a concurrent scorer, or this hour rescored after a resolution).
            self.count("already_raised")
            existing = self.session.scalars(
                select(Alert).where(
                    Alert.encounter_id == score.encounter_id,
                    Alert.kind == kind.value,
                    Alert.raised_for == score.scored_at,
                )
            ).one()
            self.remember(existing)
            if existing.state == AlertState.NEW:
                self.pending.update(_pending_since(self.session, [existing.id]))
            return
        self.session.add(
            _event(alert_id, now=self.now, action="raised", from_state=None, to_state=AlertState.NEW.value,
                   reason=action.reason)
        )  # fmt: skip
        self.session.flush()
        alert = self.session.get(Alert, alert_id)
        assert alert is not None
        self.remember(alert)
        self.pending[alert_id] = self.now
        self.count("raised" if kind == AlertKind.RISK else "stale_raised")


def process_scores(
    engine: Engine,
    scores: pl.DataFrame,
    *,
    policy_set: PolicySet,
    model_threshold: float | None,
    now: datetime,
) -> ProcessSummary:
    """Apply the alert policy to one scoring run's scores; write alerts and their events.

    `scores`: encounter_id, patient_id, ward, scored_at (UTC, the hour scored), risk (null
    or NaN when insufficient data), status (a ScoreStatus), model_version
    (one version: the champion's). Each encounter's scores are applied in hour order, each
    with the policy of the ward it was scored on; `model_threshold` fills in a policy whose
    raise_threshold is "model". Open risk alerts of these encounters that are overdue are
    escalated too. One transaction; idempotent (rescoring writes nothing new) and safe
    with concurrent scorers (see the module docstring).
    """
    _require_aware(now, "now")
    snapshots = _score_snapshots(scores)
    if not snapshots:
        return ProcessSummary(scores=0)
    encounter_ids = sorted({s.encounter_id for s in snapshots})

    def run_once() -> dict[str, int]:
        with write_session(engine) as session:
            _lock_batch(session)
            run = _ScoringRun(session, policy_set, model_threshold, now)
            run.load(encounter_ids)
            for snapshot in snapshots:
                run.apply(snapshot)
            return run.counts

    counts = _retrying(run_once, "process_scores")
    return ProcessSummary(
        scores=len(snapshots),
        raised=counts.get("raised", 0),
        stale_raised=counts.get("stale_raised", 0),
        re_alerted=counts.get(ActionType.RE_ALERT.value, 0),
        auto_resolved=counts.get(ActionType.AUTO_RESOLVE.value, 0),
        escalated=counts.get(ActionType.ESCALATE.value, 0),
        woken=counts.get(ActionType.WAKE.value, 0),
        already_raised=counts.get("already_raised", 0),
        moved=counts.get("moved", 0),
    )


# --- periodic jobs ----------------------------------------------------------------------------


def _apply_to_open_alerts(
    engine: Engine,
    *,
    state: AlertState,
    choose: Callable[[list[AlertSnapshot]], list[Action]],
    now: datetime,
    what: str,
) -> list[int]:
    def run_once() -> list[int]:
        with write_session(engine) as session:
            _lock_batch(session)
            found = session.scalars(
                select(Alert).where(Alert.state == state.value).order_by(Alert.id).with_for_update()
            ).all()
            pending = _pending_since(session, [a.id for a in found]) if state == AlertState.NEW else {}
            by_id = {alert.id: alert for alert in found}
            actions = choose([_snapshot(alert, pending.get(alert.id)) for alert in found])
            for action in actions:
                assert action.alert_id is not None
                _apply_system_action(session, by_id[action.alert_id], action, now=now)
            return [action.alert_id for action in actions if action.alert_id is not None]

    return _retrying(run_once, what)


def escalate_due(engine: Engine, *, policy_set: PolicySet, now: datetime) -> list[int]:
    """Escalate every risk alert still new escalate_after_minutes (its ward's policy) after
    it last entered new; the ids escalated. For a periodic job (every few minutes)."""
    _require_aware(now, "now")
    return _apply_to_open_alerts(
        engine,
        state=AlertState.NEW,
        choose=lambda open_alerts: due_escalations(open_alerts, policy=policy_set, now=now),
        now=now,
        what="escalate_due",
    )


def wake_snoozed(engine: Engine, *, now: datetime) -> list[int]:
    """Return every snoozed alert whose snoozed_until is at or before `now` to new; the ids."""
    _require_aware(now, "now")
    return _apply_to_open_alerts(
        engine,
        state=AlertState.SNOOZED,
        choose=lambda open_alerts: expired_snoozes(open_alerts, now=now),
        now=now,
        what="wake_snoozed",
    )


def resolve_departed(engine: Engine, *, admitted: Collection[str], at: datetime, now: datetime) -> list[int]:
    """Resolve the open patient alerts of encounters no longer admitted at the hour `at`
    (policy.departure_resolutions); the ids resolved. Scoring calls it for every hour it
    scores, so a discharged patient's alert neither stays open nor escalates to nobody."""
    _require_aware(at, "at")
    _require_aware(now, "now")
    admitted = set(admitted)

    def run_once() -> list[int]:
        with write_session(engine) as session:
            _lock_batch(session)
            found = session.scalars(
                select(Alert)
                .where(Alert.state.in_([state.value for state in OPEN_STATES]), Alert.kind != AlertKind.SYSTEM.value,
                       Alert.raised_for <= at)
                .order_by(Alert.id)
                .with_for_update()
            ).all()
            by_id = {alert.id: alert for alert in found}
            actions = departure_resolutions([_snapshot(alert) for alert in found], admitted=admitted, at=at)
            for action in actions:
                assert action.alert_id is not None
                _apply_system_action(session, by_id[action.alert_id], action, now=now)
            return [action.alert_id for action in actions if action.alert_id is not None]

    return _retrying(run_once, "resolve_departed")


# --- system alerts --------------------------------------------------------------------------


def _clip(reason: str) -> str:
    return reason if len(reason) <= SYSTEM_REASON_MAX_CHARS else reason[: SYSTEM_REASON_MAX_CHARS - 1] + "…"


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

    `raised_for` is the time the problem describes (a job's scheduled time, UTC); `problem`
    is one line for people, e.g. "score failed: LakeError: the lake ... is empty". A problem
    already raised for this very `raised_for` and resolved since is left resolved. The event
    is by the actor "riskcast" with the problem as its reason.
    """
    _require_aware(raised_for, "raised_for")
    _require_aware(now, "now")
    if not subject:
        raise AlertError("a system alert needs a subject, e.g. \"job:score\" or \"feed:Ward 7\"")
    key = SYSTEM_SUBJECT_PREFIX + subject

    def run_once() -> SystemAlertChange:
        with write_session(engine) as session:
            _lock_batch(session)
            open_alert = session.scalars(
                select(Alert)
                .where(Alert.encounter_id == key, Alert.kind == AlertKind.SYSTEM.value,
                       Alert.state != AlertState.RESOLVED.value)
                .order_by(Alert.id.desc())
                .with_for_update()
            ).first()  # fmt: skip
            if problem is None:
                if open_alert is None:
                    return SystemAlertChange(subject, "none")
                cleared = Action(ActionType.AUTO_RESOLVE, open_alert.id, "cleared: the problem is gone")
                _apply_system_action(session, open_alert, cleared, now=now)
                return SystemAlertChange(subject, "resolved", open_alert.id)
            if open_alert is not None:
                return SystemAlertChange(subject, "open", open_alert.id)
            alert_id = session.execute(
                _insert(session)
                .values(encounter_id=key, patient_id=SYSTEM_PATIENT, ward=ward, kind=AlertKind.SYSTEM.value,
                        state=AlertState.NEW.value, raised_at=now, raised_for=raised_for, risk=None,
                        model_version=None, episode=1, updated_at=now, snoozed_until=None, version_counter=1)
                .on_conflict_do_nothing(index_elements=["encounter_id", "kind", "raised_for"])
                .returning(alerts.c.id)
            ).scalar_one_or_none()  # fmt: skip
            if alert_id is None:  # raised for this very time before, and resolved since: leave it
                return SystemAlertChange(subject, "none")
            session.add(_event(alert_id, now=now, action="raised", from_state=None, to_state=AlertState.NEW.value,
                               reason=_clip(problem)))  # fmt: skip
            return SystemAlertChange(subject, "raised", alert_id)

    return _retrying(run_once, f"system alert {subject}")


def open_system_subjects(engine: Engine, *, prefix: str = "") -> set[str]:
    """The subjects of the open system alerts that start with `prefix` (e.g. "feed:")."""
    with engine.connect() as connection:
        keys = connection.execute(
            select(alerts.c.encounter_id).where(
                alerts.c.kind == AlertKind.SYSTEM.value, alerts.c.state != AlertState.RESOLVED.value,
                alerts.c.encounter_id.startswith(SYSTEM_SUBJECT_PREFIX + prefix, autoescape=True),
            )
        ).scalars().all()  # fmt: skip
    return {key.removeprefix(SYSTEM_SUBJECT_PREFIX) for key in keys}


# --- staff actions --------------------------------------------------------------------------


def _check_staff(actor: str, role: str) -> None:
    if not isinstance(actor, str) or not actor.strip():
        raise AlertError("an alert action needs the actor (the user's name)")
    if role not in USER_ROLES:
        raise AlertError(f"role {role!r} is not one of {list(USER_ROLES)}")


def _check_reason(alert_id: int, verb: str, reason: str | None, policy: AlertPolicy, *, required: bool) -> str | None:
    if reason is not None and not isinstance(reason, str):
        raise AlertError(f"alert {alert_id}: the reason to {verb} it must be text")
    cleaned = reason.strip() if reason else ""
    if required and not cleaned:
        raise AlertError(f"alert {alert_id}: a reason is required to {verb} it")
    if len(cleaned) > policy.max_reason_length:
        raise AlertError(
            f"alert {alert_id}: the reason to {verb} it is {len(cleaned)} characters; "
            f"the policy allows at most {policy.max_reason_length}"
        )
    return cleaned or None


def _staff_action(
    engine: Engine,
    alert_id: int,
    *,
    verb: str,
    event_action: str,
    allowed_from: tuple[AlertState, ...],
    to_state: AlertState,
    actor: str,
    role: str,
    reason: str | None,
    reason_required: bool,
    policy_set: PolicySet | None,
    now: datetime,
    until: datetime | None = None,
    os_user: str | None = None,
) -> AlertSnapshot:
    _require_aware(now, "now")
    _check_staff(actor, role)
    policies = policy_set if policy_set is not None else load_policy()

    def run_once() -> AlertSnapshot:
        with write_session(engine) as session:
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise AlertError(f"alerts: no alert with id {alert_id}")
            from_state = AlertState(alert.state)
            if from_state not in allowed_from:
                allowed = ", ".join(state.value for state in allowed_from)
                raise AlertError(
                    f"alert {alert_id} is {from_state.value}; only an alert that is {allowed} can be {event_action}"
                )
            policy = policies.for_ward(alert.ward)
            cleaned = _check_reason(alert_id, verb, reason, policy, required=reason_required)
            if to_state == AlertState.SNOOZED:
                _check_snooze(alert_id, until, policy, now)
            alert.state = to_state.value
            alert.snoozed_until = until if to_state == AlertState.SNOOZED else None
            alert.updated_at = now
            session.add(
                _event(alert_id, now=now, action=event_action, from_state=from_state.value,
                       to_state=to_state.value, reason=cleaned, actor=actor, role=role, os_user=os_user)
            )  # fmt: skip
            session.flush()
            return _snapshot(alert, now)

    return _retrying(run_once, f"{verb} alert {alert_id}")


def _check_snooze(alert_id: int, until: datetime | None, policy: AlertPolicy, now: datetime) -> None:
    if until is None:
        raise AlertError(f"alert {alert_id}: a snooze needs `until`, the time it ends")
    _require_aware(until, "until")
    if until <= now:
        raise AlertError(
            f"alert {alert_id}: a snooze must end after now ({until.isoformat()} is not after {now.isoformat()})"
        )
    hours = (until - now) / timedelta(hours=1)
    if hours > policy.max_snooze_hours + 1e-9:
        raise AlertError(
            f"alert {alert_id}: a snooze of {hours:.4g} hours is longer than the policy's "
            f"max_snooze_hours of {policy.max_snooze_hours:g}"
        )


def acknowledge(
    engine: Engine,
    alert_id: int,
    *,
    actor: str,
    role: str,
    reason: str | None = None,
    now: datetime,
    policy_set: PolicySet | None = None,
    os_user: str | None = None,
) -> AlertSnapshot:
    """`actor` (with `role`) has seen alert `alert_id` (new, escalated or snoozed) at `now`.

    Stops escalation; the alert stays open until resolved. `policy_set` bounds the reason's
    length (the packaged policy when None). `os_user`: the operating-system account, when
    the action comes from the command line. Raises AlertError for any other state.
    """
    return _staff_action(
        engine, alert_id, verb="acknowledge", event_action="acknowledged",
        allowed_from=(AlertState.NEW, AlertState.ESCALATED, AlertState.SNOOZED),
        to_state=AlertState.ACKNOWLEDGED, actor=actor, role=role, reason=reason,
        reason_required=False, policy_set=policy_set, now=now, os_user=os_user,
    )  # fmt: skip


def snooze(
    engine: Engine,
    alert_id: int,
    *,
    actor: str,
    role: str,
    until: datetime,
    reason: str,
    now: datetime,
    policy_set: PolicySet | None = None,
    os_user: str | None = None,
) -> AlertSnapshot:
    """Hide alert `alert_id` (new, acknowledged or escalated) until `until` (UTC).

    A reason is required and, like the length of the snooze (max_snooze_hours), bounded by
    the policy of the alert's ward. At `until` wake_snoozed (or the next score) returns it
    to new. Raises AlertError naming what is wrong.
    """
    return _staff_action(
        engine, alert_id, verb="snooze", event_action="snoozed",
        allowed_from=(AlertState.NEW, AlertState.ACKNOWLEDGED, AlertState.ESCALATED),
        to_state=AlertState.SNOOZED, actor=actor, role=role, reason=reason,
        reason_required=True, policy_set=policy_set, now=now, until=until, os_user=os_user,
    )  # fmt: skip


def resolve(
    engine: Engine,
    alert_id: int,
    *,
    actor: str,
    role: str,
    reason: str,
    now: datetime,
    policy_set: PolicySet | None = None,
    os_user: str | None = None,
) -> AlertSnapshot:
    """Close open alert `alert_id`: `actor` judged the concern over, for `reason` (required).

    Starts the ward's suppression window for the encounter. Raises AlertError when the
    alert is already resolved or the reason is missing or too long.
    """
    return _staff_action(
        engine, alert_id, verb="resolve", event_action="resolved",
        allowed_from=OPEN_STATES, to_state=AlertState.RESOLVED, actor=actor, role=role,
        reason=reason, reason_required=True, policy_set=policy_set, now=now, os_user=os_user,
    )  # fmt: skip


# --- queries --------------------------------------------------------------------------------


def _frame(rows: Sequence[Any], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame([tuple(row) for row in rows], schema=schema, orient="row")


def list_alerts(
    engine: Engine,
    *,
    ward: str | None = None,
    wards: Collection[str] | None = None,
    encounter_ids: Collection[str] | None = None,
    states: Iterable[str] | None = None,
    kind_first: bool = False,
    limit: int | None = None,
) -> pl.DataFrame:
    """Alerts (columns: ALERTS_SCHEMA), most urgent first: escalated, new, snoozed,
    acknowledged, resolved (STATE_URGENCY); then, with `kind_first`, risk before stale-data
    before system (KIND_URGENCY); then highest risk, then most recently updated.

    `ward` keeps one ward and `wards` any of several (the ward the alert was raised on);
    `encounter_ids` keeps those encounters; `states` keeps those states (e.g. OPEN_STATES);
    `limit` keeps the first rows. The one query of the alerts table for the CLI and the
    dashboard's read models alike.
    """
    query = select(
        alerts.c.id, alerts.c.encounter_id, alerts.c.patient_id, alerts.c.ward, alerts.c.kind, alerts.c.state,
        alerts.c.raised_at, alerts.c.raised_for, alerts.c.risk, alerts.c.model_version, alerts.c.episode,
        alerts.c.updated_at, alerts.c.snoozed_until, alerts.c.version_counter,
    )  # fmt: skip
    if ward is not None:
        query = query.where(alerts.c.ward == ward)
    if wards is not None:
        query = query.where(alerts.c.ward.in_(sorted(wards)))
    if encounter_ids is not None:
        query = query.where(alerts.c.encounter_id.in_(list(encounter_ids)))
    if states is not None:
        wanted = [str(state) for state in states]
        unknown = sorted(set(wanted) - {s.value for s in AlertState})
        if unknown:
            raise ValueError(f"list_alerts: unknown state(s) {unknown}; known: {[s.value for s in AlertState]}")
        query = query.where(alerts.c.state.in_(wanted))
    if limit is not None:
        if limit < 0:
            raise ValueError(f"list_alerts: limit must be >= 0, got {limit}")
        query = query.limit(limit)
    urgency = [case(STATE_URGENCY, value=alerts.c.state, else_=len(STATE_URGENCY))]
    if kind_first:
        urgency.append(case(KIND_URGENCY, value=alerts.c.kind, else_=len(KIND_URGENCY)))
    query = query.order_by(
        *urgency, alerts.c.risk.is_(None), alerts.c.risk.desc(), alerts.c.updated_at.desc(), alerts.c.id.desc()
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return _frame(rows, ALERTS_SCHEMA)


def alert_history(engine: Engine, *, alert_id: int | None = None, encounter_id: str | None = None) -> pl.DataFrame:
    """The events of one alert, or of all alerts of one encounter (columns: HISTORY_SCHEMA),
    oldest first. Give exactly one of `alert_id` and `encounter_id`."""
    if (alert_id is None) == (encounter_id is None):
        raise ValueError("alert_history: give exactly one of alert_id and encounter_id")
    query = select(
        alert_events.c.id, alert_events.c.alert_id, alerts.c.encounter_id, alerts.c.kind, alert_events.c.at,
        alert_events.c.actor, alert_events.c.role, alert_events.c.action, alert_events.c.from_state,
        alert_events.c.to_state, alert_events.c.reason, alert_events.c.os_user,
    ).join(alerts, alerts.c.id == alert_events.c.alert_id)  # fmt: skip
    if alert_id is not None:
        query = query.where(alert_events.c.alert_id == alert_id)
    else:
        query = query.where(alerts.c.encounter_id == encounter_id)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(alert_events.c.at, alert_events.c.id)).all()
    return _frame(rows, HISTORY_SCHEMA)


def system_alerts_frame(engine: Engine, *, open_only: bool = True) -> pl.DataFrame:
    """System alerts with the reason they were raised, newest first (columns: SYSTEM_ALERTS_SCHEMA)."""
    query = (
        select(alerts.c.id, alerts.c.encounter_id, alerts.c.ward, alerts.c.state, alerts.c.raised_at,
               alerts.c.raised_for, alerts.c.updated_at, alert_events.c.reason)
        .join(alert_events, (alert_events.c.alert_id == alerts.c.id) & (alert_events.c.action == "raised"))
        .where(alerts.c.kind == AlertKind.SYSTEM.value)
        .order_by(alerts.c.raised_at.desc(), alerts.c.id.desc())
    )  # fmt: skip
    if open_only:
        query = query.where(alerts.c.state != AlertState.RESOLVED.value)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return _frame([(r[0], r[1].removeprefix(SYSTEM_SUBJECT_PREFIX), *r[2:]) for r in rows], SYSTEM_ALERTS_SCHEMA)


def count_raised(engine: Engine, *, kind: AlertKind, start: datetime, end: datetime) -> int:
    """How many alerts of `kind` were raised for an hour in (start, end] (UTC)."""
    with engine.connect() as connection:
        return int(connection.execute(
            select(func.count()).select_from(alerts).where(
                alerts.c.kind == kind.value, alerts.c.raised_for > start, alerts.c.raised_for <= end
            )
        ).scalar_one())  # fmt: skip


__all__ = [
    "ALERTS_SCHEMA",
    "HISTORY_SCHEMA",
    "KIND_URGENCY",
    "MAX_ATTEMPTS",
    "STATE_URGENCY",
    "SYSTEM_ALERTS_SCHEMA",
    "SYSTEM_PATIENT",
    "SYSTEM_REASON_MAX_CHARS",
    "SYSTEM_SUBJECT_PREFIX",
    "ProcessSummary",
    "SystemAlertChange",
    "acknowledge",
    "alert_history",
    "count_raised",
    "escalate_due",
    "list_alerts",
    "open_system_subjects",
    "process_scores",
    "resolve",
    "snooze",
    "sync_system_alert",
    "system_alerts_frame",
    "wake_snoozed",
]
