"""Clocks: the wall clock, and a shifted clock for data whose "now" is not today.

The synthetic demo cohort ends at 2026-01-15 12:00 UTC. To watch it live, the dashboard
and the scheduler both run on a ShiftedClock that showed that time when the demo started
and runs at real speed since. The clock is plain data (`present`, `started`), so another
process (`riskcast demo-feed`, a second scheduler) can read the same clock from a file
(`save` / `load`) and agree with it to the microsecond.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from riskcast.errors import ConfigError
from riskcast.processes import process_exists

Clock = Callable[[], datetime]
"""A function giving the current time, UTC-aware."""


def wall_clock() -> datetime:
    """The current time, UTC-aware: the one wall clock riskcast reads.

    Only the edges call it (the CLI, the scheduler, the dashboard, the feature store's
    manifest stamps); everything deeper takes `now` as an argument."""
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

    def save(self, path: Path, *, running: bool = True) -> None:
        """Write the clock to `path` (JSON) for other processes to share; `running=False` when
        its user stops, recording the time it stopped at (see resume_clock)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"present": self.present.isoformat(), "started": self.started.isoformat(), "running": running,
                "host": socket.gethostname(), "pid": os.getpid(),
                "stopped_at": None if running else self().isoformat()}
        scratch = path.with_name(f".{path.name}.tmp")
        scratch.write_text(json.dumps(data))
        scratch.replace(path)

    @classmethod
    def load(cls, path: Path) -> ShiftedClock:
        """The clock `save` wrote; ConfigError naming the file when it is not one."""
        return read_clock_file(path).clock


@dataclass(frozen=True)
class ClockFile:
    """What a saved clock file says: the clock, whether its user is running, and when it stopped."""

    clock: ShiftedClock
    running: bool
    pid: int | None
    stopped_at: datetime | None
    host: str | None = None

    def current(self) -> datetime:
        """The clock's time now while its user runs; the time it stopped at otherwise."""
        return self.clock() if self.running or self.stopped_at is None else self.stopped_at

    def is_live(self) -> bool:
        """Whether the process that saved it says it runs and still exists on this host."""
        if not self.running or self.pid is None or self.host != socket.gethostname():
            return False
        return process_exists(self.pid)


def read_clock_file(path: Path) -> ClockFile:
    """The clock file at `path`; ConfigError naming the file when it is missing or not one."""
    if not path.is_file():
        raise ConfigError(f"{path}: no clock file here (`riskcast demo` writes it when it serves the dashboard)")
    try:
        data = json.loads(path.read_text())
        clock = ShiftedClock(datetime.fromisoformat(data["present"]), datetime.fromisoformat(data["started"]))
        stopped = data.get("stopped_at")
        return ClockFile(clock, bool(data.get("running", True)), data.get("pid"),
                         datetime.fromisoformat(stopped) if stopped else None, data.get("host"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a riskcast clock file ({type(exc).__name__}: {exc})") from exc


def resume_clock(path: Path, *, start: datetime) -> ShiftedClock:
    """A clock that carries on from the one saved at `path`: from where it stopped, or (its
    user died without saying so) from where it has run to since; never earlier than `start`.
    Without a readable file, a clock showing `start` now. So times a demo writes into its store
    keep increasing across restarts, and alerts escalate and expire as they should."""
    try:
        saved = read_clock_file(path)
    except ConfigError:
        return shifted_clock(start)
    return shifted_clock(max(start, saved.current()))


def shifted_clock(present: datetime) -> ShiftedClock:
    """A clock showing `present` now and running at real speed from here."""
    return ShiftedClock(present.astimezone(UTC), wall_clock())


def offset_of(clock: Clock) -> timedelta:
    """How far `clock` runs ahead of the wall clock: a ShiftedClock's offset, else none (a
    clock that is not shifted is taken to be the wall clock)."""
    return clock.offset if isinstance(clock, ShiftedClock) else timedelta(0)
