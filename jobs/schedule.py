"""The schedule: which jobs run when, read from a YAML file (schemas/schedule.yaml by default).

Job definitions live in code (riskcast.jobs.definitions) and their timing in this file,
so nothing about a job needs persisting between starts: the scheduler rebuilds its
APScheduler jobs from the file each time, and what must survive a restart (which runs
happened, which are running, who holds a job) lives in the store's job_runs and
job_locks tables.

Daylight saving. Cron expressions are read in the schedule's named time zone. A job at a
fixed hour (e.g. nightly at 02:30) runs once per local day across both changes: APScheduler
already fires a time that falls in the spring gap once (at the first instant after the gap),
and `WallClockCronTrigger` drops the second occurrence of a wall-clock time repeated in the
autumn, as cron does. A job whose hour field is "*" fires every real hour, both times
through the repeated hour: 23 runs on the spring day, 25 on the autumn day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from riskcast.config import read_yaml_config
from riskcast.errors import ConfigError

DEFAULT_SCHEDULE_FILE = "schedule.yaml"
DEMO_SCHEDULE_FILE = "demo_schedule.yaml"
HOME_SCHEDULE_FILE = "schedule.yaml"
JOB_NAMES = ("ingest", "score", "escalate", "monitor", "nightly", "retrain", "housekeeping")
"""Every job riskcast knows, in the order `riskcast jobs list` shows them."""
JOB_OPTIONS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"settle_seconds"}),
    "score": frozenset(),
    "escalate": frozenset(),
    "monitor": frozenset({"lookback_hours", "window_hours", "reference_days", "psi_alert", "min_values",
                          "alert_rate_ratio", "min_patient_days", "alert_on_non_essential"}),
    "nightly": frozenset({"bootstrap", "performance_bootstrap", "shadow_challengers"}),
    "retrain": frozenset({"bootstrap", "engine", "outcome", "horizon_hours", "alerts_per_100_patient_days",
                          "test_fraction", "temporal", "seed", "ablations", "promote_when_gates_pass"}),
    "housekeeping": frozenset({"scratch_days", "quarantine_days", "job_runs_days", "archive_days"}),
}
"""The options each job reads (riskcast.jobs.definitions); others are refused as typos."""

DEFAULT_LEASE_SECONDS = 300.0
DEFAULT_RECOVER_EVERY_SECONDS = 60.0
DEFAULT_MISFIRE_GRACE_SECONDS = 600
_TOP_KEYS = {"timezone", "lease_seconds", "recover_every_seconds", "jobs"}
_JOB_KEYS = {"cron", "every_seconds", "misfire_grace_seconds", "enabled", "options"}
_CRON_FIELDS = set(CronTrigger.FIELD_NAMES)
_MAX_CATCH_UP_STEPS = 100_000


class WallClockCronTrigger(CronTrigger):
    """A CronTrigger that, for a fixed-hour schedule, skips a repeated wall-clock time.

    When clocks go back, the local times in the repeated hour happen twice. A schedule
    whose hour field names hours (not "*") fires only at the first of the two; a schedule
    that runs every hour fires at both, because both are real hours.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hour = next(f for f in self.fields if f.name == "hour")
        self.every_hour = str(hour) == "*"

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        candidate = super().get_next_fire_time(previous_fire_time, now)
        while candidate is not None and not self.every_hour and is_repeated_wall_time(candidate, self.timezone):
            candidate = super().get_next_fire_time(candidate, candidate)
        return candidate

    def __getstate__(self) -> dict[str, Any]:  # pragma: no cover - never pickled by riskcast
        raise TypeError("riskcast never pickles triggers; the schedule is read from its YAML file")


def is_repeated_wall_time(moment: datetime, zone: Any) -> bool:
    """True when `moment` is the second occurrence of a local time repeated by a DST change."""
    local = moment.astimezone(zone)
    if local.fold == 0:
        return False
    return local.replace(fold=0).utcoffset() != local.utcoffset()


@dataclass(frozen=True)
class JobSchedule:
    """When one job runs and with which options."""

    name: str
    trigger: BaseTrigger
    timing: str
    misfire_grace_seconds: int
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    """The whole schedule file, checked."""

    timezone: str
    lease_seconds: float
    recover_every_seconds: float
    jobs: Mapping[str, JobSchedule]
    source: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def job(self, name: str) -> JobSchedule:
        """The schedule of `name`, or ConfigError naming the jobs there are."""
        if name not in self.jobs:
            known = ", ".join(self.jobs) or "none"
            raise ConfigError(f"{self.source}: no job {name!r} in the schedule (jobs: {known})")
        return self.jobs[name]

    @property
    def enabled_jobs(self) -> list[JobSchedule]:
        return [job for job in self.jobs.values() if job.enabled]


def _zone(name: Any, source: str) -> ZoneInfo:
    if not isinstance(name, str):
        raise ConfigError(f"{source}: timezone must be an IANA zone name such as 'Europe/London', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{source}: timezone {name!r} is not an IANA zone name (e.g. 'Europe/London')") from None


def _positive(value: Any, where: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where} must be a positive number, got {value!r}")
    if integer and int(value) != value:
        raise ConfigError(f"{where} must be a whole number of seconds, got {value!r}")
    return float(value)


