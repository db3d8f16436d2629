"""What the benchmarks share: the machine they ran on, and how they time and measure.

Imported by the scripts in bench/ (run as `python bench/NAME.py`, so this folder is on the path).
"""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _first_value(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine(modules: Sequence[str]) -> dict[str, Any]:
    """CPU model (from /proc/cpuinfo), cores, RAM, load, platform and the versions of `modules`
    (distribution names, e.g. "dash_ag_grid" is looked up as dash-ag-grid; None when absent)."""
    memory = _first_value("/proc/meminfo", "MemTotal")
    versions: dict[str, Any] = {"python": platform.python_version()}
    for module in modules:
        try:
            versions[module] = importlib.metadata.version(module.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[module] = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _first_value("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "ram_gib": round(int(memory.split()[0]) / 1024**2, 1) if memory else None,
        "load_average_at_start": load,
        "platform": platform.platform(),
        "versions": versions,
    }


def print_machine(env: dict[str, Any]) -> None:
    print(f"Machine: {env['cpu']}, {env['cores']} cores, {env['ram_gib']} GiB RAM; "
          f"load average at start {env['load_average_at_start']}")  # fmt: skip
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))


def timed(function: Callable[[], T], *, repeats: int) -> tuple[dict[str, Any], T]:
    """Median wall and CPU seconds of `repeats` calls, every call's wall seconds, the last result."""
    walls: list[float] = []
    cpus: list[float] = []
    result: T
    for _ in range(repeats):
        gc.collect()
        cpu_started = time.process_time()
        started = time.perf_counter()
        result = function()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    return {"seconds": statistics.median(walls), "cpu_seconds": statistics.median(cpus), "runs": walls}, result


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (a high-water mark), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
