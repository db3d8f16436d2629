"""What every page and callback needs to reach riskcast: the store, the lake, the model
registry, the alert policy, the clock and the display time zone, kept on the Flask app; and
the SecurityOptions that sign-in and sessions follow.

`create_app` builds one DashboardContext and stores it in `server.extensions`; pages call
`context()` inside a request. Nothing is read from disk or the database here: building the
context opens the store (and migrates it), and pages ask for data when they are drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import flask
from sqlalchemy import Engine

from riskcast.alerts.policy import AlertPolicy, PolicySet
from riskcast.catalog import Catalog
from riskcast.clock import wall_clock
from riskcast.config import Settings
from riskcast.dashboards.sessions import COOKIE_SECURE_CHOICES
from riskcast.dashboards.throttle import SignInThrottle
from riskcast.errors import ConfigError
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.reports import ReportStore
from riskcast.read_models import ModelInUse, model_in_use

EXTENSION = "riskcast"


@dataclass(frozen=True)
class SecurityOptions:
    """How long sessions last and when their cookie is Secure; how sign-in is throttled.

    - `session_hours`: a sign-in ends this long after it was made (one shift), however busy;
    - `idle_minutes`: and ends sooner when nobody used it for this long (the page's own
      automatic refreshes do not count);
    - `cookie_secure`: "auto" (Secure when the request came over HTTPS, which behind a
      TLS-terminating proxy needs the WSGI server to trust its X-Forwarded-Proto), "always"
      (serving only over HTTPS) or "never";
    - `throttle`: how many wrong passwords are free, and the waits after them.
    """

    session_hours: float = 12.0
    idle_minutes: float = 30.0
    cookie_secure: str = "auto"
    throttle: SignInThrottle = field(default_factory=SignInThrottle)

    def __post_init__(self) -> None:
        if self.cookie_secure not in COOKIE_SECURE_CHOICES:
            raise ConfigError(f"cookie_secure {self.cookie_secure!r} is not one of {', '.join(COOKIE_SECURE_CHOICES)}")
        if not 0 < self.idle_minutes <= self.session_hours * 60:
            raise ConfigError(f"the idle timeout ({self.idle_minutes:g} min) must be positive and at most the "
                              f"session's lifetime ({self.session_hours:g} h)")  # fmt: skip

    @property
    def lifetime(self) -> timedelta:
        """How long a session lasts at most."""
        return timedelta(hours=self.session_hours)

    @property
    def idle(self) -> timedelta:
        """How long a session lasts unused."""
        return timedelta(minutes=self.idle_minutes)


@dataclass(frozen=True)
class DashboardContext:
    """The dashboard's handles on riskcast; `clock()` returns the current UTC time (of the
    data: a demo runs on a shifted clock), `session_clock()` the real one that sessions and
    sign-in throttling run on."""

    settings: Settings
    engine: Engine
    lake: Lake
    registry: ModelRegistry
    policy_set: PolicySet
    catalog: Catalog
    clock: Callable[[], datetime]
    zone: ZoneInfo
    security: SecurityOptions = field(default_factory=SecurityOptions)
    session_clock: Callable[[], datetime] = wall_clock

    def model(self) -> ModelInUse:
        """The champion whose scores the pages show (read from the registry each time, so a
        promotion shows up without a restart)."""
        return model_in_use(self.registry)

    @property
    def reports(self) -> ReportStore:
        """The home's report files (the model card and evaluation of each version, the trade-offs,
        the audits), read through their one owner."""
        return ReportStore(self.registry, self.settings.reports_dir)

    def policy_for(self, ward: str | None, model: ModelInUse) -> AlertPolicy | None:
        """The ward's alert policy with concrete thresholds; None before any model."""
        policy = self.policy_set.for_ward(ward)
        if policy.raise_threshold is None and model.threshold is None:
            return None
        return policy.resolve(model.threshold)


def context() -> DashboardContext:
    """The DashboardContext of the app serving this request."""
    return flask.current_app.extensions[EXTENSION]
