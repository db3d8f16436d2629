"""One job never runs twice at once: a lease per job in the store's job_locks table.

A holder takes the lease with one atomic statement (INSERT ... ON CONFLICT (job) DO UPDATE
... WHERE the old lease has expired), on SQLite inside BEGIN IMMEDIATE and on PostgreSQL as
an ordinary row-locking upsert, so two scheduler processes on one database cannot both get
it. A running job renews its lease every third of `lease_seconds` (`JobLease`'s heartbeat
thread) and deletes it when done.

A holder is named "host:pid:token" (token: random, one per process). A process killed
with SIGKILL leaves its lease behind; it is taken over when it expires, or at once by a
process on the same host that sees the holder's pid is gone (or is its own pid with
another token: a restarted container where the scheduler is always pid 1).

Times come from the caller's clock (UTC-aware); hosts sharing a database should keep their
clocks in sync (NTP), as lease expiry compares one host's clock with another's.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from riskcast.clock import Clock, wall_clock
from riskcast.errors import StoreError
from riskcast.processes import process_exists
from riskcast.store import write_transaction
from riskcast.store.tables import job_locks

log = logging.getLogger(__name__)



_TOKENS: dict[int, str] = {}


def this_process_holder() -> str:
    """This process's holder name, "host:pid:token"; the same for every call in one process.

    Keyed by pid, so a forked child gets a name of its own.
    """
    pid = os.getpid()
    token = _TOKENS.setdefault(pid, uuid.uuid4().hex[:12])
    return f"{socket.gethostname()}:{pid}:{token}"


def holder_is_gone(holder: str, *, me: str | None = None) -> bool:
    """True when `holder` is a process on this host that no longer runs.

    A holder on another host is never "gone" (only its lease's expiry can tell); nor is a
    holder string that is not "host:pid:token".
    """
    me = me or this_process_holder()
    try:
        host, pid_text, token = holder.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    my_host, my_pid_text, my_token = me.rsplit(":", 2)
    if host != my_host:
        return False
    if pid == int(my_pid_text):
        return token != my_token
    return not process_exists(pid)


@dataclass(frozen=True)
class LockInfo:
    """Who holds a job's lease and until when (UTC)."""

    job: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


def _upsert(engine: Engine):  # noqa: ANN202 - a dialect-specific Insert
    if engine.dialect.name == "postgresql":
        return postgresql.insert(job_locks)
    if engine.dialect.name == "sqlite":
        return sqlite.insert(job_locks)
    raise StoreError(f"job_locks: the store supports SQLite and PostgreSQL, not {engine.dialect.name!r}")


def lock_info(engine: Engine, job: str) -> LockInfo | None:
    """The current lease row of `job`, expired or not; None when nobody holds it."""
    with engine.connect() as connection:
        row = connection.execute(select(job_locks).where(job_locks.c.job == job)).one_or_none()
    return None if row is None else LockInfo(row.job, row.holder, row.acquired_at, row.expires_at)


def try_acquire(engine: Engine, job: str, *, holder: str, lease_seconds: float, now: datetime) -> bool:
    """Take `job`'s lease for `lease_seconds` if it is free, expired, or its holder is gone.

    Not re-entrant: a holder that already has the lease (another thread of the same
    process) does not get it again. True when `holder` now has it.
    """
    expires = now + timedelta(seconds=lease_seconds)
    statement = _upsert(engine).values(job=job, holder=holder, acquired_at=now, expires_at=expires)
    statement = statement.on_conflict_do_update(
        index_elements=[job_locks.c.job],
        set_={"holder": statement.excluded.holder, "acquired_at": statement.excluded.acquired_at,
              "expires_at": statement.excluded.expires_at},
        where=job_locks.c.expires_at <= now,
    ).returning(job_locks.c.holder)
    with write_transaction(engine) as connection:
        if connection.execute(statement).first() is not None:
            return True
        current = connection.execute(select(job_locks.c.holder).where(job_locks.c.job == job)).scalar_one_or_none()
        if current is None or current == holder or not holder_is_gone(current, me=holder):
            return False
        taken = connection.execute(
            update(job_locks)
            .where(job_locks.c.job == job, job_locks.c.holder == current)
            .values(holder=holder, acquired_at=now, expires_at=expires)
        )
        if taken.rowcount == 1:
            log.warning("job %s: took over the lock of %s, a process on this host that is gone", job, current)
            return True
        return False


def renew(engine: Engine, job: str, *, holder: str, lease_seconds: float, now: datetime) -> bool:
    """Extend `holder`'s lease on `job`; False when it no longer holds it."""
    with write_transaction(engine) as connection:
        result = connection.execute(
            update(job_locks)
            .where(job_locks.c.job == job, job_locks.c.holder == holder)
            .values(expires_at=now + timedelta(seconds=lease_seconds))
        )
    return result.rowcount == 1


def release(engine: Engine, job: str, *, holder: str) -> None:
    """Give up `holder`'s lease on `job` (nothing happens when someone else holds it)."""
    with write_transaction(engine) as connection:
        connection.execute(delete(job_locks).where(job_locks.c.job == job, job_locks.c.holder == holder))


def is_held(engine: Engine, job: str, *, now: datetime, me: str | None = None) -> bool:
    """True while someone alive holds `job`'s lease (unexpired, holder not gone)."""
    info = lock_info(engine, job)
    return info is not None and info.expires_at > now and not holder_is_gone(info.holder, me=me)


class JobLease:
    """A lease on one job for the length of a `with` block, renewed by a heartbeat thread.

        lease = JobLease(engine, "score", lease_seconds=300)
        if lease.acquire(wait_seconds=60):
            with lease:
                ...

    `lost` becomes true when a renewal found the lease taken by someone else (this process
    stalled for longer than the lease); the run goes on, and the caller records it.
    """

    def __init__(
        self,
        engine: Engine,
        job: str,
        *,
        lease_seconds: float,
        holder: str | None = None,
        clock: Clock = wall_clock,
    ) -> None:
        self.engine = engine
        self.job = job
        self.lease_seconds = lease_seconds
        self.holder = holder or this_process_holder()
        self.clock = clock
        self.lost = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._held = False

    def acquire(self, *, wait_seconds: float = 0.0, poll_seconds: float = 1.0) -> bool:
        """Take the lease, waiting up to `wait_seconds` for its holder to finish; True if taken."""
        deadline = self.clock() + timedelta(seconds=wait_seconds)
        while True:
            if try_acquire(self.engine, self.job, holder=self.holder, lease_seconds=self.lease_seconds, now=self.clock()):
                self._held = True
                self._start_heartbeat()
                return True
            if self.clock() >= deadline or self._stop.wait(poll_seconds):
                return False

    def _start_heartbeat(self) -> None:
        interval = self.lease_seconds / 3

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    if not renew(self.engine, self.job, holder=self.holder, lease_seconds=self.lease_seconds,
                                 now=self.clock()):
                        self.lost = True
                        log.error("job %s: lost its lock (another process took it after it expired)", self.job)
                        return
                except Exception as exc:  # noqa: BLE001 - keep beating; the database may be back soon
                    log.warning("job %s: could not renew its lock: %s", self.job, type(exc).__name__)

        self._heartbeat = threading.Thread(target=beat, name=f"lease-{self.job}", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease (if this holder still has it)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self._held:
            release(self.engine, self.job, holder=self.holder)
            self._held = False

    def __enter__(self) -> JobLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
