"""Where XGBoost keeps the pages of a matrix trained from external memory.

At hospital scale the pages of one fit are tens of GiB (100,000 encounters: 17 GiB for the
training rows and 5.6 GiB for the early-stopping rows). XGBoost deletes them when the
matrix is freed, but a training killed half-way (kill -9, out of memory, a lost machine)
cannot, and they would stay beside the feature store for good. So each fit pages into a
folder of its own, named for its process, removed when the fit ends; the next fit removes
the folders of processes that are no longer running.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from riskcast.errors import ModelError
from riskcast.processes import process_exists

PAGE_CACHE_PREFIX = "riskcast-xgb-"
_OWNED = re.compile(rf"^{re.escape(PAGE_CACHE_PREFIX)}(\d+)-")


def remove_orphaned_page_caches(folder: Path) -> list[Path]:
    """Remove the page folders under `folder` whose process has ended; the ones removed."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _OWNED.match(path.name)
        if match and path.is_dir() and not process_exists(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def page_cache(folder: str | None) -> tempfile.TemporaryDirectory[str]:
    """A new page folder for this process under `folder` (the system's temporary folder when
    None), after removing what ended processes left there. Use it as a context manager or
    call its cleanup(): the pages go with it."""
    parent = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    remove_orphaned_page_caches(parent)
    try:
        return tempfile.TemporaryDirectory(prefix=f"{PAGE_CACHE_PREFIX}{os.getpid()}-", dir=parent)
    except OSError as exc:
        raise ModelError(f"cannot make a folder for XGBoost's pages under {parent}: {exc.strerror or exc}") from exc
