"""The monitor: judge data health as of one time and keep its system alerts in step.

    report = monitor_data_health(lake, registry, engine, at=scheduled_for, now=now)

Reads the lake's observations and encounters, the champion's model card and its scores in
the store; judges them with riskcast.monitoring (feed freshness, drift, alert rate); and
raises or resolves one system alert per problem through riskcast.alerts.state:

- "feed:<ward>": a stale essential vital on the ward, or a silent ward (the same frame the
  data-health page shows);
- "drift": the champion's scores shifted from its held-out evaluation, or variables shifted
  from its training data (PSI at or above `psi_alert`);
- "alert_rate": risk alerts per 100 patient-days far from the rate the model was evaluated at.

Parts that cannot be judged yet (an empty lake, no champion) are noted in the report, not
failed. Running it again for the same `at` gives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Engine, and_, func, select

from riskcast.alert_burden import patient_days
from riskcast.alerts.policy import AlertKind
from riskcast.alerts.state import count_raised, open_system_subjects, sync_system_alert
from riskcast.catalog import Catalog, load_catalog
from riskcast.errors import ConfigError
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.monitoring import (
    DEFAULT_LOOKBACK_HOURS,
    alert_rate_check,
    feed_freshness,
    score_psi,
    stale_feed_problems,
    variable_drift,
)
from riskcast.pipeline.reports import ReportStore
from riskcast.score_status import ScoreStatus
from riskcast.store.tables import scores

FEED_SUBJECT = "feed:"
DRIFT_SUBJECT = "drift"
ALERT_RATE_SUBJECT = "alert_rate"
STALE_ROWS_LISTED = 200
"""How many stale (ward, variable) feeds the report lists; the count of all is beside it."""


@dataclass(frozen=True)
class MonitorOptions:
    """How the monitor judges (the monitor job's options in schemas/schedule.yaml).

    lookback_hours: a feed counts if it delivered in this window; window_hours: the recent
    window compared with training; reference_days: the last days of the training data used
    as the drift reference; psi_alert: PSI at or above which drift is raised; min_values:
    fewer values than this in either window and no PSI is computed; alert_rate_ratio and
    min_patient_days: see riskcast.monitoring.alert_rate_check; alert_on_non_essential: raise
    feed alerts for stale labs and other non-essential variables too.
    """

    lookback_hours: float = DEFAULT_LOOKBACK_HOURS
    window_hours: float = 24.0
    reference_days: float = 30.0
    psi_alert: float = 0.25
    min_values: int = 100
    alert_rate_ratio: float = 3.0
    min_patient_days: float = 5.0
    alert_on_non_essential: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MonitorOptions:
        """The options from a mapping (a job's options), each converted to its type; one not
        given keeps its default. ConfigError names an unknown option or a value of the wrong kind."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"monitor: unknown option(s) {unknown}; it takes: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for name, value in options.items():
            kind = type(getattr(cls(), name))
            if kind is bool:
                if not isinstance(value, bool):
                    raise ConfigError(f"monitor option {name}: expected true or false, got {value!r}")
                values[name] = value
                continue
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"monitor option {name}: expected a number, got {value!r}") from None
            if isinstance(value, bool) or values[name] < 0:
                raise ConfigError(f"monitor option {name}: expected a number of at least 0, got {value!r}")
        return cls(**values)


@dataclass(frozen=True)
class MonitorReport:
    """What one monitor pass judged (plain JSON values per part) and which system alerts it
    raised or resolved."""

    at: datetime
    feeds: dict[str, Any]
    drift: dict[str, Any]
    alert_rate: dict[str, Any]
    system_alerts: dict[str, list[str]] = field(default_factory=lambda: {"raised": [], "resolved": []})

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "feeds": self.feeds,
            "drift": self.drift,
            "alert_rate": self.alert_rate,
            "system_alerts": self.system_alerts,
        }


def monitor_data_health(
    lake: Lake,
    registry: ModelRegistry,
    engine: Engine,
    *,
    at: datetime,
    now: datetime,
    options: MonitorOptions | None = None,
    catalog: Catalog | None = None,
    step: Callable[[str], None] = lambda label: None,
) -> MonitorReport:
    """Judge feeds, drift and the alert rate as of `at` (UTC) and sync their system alerts.

    `now` stamps the alerts' changes; `step(label)` is told when each part is done (a job
    records it). See the module docstring.
    """
    options = options or MonitorOptions()
    changes: dict[str, list[str]] = {"raised": [], "resolved": []}

    def sync(subject: str, problem: str | None, ward: str | None = None) -> None:
        change = sync_system_alert(engine, subject, problem, raised_for=at, now=now, ward=ward)
        if change.action in changes:
            changes[change.action].append(subject)

    feeds = _check_feeds(lake, engine, at=at, options=options, catalog=catalog or load_catalog(), sync=sync)
    step("feeds checked")
    champion = registry.champion()
    if champion is None:
        drift = alert_rate = {"note": "no champion model yet: nothing to compare with"}
    elif lake.is_empty():
        drift = alert_rate = {"note": "the lake is empty: nothing to judge yet"}
    else:
        card = ReportStore(registry).require_model_card(champion).to_dict()
        window = timedelta(hours=options.window_hours)
        risks, score_rows = _champion_scores(engine, champion, start=at - window, end=at)
        drift = _check_drift(lake, card, champion, risks, at=at, options=options, sync=sync)
        alert_rate = _check_alert_rate(engine, card, score_rows, at=at, options=options, sync=sync)
    return MonitorReport(at=at, feeds=feeds, drift=drift, alert_rate=alert_rate, system_alerts=changes)


