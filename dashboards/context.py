"""What every page and callback needs to reach riskcast: the store, the lake, the model
registry, the alert policy, the clock and the display time zone, kept on the Flask app.

`create_app` builds one DashboardContext and stores it in `server.extensions`; pages call
`context()` inside a request. Nothing is read from disk or the database here: building the
context opens the store (and migrates it), and pages ask for data when they are drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import flask
from sqlalchemy import Engine

from riskcast.alerts.policy import AlertPolicy, PolicySet
from riskcast.catalog import Catalog
from riskcast.config import Settings
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.views import ModelInUse, model_in_use

EXTENSION = "riskcast"


@dataclass(frozen=True)
class DashboardContext:
    """The dashboard's handles on riskcast; `clock()` returns the current UTC time."""

    settings: Settings
    engine: Engine
    lake: Lake
    registry: ModelRegistry
    policy_set: PolicySet
    catalog: Catalog
    clock: Callable[[], datetime]
    zone: ZoneInfo

    def model(self) -> ModelInUse:
        """The champion whose scores the pages show (read from the registry each time, so a
        promotion shows up without a restart)."""
        return model_in_use(self.registry)

    def policy_for(self, ward: str | None, model: ModelInUse) -> AlertPolicy | None:
        """The ward's alert policy with concrete thresholds; None before any model."""
        policy = self.policy_set.for_ward(ward)
        if policy.raise_threshold is None and model.threshold is None:
            return None
        return policy.resolve(model.threshold)


def context() -> DashboardContext:
    """The DashboardContext of the app serving this request."""
    return flask.current_app.extensions[EXTENSION]
