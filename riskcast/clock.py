"""Clocks: the wall clock, and a shifted clock for data whose "now" is not today.

The synthetic demo cohort ends at 2026-01-15 12:00 UTC. To watch it live, the dashboard
and the scheduler both run on a ShiftedClock that showed that time when the demo started
and runs at real speed since. The clock is plain data (`present`, `started`), so another
process (`riskcast demo-feed`, a second scheduler) can read the same clock from a file
(`save` / `load`) and agree with it to the microsecond.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from riskcast.errors import ConfigError

Clock = Callable[[], datetime]
"""A function giving the current time, UTC-aware."""


def wall_clock() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ShiftedClock:
    """A clock that showed `present` at wall time `started` and runs at real speed since."""

    present: datetime
    started: datetime

    def __post_init__(self) -> None:
        for name in ("present", "started"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"ShiftedClock.{name} must be timezone-aware")

    def __call__(self) -> datetime:
        return self.present + (wall_clock() - self.started)

    @property
    def offset(self) -> timedelta:
        """Shifted time minus wall time."""
        return self.present - self.started

    def save(self, path: Path) -> None:
        """Write the clock to `path` (JSON) for other processes to share."""
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.tmp")
        scratch.write_text(json.dumps({"present": self.present.isoformat(), "started": self.started.isoformat()}))
        scratch.replace(path)

    @classmethod
    def load(cls, path: Path) -> ShiftedClock:
        """The clock `save` wrote; ConfigError naming the file when it is not one."""
        try:
            data = json.loads(path.read_text())
            return cls(datetime.fromisoformat(data["present"]), datetime.fromisoformat(data["started"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a riskcast clock file ({type(exc).__name__}: {exc})") from exc


def shifted_clock(present: datetime) -> ShiftedClock:
    """A clock showing `present` now and running at real speed from here."""
    return ShiftedClock(present.astimezone(UTC), wall_clock())


def offset_of(clock: Clock) -> timedelta:
    """How far `clock` runs ahead of the wall clock: a ShiftedClock's offset, else none (a
    clock that is not shifted is taken to be the wall clock)."""
    return clock.offset if isinstance(clock, ShiftedClock) else timedelta(0)
