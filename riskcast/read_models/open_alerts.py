"""Open alerts as the ward board and the patient page list them, most urgent first, and
where an alert belongs (so that a page or the CLI can check who may act on it).

Read only: riskcast.alerts.state is the one writer of the alerts table.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine, and_, case, select

from riskcast.alerts.policy import OPEN_STATES
from riskcast.alerts.state import ALERTS_SCHEMA
from riskcast.read_models.scores import rows_frame
from riskcast.store.tables import alerts

NEEDS_ACTION_STATES = ("new", "escalated")
"""Alert states that nobody has acted on yet: highlighted, and first on the board."""

_STATE_ORDER = {"escalated": 0, "new": 1, "snoozed": 2, "acknowledged": 3, "resolved": 4}

_KIND_ORDER = {"risk": 0, "stale_data": 1, "system": 2}


@dataclass(frozen=True)
class AlertScope:
    """Where an alert belongs, so that a page can check who may act on it."""

    alert_id: int
    encounter_id: str
    ward: str | None
    kind: str
    state: str


def open_alerts(engine: Engine, *, encounter_ids: list[str] | None, wards: Collection[str] | None) -> pl.DataFrame:
    """Open alerts (ALERTS_SCHEMA), most urgent first: state, then risk before stale-data,
    then highest risk, then most recently updated."""
    query = select(
        alerts.c.id, alerts.c.encounter_id, alerts.c.patient_id, alerts.c.ward, alerts.c.kind, alerts.c.state,
        alerts.c.raised_at, alerts.c.raised_for, alerts.c.risk, alerts.c.model_version, alerts.c.episode,
        alerts.c.updated_at, alerts.c.snoozed_until, alerts.c.version_counter,
    ).where(alerts.c.state.in_([state.value for state in OPEN_STATES]))  # fmt: skip
    if encounter_ids is not None:
        query = query.where(alerts.c.encounter_id.in_(encounter_ids))
    if wards is not None:
        query = query.where(alerts.c.ward.in_(sorted(wards)))
    query = query.order_by(
        case(_STATE_ORDER, value=alerts.c.state, else_=len(_STATE_ORDER)),
        case(_KIND_ORDER, value=alerts.c.kind, else_=len(_KIND_ORDER)),
        alerts.c.risk.is_(None),
        alerts.c.risk.desc(),
        alerts.c.updated_at.desc(),
        alerts.c.id.desc(),
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return rows_frame(rows, ALERTS_SCHEMA)


def alert_scope(engine: Engine, alert_id: int) -> AlertScope | None:
    """The encounter, ward, kind and state of alert `alert_id`; None when there is none."""
    with engine.connect() as connection:
        row = connection.execute(
            select(alerts.c.id, alerts.c.encounter_id, alerts.c.ward, alerts.c.kind, alerts.c.state).where(
                and_(alerts.c.id == alert_id)
            )
        ).one_or_none()
    if row is None:
        return None
    return AlertScope(alert_id=row.id, encounter_id=row.encounter_id, ward=row.ward, kind=row.kind, state=row.state)


__all__ = [
    "AlertScope",
    "NEEDS_ACTION_STATES",
    "alert_scope",
    "open_alerts",
]
