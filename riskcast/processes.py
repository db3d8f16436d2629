"""Whether a process on this host still runs: the one answer behind every stale-lock,
stale-clock, dead-run and orphaned-page check."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """Whether a process with this id exists on this host (another user's counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
