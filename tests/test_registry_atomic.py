"""A model version becomes visible only when every file of it is written, whatever is killed when.

A version is staged in a hidden folder of the models directory, fsynced, renamed into place,
and only then registered; a stage left by a killed writer is removed by the next riskcast
that opens the registry, and one still being written by a live process is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskcast.errors import RegistryError
from riskcast.model import ModelRegistry, RiskModel, save_model
from riskcast.pipeline.audit import heldout_predictions
from riskcast.pipeline.external import model_outcome
from riskcast.lake import Lake
from waiting import wait_until

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CARD = {"intended_use": "test", "data": "synthetic", "metrics": {}, "limits": []}


def _hidden(models_dir: Path) -> list[str]:
    """Entries of the models directory that are neither a version, the state file nor its lock."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.name not in ("registry.json", ".registry.lock") and not p.name.startswith("v"))


@pytest.fixture(scope="module")
def fitted() -> RiskModel:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"])
    y = (rng.random(600) < 1 / (1 + np.exp(-2 * X["a"].to_numpy() + 1.5))).astype(int)
    return RiskModel(device="cpu", n_jobs=1).fit(X, y, groups=np.repeat(np.arange(120), 5))


def test_a_staged_version_is_invisible_until_its_block_ends(fitted: RiskModel, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    with registry.staging(fitted, metadata=CARD, now=NOW) as stage:
        (stage.path / "heldout_patients.json").write_text(json.dumps(["p1", "p2"]))
        assert stage.path.name.startswith(".") and stage.path.parent == registry.models_dir
        assert registry.versions() == [] and not (registry.models_dir / stage.version).exists()
        assert ModelRegistry(tmp_path / "models").versions() == []  # another reader sees nothing either
    assert [v.version for v in registry.versions()] == [stage.version]
    assert json.loads((registry.path_of(stage.version) / "heldout_patients.json").read_text()) == ["p1", "p2"]
    assert _hidden(registry.models_dir) == []


def test_an_error_while_staging_leaves_no_version_and_no_folder(fitted: RiskModel, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(RuntimeError, match="disk full"):
        with registry.staging(fitted, metadata=CARD, now=NOW) as stage:
            (stage.path / "promise.json").write_text("{")
            raise RuntimeError("disk full")
    assert registry.versions() == [] and _hidden(registry.models_dir) == []
    assert not any(p.name.startswith("v") for p in registry.models_dir.iterdir())


def test_register_is_staging_with_nothing_added(fitted: RiskModel, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = registry.register(fitted, metadata=CARD, now=NOW)
    assert {p.name for p in registry.path_of(version).iterdir()} >= {"config.json", "model_card.json", "features.json"}
    assert _hidden(registry.models_dir) == []


def test_a_writer_killed_while_staging_registers_nothing_and_its_stage_goes_at_the_next_start(
    fitted: RiskModel, tmp_path: Path
) -> None:
    saved = save_model(fitted, tmp_path / "saved", metadata=CARD)
    models = tmp_path / "models"
    script = textwrap.dedent(f"""
        import os, signal
        from datetime import datetime, UTC
        from riskcast.model import ModelRegistry, load_model
        registry = ModelRegistry({str(models)!r})
        with registry.staging(load_model({str(saved)!r}), metadata={{}}, now=datetime(2026, 1, 15, tzinfo=UTC)) as stage:
            (stage.path / "heldout_patients.json").write_text("")  # cut short, as a crash leaves it
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert len(_hidden(models)) == 1  # the dead writer's stage is still there ...
    registry = ModelRegistry(models)  # ... until the next riskcast opens the registry
    assert _hidden(models) == []
    assert registry.versions() == [] and registry.champion() is None


def test_a_live_writers_stage_is_not_removed_by_another_reader(fitted: RiskModel, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    with registry.staging(fitted, metadata=CARD, now=NOW) as stage:
        ModelRegistry(tmp_path / "models").versions()
        assert stage.path.is_dir()
    assert registry.versions()[0].version == stage.version


def test_promoting_inside_a_staging_block_is_refused_not_a_deadlock(fitted: RiskModel, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first = registry.register(fitted, metadata=CARD, now=NOW)
    with pytest.raises(RegistryError, match="while a version is being staged"):
        with registry.staging(fitted, metadata=CARD, now=NOW):
            registry.promote(first, by="test", reason="inside", now=NOW)
    assert registry.champion() is None and [v.version for v in registry.versions()] == [first]


def test_an_incomplete_version_left_by_an_older_riskcast_is_a_clear_error(fitted: RiskModel, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = registry.register(fitted, metadata=CARD, now=NOW)
    registry.promote(version, by="admin", reason="override", now=NOW)
    (registry.path_of(version) / "heldout_patients.json").write_text("")  # as the kill -9 of issue 12 left it
    with pytest.raises(RegistryError, match=rf"model version {version!r} is incomplete: heldout_patients.json is not JSON"):
        heldout_predictions(Lake(tmp_path / "lake"), registry, version)
    (registry.path_of(version) / "model_card.json").write_text('{"model": ')
    with pytest.raises(RegistryError, match=rf"model version {version!r} is incomplete: model_card.json is not JSON"):
        model_outcome(registry, version)


# ------------------------------------------------------------------- the real command, killed


def _riskcast(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "riskcast", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_kill_9_of_riskcast_train_while_it_stages_leaves_no_version_and_no_crash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _riskcast(home, "synth", "--encounters", "200", "--seed", "3", "--out", str(tmp_path / "cohort")).returncode == 0
    assert _riskcast(home, "ingest", str(tmp_path / "cohort")).returncode == 0
    models = home / "models"
    train = subprocess.Popen([sys.executable, "-m", "riskcast", "--home", str(home), "train", "--test-fraction", "0.3"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def staged() -> bool:
            assert train.poll() is None, f"train ended before staging: {train.stderr.read()}"
            return bool(_hidden(models))

        wait_until(staged, timeout=300, what="train to stage a version", poll=0.001)  # kill the moment it appears
        os.kill(train.pid, signal.SIGKILL)
    finally:
        train.kill()
        train.wait()
    assert train.returncode == -signal.SIGKILL

    listed = _riskcast(home, "models", "list", "--json")  # the next start
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"versions": []}
    assert _hidden(models) == [] and not any(p.name.startswith("v") for p in models.iterdir())
    for command in (["evaluate"], ["audit"], ["score", "--at", "2026-01-15T12:00Z"]):
        result = _riskcast(home, *command)
        assert result.returncode == 1, (command, result.stderr)
        assert "JSONDecodeError" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert "no champion model yet" in result.stderr, result.stderr


def test_a_published_version_is_owner_only_under_a_permissive_umask(fitted: RiskModel, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        registry = ModelRegistry(tmp_path / "home" / "models")
        with registry.staging(fitted, metadata=CARD, now=NOW) as stage:
            (stage.path / "ablations").mkdir()
            (stage.path / "ablations" / "note.json").write_text("{}")
    finally:
        os.umask(previous)
    modes = {p.relative_to(tmp_path): oct(p.stat().st_mode & 0o777) for p in [tmp_path / "home", *(tmp_path / "home").rglob("*")]}
    assert {path: mode for path, mode in modes.items() if mode not in ("0o700", "0o600")} == {}


def test_two_writers_at_once_take_turns_and_get_consecutive_versions(fitted: RiskModel, tmp_path: Path) -> None:
    import threading

    registry = ModelRegistry(tmp_path / "models")
    names: list[str] = []
    writers = [threading.Thread(target=lambda: names.append(registry.register(fitted, metadata=CARD, now=NOW))) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert sorted(n[:5] for n in names) == ["v0001", "v0002"]
    assert sorted(v.version for v in registry.versions()) == sorted(names)
