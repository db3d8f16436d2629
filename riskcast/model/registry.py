"""The model registry: numbered model versions in a directory, and which one is champion.

    models_dir/
      registry.json                       state: versions, champion, event history
      v0001-20260115T1200-xgboost/        one artefact directory per version (artefact.py)
      v0002-20260122T0900-lightgbm/

A version is written to a hidden temporary directory and renamed into place, and
registry.json is replaced atomically, so a crash never leaves a half-written version
registered or a torn registry file. Registering does not promote: the champion changes
only through `promote`, which records who did it, why and when. Times are UTC.

The registry assumes one writer at a time (the training job); a second writer that
races for the same version number gets a RegistryError rather than a silent overwrite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from riskcast.errors import ModelError, RegistryError
from riskcast.model.artefact import load_model, save_model
from riskcast.model.estimator import RiskModel

REGISTRY_FILE = "registry.json"
_FORMAT = "riskcast-registry"
_VERSION_PATTERN = re.compile(r"^v(\d{4,})-\d{8}T\d{4}-[a-z]+$")


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
    """Numbered model versions under `models_dir` and the current champion."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)

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
        self.models_dir.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=self.models_dir, prefix=".registry-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as temp:
                json.dump(state, temp, indent=2)
                temp.write("\n")
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, self._state_path)
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

        Names look like "v0001-20260115T1200-xgboost": a sequence number, the UTC
        registration time to the minute, and the engine.
        """
        now = _utc(now)
        if not isinstance(model, RiskModel) or not hasattr(model, "booster_"):
            raise RegistryError("register needs a fitted RiskModel")
        state = self._read()
        numbers = [int(m.group(1)) for e in state["versions"] if (m := _VERSION_PATTERN.match(e["version"]))]
        if self.models_dir.is_dir():
            numbers += [int(m.group(1)) for p in self.models_dir.iterdir() if (m := _VERSION_PATTERN.match(p.name))]
        version = f"v{max(numbers, default=0) + 1:04d}-{now:%Y%m%dT%H%M}-{model.engine}"
        final = self.models_dir / version
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.models_dir, prefix=f".tmp-{version}-"))
        try:
            save_model(model, staging, metadata=metadata)
            try:
                staging.rename(final)
            except OSError as exc:
                raise RegistryError(f"{final}: cannot register, the directory already exists ({exc})") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
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
        return version

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
        state = self._read()
        self._entry(state, version)
        if not (self.models_dir / version).is_dir():
            raise RegistryError(f"{self.models_dir / version}: registered but the directory is missing")
        previous = state["champion"]
        state["champion"] = version
        state["events"].append(
            {"event": "promote", "version": version, "previous": previous, "by": by, "reason": reason, "at": now.isoformat()}
        )
        self._write(state)

    def events(self) -> list[dict[str, Any]]:
        """The registry's history (register and promote events), oldest first."""
        return list(self._read()["events"])

    def path_of(self, version: str) -> Path:
        """The artefact directory of a registered version."""
        self._entry(self._read(), version)
        return self.models_dir / version

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