def _check_feeds(
    lake: Lake, engine: Engine, *, at: datetime, options: MonitorOptions, catalog: Catalog,
    sync: Callable[..., None],
) -> dict[str, Any]:  # fmt: skip
    if lake.is_empty():
        return {"note": "the lake is empty: nothing to judge yet"}
    freshness = feed_freshness(lake.scan("observations"), lake.scan("encounters"), at=at, catalog=catalog,
                               lookback_hours=options.lookback_hours)  # fmt: skip
    problems = stale_feed_problems(freshness, essential_only=not options.alert_on_non_essential)
    stale = freshness.filter(pl.col("stale"))
    for ward, problem in problems.items():
        sync(f"{FEED_SUBJECT}{ward}", problem, ward=ward)
    for subject in open_system_subjects(engine, prefix=FEED_SUBJECT) - {f"{FEED_SUBJECT}{w}" for w in problems}:
        sync(subject, None)
    return {
        "wards": freshness["ward"].n_unique(),
        "checked": freshness.height,
        "stale_count": stale.height,
        "stale": [
            {"ward": r["ward"], "variable": r["variable"],
             "hours_since": None if r["hours_since"] is None else round(r["hours_since"], 1),
             "stale_after_hours": r["stale_after_hours"], "essential": r["essential"]}
            for r in stale.head(STALE_ROWS_LISTED).iter_rows(named=True)
        ],
        "stale_wards": sorted(problems),
    }  # fmt: skip


def _champion_scores(engine: Engine, version: str, *, start: datetime, end: datetime) -> tuple[np.ndarray, int]:
    """Risks of the champion's scored rows in (start, end], and how many score rows (patient-hours) it wrote."""
    window = and_(scores.c.model_version == version, scores.c.scored_at > start, scores.c.scored_at <= end)
    with engine.connect() as connection:
        risks = connection.execute(
            select(scores.c.risk).where(window, scores.c.status == ScoreStatus.SCORED, scores.c.risk.is_not(None))
        ).scalars().all()
        rows = connection.execute(select(func.count()).select_from(scores).where(window)).scalar_one()
    return np.asarray(risks, dtype=float), int(rows)


def _check_drift(
    lake: Lake, card: dict[str, Any], champion: str, risks: np.ndarray, *, at: datetime, options: MonitorOptions,
    sync: Callable[..., None],
) -> dict[str, Any]:  # fmt: skip
    """PSI of the champion's recent `risks` against its held-out evaluation, and of each variable
    in the window against the last reference_days of its training batches."""
    window = timedelta(hours=options.window_hours)
    evaluation = card.get("metrics", {}).get("evaluation", {})
    drift: dict[str, Any] = {"model_version": champion, "window_hours": options.window_hours}
    reliability = evaluation.get("calibration", {}).get("reliability")
    score_shift = score_psi(reliability, risks) if reliability and risks.size >= options.min_values else None
    drift["score_psi"] = None if score_shift is None else round(score_shift, 4)
    data = card.get("data", {})
    batches = data.get("lake_batches") or data.get("description", {}).get("lake_batches") or []
    observations = lake.scan("observations")
    training = pl.col("batch_id").is_in(pl.Series(batches, dtype=pl.String).implode())
    reference_end = observations.filter(training).select(pl.col("charttime").max()).collect().item()
    drift["variables"] = {}
    if reference_end is not None:
        reference = training & (pl.col("charttime") > reference_end - timedelta(days=options.reference_days))
        current = (pl.col("charttime") > at - window) & (pl.col("charttime") <= at)
        shifted = variable_drift(observations, reference=reference, current=current, min_values=options.min_values)
        drift["variables"] = {r["variable"]: round(r["psi"], 4) for r in shifted.iter_rows(named=True)}
    drifted = {v: p for v, p in drift["variables"].items() if p >= options.psi_alert}
    drift["drifted"] = sorted(drifted)
    parts = []
    if drift["score_psi"] is not None and drift["score_psi"] >= options.psi_alert:
        parts.append(f"scores of {champion} shifted from its held-out evaluation (PSI {drift['score_psi']:.2f})")
    if drifted:
        listed = ", ".join(f"{v} ({p:.2f})" for v, p in sorted(drifted.items(), key=lambda kv: -kv[1])[:8])
        parts.append(f"variables shifted from the training data (PSI >= {options.psi_alert:g}): {listed}")
    sync(DRIFT_SUBJECT, "; ".join(parts) or None)
    return drift


def _check_alert_rate(
    engine: Engine, card: dict[str, Any], score_rows: int, *, at: datetime, options: MonitorOptions,
    sync: Callable[..., None],
) -> dict[str, Any]:  # fmt: skip
    """Risk alerts raised in the window per 100 patient-days of the champion's score rows, against
    the rate its held-out evaluation gave at its threshold."""
    window = timedelta(hours=options.window_hours)
    expected = card.get("metrics", {}).get("evaluation", {}).get("operating_point", {}).get("alerts_per_100_patient_days")
    check = alert_rate_check(
        count_raised(engine, kind=AlertKind.RISK, start=at - window, end=at), float(patient_days(score_rows)),
        expected, ratio=options.alert_rate_ratio, min_patient_days=options.min_patient_days,
    )  # fmt: skip
    sync(ALERT_RATE_SUBJECT, check.problem)
    return check.to_dict()


__all__ = ["MonitorOptions", "MonitorReport", "monitor_data_health"]
