"""The model registry: numbered model versions in a directory, and which one is champion.

    models_dir/
      registry.json                       state: versions, champion, event history
      .registry.lock                      held (flock) by whoever writes the registry
      v0001-20260115T1200-xgboost/        one artefact directory per version (artefact.py)
      v0002-20260122T0900-lightgbm/
      .staging-v0003-…/                   a version being written (hidden, never read)

A version becomes visible only when it is complete: `staging` writes the artefact into a
hidden folder, lets the caller add its own files there (held-out patients, the promise,
ablation models), then fsyncs every file, makes it owner-only, renames the folder into
place and only then records it in registry.json (replaced atomically). A writer killed at
any moment leaves either nothing registered or a complete version. The stage of a killed
writer is removed by the next ModelRegistry opened on the directory; the stage of a live
writer is safe, because its writer holds the registry's lock (an flock, released by the
kernel when a process dies) and stages are removed only by whoever holds that lock.

Registering does not promote: the champion changes only through `promote`, which records
who did it, why and when. Times are UTC. Writers take turns on the lock, so two trainings
finishing at once get consecutive version numbers.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from riskcast.config import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, make_private_dir
from riskcast.errors import ModelError, RegistryError
from riskcast.model.artefact import load_model, save_model
from riskcast.model.estimator import RiskModel

REGISTRY_FILE = "registry.json"
LOCK_FILE = ".registry.lock"
STAGING_PREFIX = ".staging-"
_OLD_STAGING_PREFIX = ".tmp-"  # riskcast before staging: only the booster and card were staged
LOCK_TIMEOUT_SECONDS = 600.0
"""How long a writer waits for another one (staging holds the lock only while files are written)."""
_FORMAT = "riskcast-registry"
_VERSION_PATTERN = re.compile(r"^v(\d{4,})-\d{8}T\d{4}-[a-z]+$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedVersion:
    """A version being written: its name-to-be and the hidden folder to write its files into."""

    version: str
    path: Path


class _RegistryLock:
    """The registry's write lock: a thread lock (flock does not separate threads of one process)
    around an exclusive flock on models_dir/.registry.lock. Not re-entrant: `owner` says which
    thread holds it, so a nested write is refused instead of waiting on itself forever."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.threads = threading.Lock()
        self.owner: int | None = None
        self.handle: int | None = None

    def acquire(self, *, timeout: float | None) -> bool:
        """Take the lock, waiting up to `timeout` seconds (None: do not wait); False if not taken."""
        if self.owner == threading.get_ident():
            raise RegistryError(
                f"{self.path.parent}: the registry cannot be changed while a version is being staged; "
                "promote after the staging block"
            )
        deadline = time.monotonic() + (timeout or 0.0)
        taken = self.threads.acquire(blocking=False) if timeout is None else self.threads.acquire(timeout=max(timeout, 0.001))
        if not taken:
            return False
        handle = None
        try:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(handle)
                        self.threads.release()
                        return False
                    time.sleep(0.1)
        except OSError as exc:
            if handle is not None:
                os.close(handle)
            self.threads.release()
            raise RegistryError(f"cannot lock {self.path} ({exc.strerror or exc}); the models directory needs "
                                "a file system with working file locks") from exc
        self.handle = handle
        self.owner = threading.get_ident()
        return True

    def release(self) -> None:
        assert self.handle is not None
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        os.close(self.handle)
        self.handle, self.owner = None, None
        self.threads.release()


