"""Open alerts as the ward board and the patient page list them, most urgent first, and
where an alert belongs (so that a page or the CLI can check who may act on it).

Read only: riskcast.alerts.state is the one writer of the alerts table.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine, and_, select

from riskcast.alerts.policy import OPEN_STATES
from riskcast.alerts.state import list_alerts
from riskcast.store.tables import alerts

NEEDS_ACTION_STATES = ("new", "escalated")
"""Alert states that nobody has acted on yet: highlighted, and first on the board."""


@dataclass(frozen=True)
class AlertScope:
    """Where an alert belongs, so that a page can check who may act on it."""

    alert_id: int
    encounter_id: str
    ward: str | None
    kind: str
    state: str


def open_alerts(
    engine: Engine, *, encounter_ids: Collection[str] | None, wards: Collection[str] | None
) -> pl.DataFrame:
    """Open alerts (ALERTS_SCHEMA) of `encounter_ids` on `wards` (all when None), most urgent
    first: state, then risk before stale-data, then highest risk, then most recently updated.
    riskcast.alerts.state.list_alerts answers it, so the board, the patient page and the CLI
    share one query and one order."""
    return list_alerts(
        engine, wards=wards, encounter_ids=encounter_ids, states=[state.value for state in OPEN_STATES], kind_first=True
    )


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
