"""An exclusive, re-entrant lock on a file, across processes and threads.

Writers of the lake and of the feature store hold one while they write, so two writers (the
scheduler and a command line, say) take turns. It is an flock on a lock file beside what it
guards: one host, or a file system with working file locks. Within a process it is
re-entrant (a flow that holds it may call another that takes it again). The lock file and
its folder are created owner-only, like everything under the riskcast home.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from riskcast.config import PRIVATE_FILE_MODE, make_private_dir


class _FileLock:
    """One lock file's lock in this process: a re-entrant thread lock around an exclusive
    flock on the file (held while any thread of this process holds the lock)."""

    def __init__(self, path: Path, subject: str, error: type[Exception]) -> None:
        self.path = path
        self.subject = subject
        self.error = error
        self.threads = threading.RLock()
        self.depth = 0
        self.handle: TextIO | None = None

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self.threads.acquire(timeout=max(timeout, 0.0)):
            raise self.error(f"{self.subject} is being written by another thread of this process; "
                             f"gave up after {timeout:.0f} s")
        if self.depth == 0:
            try:
                self.handle = self._flock(deadline, timeout)
            except BaseException:
                self.threads.release()
                raise
        self.depth += 1

    def _flock(self, deadline: float, timeout: float) -> TextIO:
        make_private_dir(self.path.parent)
        handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE), "a+")
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise self.error(f"cannot lock {self.path} for writing ({exc.strerror or exc}); {self.subject} "
                                     "needs a file system with working file locks") from exc
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise self.error(
                        f"{self.subject} is being written by another process ({holder}); gave up after "
                        f"{timeout:.0f} s. If no riskcast process is running, the lock is free: try again"
                    )
                time.sleep(0.2)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
        except BaseException:
            handle.close()
            raise
        return handle

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0 and self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        self.threads.release()


_LOCKS: dict[Path, _FileLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def exclusive_lock(path: Path, *, subject: str, error: type[Exception], timeout: float) -> Iterator[None]:
    """Hold the exclusive lock on `path`, waiting up to `timeout` seconds for another holder;
    raises `error` (naming `subject`, e.g. "the lake at /data/lake") when it cannot."""
    key = Path(path).resolve()
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, _FileLock(key, subject, error))
    lock.acquire(timeout)
    try:
        yield
    finally:
        lock.release()