_LOCKS: dict[Path, _RegistryLock] = {}
_LOCKS_GUARD = threading.Lock()


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _seal(folder: Path) -> None:
    """Make every file under `folder` owner-only and durable (fsync files, then their folders)."""
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(root) / name
            os.chmod(path, PRIVATE_FILE_MODE)
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        for name in dirs:
            os.chmod(Path(root) / name, PRIVATE_DIR_MODE)
        _fsync_directory(Path(root))
    os.chmod(folder, PRIVATE_DIR_MODE)


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version."""

    version: str
    engine: str
    created_at: datetime
    path: Path
    is_champion: bool
    threshold: float | None


def _utc(now: datetime, *, name: str = "now") -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise RegistryError(f"{name} must be a timezone-aware datetime (got {now!r})")
    return now.astimezone(UTC)


class ModelRegistry:
    """Numbered model versions under `models_dir` and the current champion.

    Opening a registry removes the stages that killed writers left behind (see the module
    docstring); it never touches a stage whose writer is alive.
    """

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self.remove_abandoned_stages()

    # -------------------------------------------------------------- locking

    def _lock(self) -> _RegistryLock:
        make_private_dir(self.models_dir)
        key = self.models_dir.resolve()
        with _LOCKS_GUARD:
            return _LOCKS.setdefault(key, _RegistryLock(key / LOCK_FILE))

    @contextmanager
    def _writing(self) -> Iterator[None]:
        lock = self._lock()
        if not lock.acquire(timeout=LOCK_TIMEOUT_SECONDS):
            raise RegistryError(
                f"{self.models_dir} is being written by another riskcast process; gave up after "
                f"{LOCK_TIMEOUT_SECONDS:.0f} s"
            )
        try:
            yield
        finally:
            lock.release()

    def _stages(self) -> list[Path]:
        if not self.models_dir.is_dir():
            return []
        return [
            p for p in self.models_dir.iterdir()
            if p.is_dir() and p.name.startswith((STAGING_PREFIX, _OLD_STAGING_PREFIX))
        ]

    def remove_abandoned_stages(self) -> list[str]:
        """Remove the hidden stages of writers that died (returns their names). Does nothing
        while a writer holds the lock: its stage is alive."""
        if not self._stages():
            return []
        lock = self._lock()
        if lock.owner == threading.get_ident() or not lock.acquire(timeout=None):
            return []
        try:
            removed = []
            for stage in self._stages():
                shutil.rmtree(stage, ignore_errors=True)
                removed.append(stage.name)
            if removed:
                log.warning("%s: removed %d unfinished model version(s) left by a stopped writer: %s",
                            self.models_dir, len(removed), ", ".join(removed))
            return removed
        finally:
            lock.release()

    # -------------------------------------------------------------- state file

    @property
    def _state_path(self) -> Path:
        return self.models_dir / REGISTRY_FILE

    def _read(self) -> dict[str, Any]:
        if not self._state_path.exists():
            return {"format": _FORMAT, "format_version": 1, "champion": None, "versions": [], "events": []}
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"{self._state_path}: cannot read the registry ({exc})") from exc
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise RegistryError(f"{self._state_path}: not a riskcast registry file")
        return state

    def _write(self, state: dict[str, Any]) -> None:
        """Replace registry.json atomically and durably (the caller holds the lock)."""
        make_private_dir(self.models_dir)
        handle, temp_name = tempfile.mkstemp(dir=self.models_dir, prefix=".registry-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as temp:
                json.dump(state, temp, indent=2)
                temp.write("\n")
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, self._state_path)
            _fsync_directory(self.models_dir)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def _entry(self, state: dict[str, Any], version: str) -> dict[str, Any]:
        for entry in state["versions"]:
            if entry["version"] == version:
                return entry
        known = ", ".join(e["version"] for e in state["versions"]) or "none"
        raise RegistryError(f"unknown model version {version!r} in {self.models_dir} (known: {known})")

    # ------------------------------------------------------------------ public

    def register(self, model: RiskModel, *, metadata: Mapping[str, Any], now: datetime) -> str:
        """Save a fitted model as the next version and return its name (not promoted).

        The same as `staging` with nothing added to the stage.
        """
        with self.staging(model, metadata=metadata, now=now) as stage:
            pass
        return stage.version

    @contextmanager
    def staging(self, model: RiskModel, *, metadata: Mapping[str, Any], now: datetime) -> Iterator[StagedVersion]:
        """Stage a fitted model as the next version; publish it when the block ends.

            with registry.staging(model, metadata=card, now=now) as stage:
                reports.write_held_out_patients(stage, ids)   # riskcast.pipeline.reports names the file
            registry.promote(stage.version, ...)

        The model is saved into `stage.path`, a hidden folder; the block adds any files of its
        own. On a normal exit every file is fsynced and made owner-only, the folder is renamed
        to `models_dir/<stage.version>`, and then the version is registered (not promoted).
        If the block raises, the stage is removed and nothing is registered. Names look like
        "v0001-20260115T1200-xgboost": a sequence number, the UTC registration time to the
        minute, and the engine. The registry's lock is held throughout, so keep the block to
        writing files, and promote after it.
        """
        now = _utc(now)
        if not isinstance(model, RiskModel) or not hasattr(model, "booster_"):
            raise RegistryError("register needs a fitted RiskModel")
        with self._writing():
            for stale in self._stages():  # we hold the lock: any stage here is a dead writer's
                shutil.rmtree(stale, ignore_errors=True)
            state = self._read()
            numbers = [int(m.group(1)) for e in state["versions"] if (m := _VERSION_PATTERN.match(e["version"]))]
            numbers += [int(m.group(1)) for p in self.models_dir.iterdir() if (m := _VERSION_PATTERN.match(p.name))]
            version = f"v{max(numbers, default=0) + 1:04d}-{now:%Y%m%dT%H%M}-{model.engine}"
            final = self.models_dir / version
            folder = Path(tempfile.mkdtemp(dir=self.models_dir, prefix=f"{STAGING_PREFIX}{version}-"))
            try:
                save_model(model, folder, metadata=metadata)
                yield StagedVersion(version=version, path=folder)
                _seal(folder)
                try:
                    folder.rename(final)
                except OSError as exc:
                    raise RegistryError(f"{final}: cannot register, the directory already exists ({exc})") from exc
                _fsync_directory(self.models_dir)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            state["versions"].append(
                {
                    "version": version,
                    "engine": model.engine,
                    "created_at": now.isoformat(),
                    "threshold": float(model.threshold_),
                }
            )
            state["events"].append({"event": "register", "version": version, "at": now.isoformat()})
            self._write(state)

    def versions(self) -> list[VersionInfo]:
        """Every registered version, oldest first."""
        state = self._read()
        return [
            VersionInfo(
                version=e["version"],
                engine=e["engine"],
                created_at=datetime.fromisoformat(e["created_at"]),
                path=self.models_dir / e["version"],
                is_champion=e["version"] == state["champion"],
                threshold=e.get("threshold"),
            )
            for e in state["versions"]
        ]

    def champion(self) -> str | None:
        """The champion's version name, or None before the first promotion."""
        return self._read()["champion"]

    def promote(self, version: str, *, by: str, reason: str, now: datetime) -> None:
        """Make `version` the champion; who, why and when go into the event history."""
        now = _utc(now)
        if not by or not reason:
            raise RegistryError("promote needs who is promoting (`by`) and why (`reason`)")
        with self._writing():
            state = self._read()
            self._entry(state, version)
            if not (self.models_dir / version).is_dir():
                raise RegistryError(f"{self.models_dir / version}: registered but the directory is missing")
            previous = state["champion"]
            state["champion"] = version
            state["events"].append(
                {"event": "promote", "version": version, "previous": previous, "by": by, "reason": reason,
                 "at": now.isoformat()}
            )
            self._write(state)

    def events(self) -> list[dict[str, Any]]:
        """The registry's history (register and promote events), oldest first."""
        return list(self._read()["events"])

    def path_of(self, version: str) -> Path:
        """The artefact directory of a registered version."""
        self._entry(self._read(), version)
        return self.models_dir / version

    def read_json(self, version: str, name: str) -> Any | None:
        """The JSON file `name` of a registered version, or None when the version has none.

        RegistryError when it is there but empty or not JSON: a version left incomplete by a
        crash of an older riskcast (versions are published whole since staging).
        """
        path = self.path_of(version) / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RegistryError(
                f"model version {version!r} is incomplete: {name} is not JSON ({type(exc).__name__} in {path}); "
                "it was probably cut short by a crash: train a new model with `riskcast train`"
            ) from None

    def load(self, version: str | None = None, *, device: str | None = None) -> RiskModel:
        """Load `version`, or the champion when None."""
        if version is None:
            version = self.champion()
            if version is None:
                raise RegistryError(f"no champion model yet: run `riskcast train` first (models directory {self.models_dir})")
        path = self.path_of(version)
        try:
            return load_model(path, device=device)
        except ModelError as exc:
            raise RegistryError(f"model version {version!r} cannot be loaded: {exc}") from exc