def make_trigger(spec: Mapping[str, Any], zone: ZoneInfo, *, where: str) -> tuple[BaseTrigger, str]:
    """The trigger a job's `cron` or `every_seconds` describes, and the timing in words."""
    has_cron, has_every = "cron" in spec, "every_seconds" in spec
    if has_cron == has_every:
        raise ConfigError(f"{where}: give exactly one of `cron` or `every_seconds`")
    if has_every:
        seconds = _positive(spec["every_seconds"], f"{where}.every_seconds")
        return IntervalTrigger(seconds=seconds, timezone=zone), f"every {seconds:g} s"
    cron = spec["cron"]
    try:
        if isinstance(cron, str):
            fields = cron.split()
            if len(fields) != 5:
                raise ConfigError(
                    f"{where}.cron: {cron!r} has {len(fields)} fields; a crontab has 5: minute hour day month weekday"
                )
            minute, hour, day, month, day_of_week = fields
            trigger = WallClockCronTrigger(
                minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=zone
            )
            return trigger, f"cron {cron} ({zone.key})"
        if isinstance(cron, Mapping):
            unknown = set(cron) - _CRON_FIELDS
            if unknown:
                raise ConfigError(
                    f"{where}.cron: unknown field(s) {sorted(unknown)}; known: {', '.join(CronTrigger.FIELD_NAMES)}"
                )
            trigger = WallClockCronTrigger(**{k: str(v) for k, v in cron.items()}, timezone=zone)
            text = " ".join(f"{k}={v}" for k, v in cron.items())
            return trigger, f"cron {text} ({zone.key})"
    except ValueError as exc:
        raise ConfigError(f"{where}.cron: {cron!r} is not a valid cron expression ({exc})") from None
    raise ConfigError(f"{where}.cron must be a crontab string or a mapping of cron fields, got {cron!r}")


def _job(name: str, raw: Any, zone: ZoneInfo, source: str) -> JobSchedule:
    where = f"{source}: jobs.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with `cron` or `every_seconds`")
    unknown = set(raw) - _JOB_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_JOB_KEYS)}")
    trigger, timing = make_trigger(raw, zone, where=where)
    grace = int(_positive(raw.get("misfire_grace_seconds", DEFAULT_MISFIRE_GRACE_SECONDS),
                          f"{where}.misfire_grace_seconds", integer=True))
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled must be true or false, got {enabled!r}")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}.options must be a mapping, got {options!r}")
    unknown_options = set(options) - JOB_OPTIONS[name]
    if unknown_options:
        known = ", ".join(sorted(JOB_OPTIONS[name])) or "none"
        raise ConfigError(f"{where}.options: unknown option(s) {sorted(unknown_options)}; {name} takes: {known}")
    return JobSchedule(name, trigger, timing, grace, enabled, dict(options))


def parse_schedule(data: Any, *, source: str) -> Schedule:
    """A checked Schedule from the parsed YAML `data`; ConfigError names the file and key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with `timezone` and `jobs`")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    zone = _zone(data.get("timezone", "UTC"), source)
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, Mapping) or not raw_jobs:
        raise ConfigError(f"{source}: `jobs` must map job names ({', '.join(JOB_NAMES)}) to their schedules")
    unknown_jobs = [str(name) for name in raw_jobs if name not in JOB_NAMES]
    if unknown_jobs:
        raise ConfigError(f"{source}: unknown job(s) {unknown_jobs}; riskcast's jobs are {', '.join(JOB_NAMES)}")
    jobs = {name: _job(name, raw_jobs[name], zone, source) for name in JOB_NAMES if name in raw_jobs}
    return Schedule(
        timezone=zone.key,
        lease_seconds=_positive(data.get("lease_seconds", DEFAULT_LEASE_SECONDS), f"{source}: lease_seconds"),
        recover_every_seconds=_positive(
            data.get("recover_every_seconds", DEFAULT_RECOVER_EVERY_SECONDS), f"{source}: recover_every_seconds"
        ),
        jobs=jobs,
        source=source,
    )


def load_schedule(path: Path | None = None, *, home: Path | None = None, packaged: str = DEFAULT_SCHEDULE_FILE) -> Schedule:
    """The schedule from `path`; else `<home>/schedule.yaml` if it exists; else the packaged
    one named `packaged` (schemas/schedule.yaml, or schemas/demo_schedule.yaml for the demo)."""
    if path is None and home is not None and (Path(home) / HOME_SCHEDULE_FILE).is_file():
        path = Path(home) / HOME_SCHEDULE_FILE
    data, source = read_yaml_config(path, packaged=packaged, what="schedule")
    return parse_schedule(data, source=source)


def fire_times(trigger: BaseTrigger, *, after: datetime, until: datetime, limit: int = 10_000) -> list[datetime]:
    """The trigger's fire times in (after, until], in UTC, at most `limit` of them."""
    times: list[datetime] = []
    previous: datetime | None = None
    now = after + timedelta(microseconds=1)
    while len(times) < limit:
        moment = trigger.get_next_fire_time(previous, now)
        if moment is None or moment > until:
            break
        if moment > after:
            times.append(moment.astimezone(timezone.utc))
        previous, now = moment, moment
    return times


def next_fire_time(trigger: BaseTrigger, *, now: datetime) -> datetime | None:
    """The first fire time at or after `now`, in UTC (None when the trigger is finished)."""
    moment = trigger.get_next_fire_time(None, now)
    return None if moment is None else moment.astimezone(timezone.utc)


def latest_missed_fire_time(
    trigger: BaseTrigger, *, last_scheduled: datetime | None, now: datetime, grace_seconds: float
) -> datetime | None:
    """The fire time to catch up at start: the latest one missed since the last recorded run.

    Only fire times after `last_scheduled` and no older than `grace_seconds` before `now`
    count (older ones are beyond the misfire grace time); several missed runs coalesce into
    the latest. None when nothing was missed, or when there is no recorded run yet (a job
    first started has missed nothing).
    """
    if last_scheduled is None:
        return None
    start = max(last_scheduled, now - timedelta(seconds=grace_seconds))
    missed = fire_times(trigger, after=start, until=now, limit=_MAX_CATCH_UP_STEPS)
    return missed[-1] if missed else None
