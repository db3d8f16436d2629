"""Files under the riskcast home are the owner's only: folders 0700, files 0600.

The store holds password hashes and patient identifiers, the lake and reports hold patient
data, riskcast.toml may hold a database password. Every test here runs under the usual
permissive umask (022), under which a careless writer makes files world-readable.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from riskcast.cli import cli
from riskcast.config import load_settings
from riskcast.errors import ConfigError
from riskcast.lake import Lake
from riskcast.pipeline.ingest import ingest_paths
from riskcast.store import open_store
from riskcast.synth import generate_cohort, write_cohort

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def permissive_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def open_to_others(root: Path) -> list[str]:
    """Every path under `root` (and root itself) that group or others may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink() and mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


def test_the_lake_writes_owner_only_folders_and_files(tmp_path: Path, permissive_umask) -> None:
    write_cohort(generate_cohort(60, seed=1), tmp_path / "cohort")
    home = tmp_path / "home"
    ingest_paths([tmp_path / "cohort"], lake=Lake(home / "lake"), now=NOW)
    assert any((home / "lake").rglob("*.parquet"))
    assert open_to_others(home) == []


def test_a_new_sqlite_store_is_owner_only(tmp_path: Path, permissive_umask) -> None:
    home = tmp_path / "home"
    engine = open_store(f"sqlite:///{home / 'riskcast.db'}")
    engine.dispose()
    assert (home / "riskcast.db").is_file()
    assert open_to_others(home) == []


def test_reports_of_an_audit_are_owner_only(tmp_path: Path, permissive_umask) -> None:
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.reports import ReportStore, write_private_text

    html, _ = ReportStore(ModelRegistry(tmp_path / "home" / "models"), tmp_path / "home" / "reports").audit_paths("v0001", 1)
    write_private_text(html, "<p>report</p>")  # as ReportStore.write_audit writes both of an audit's reports
    assert open_to_others(tmp_path / "home") == []


def test_a_riskcast_toml_readable_by_others_is_refused_as_the_secret_key_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    toml = home / "riskcast.toml"
    toml.write_text('db_url = "postgresql://riskcast:secret@db/riskcast"\n')
    os.chmod(toml, 0o644)
    with pytest.raises(ConfigError, match=rf"{toml} is readable by other users \(mode 644\); .*run `chmod 600 {toml}`"):
        load_settings(env={"RISKCAST_HOME": str(home)})
    os.chmod(toml, 0o600)
    assert load_settings(env={"RISKCAST_HOME": str(home)}).db_url.startswith("postgresql://")


def test_the_command_warns_at_start_when_the_home_is_open_to_others(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    result = CliRunner().invoke(cli, ["--home", str(home), "models", "list", "--json"], obj={})
    assert result.exit_code == 0
    assert f"warning: the riskcast home {home} is open to other users (mode 755); run `chmod 700 {home}`" in result.stderr
    assert json.loads(result.stdout) == {"versions": []}
    os.chmod(home, 0o700)
    assert "warning" not in CliRunner().invoke(cli, ["--home", str(home), "models", "list"], obj={}).stderr


def _riskcast(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real command in a process whose umask is the usual permissive 022."""
    result = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o022); sys.argv[0] = 'riskcast'; from riskcast.cli import main; main()",
         "--home", str(home), "--json", *args],
        capture_output=True, text=True, timeout=600, input=stdin,
    )
    assert result.returncode == 0, f"riskcast {' '.join(args)}: {result.stderr}"
    return result


@pytest.mark.slow
def test_everything_the_command_writes_under_the_home_is_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _riskcast(home, "synth", "--encounters", "200", "--seed", "2", "--out", str(home / "cohort"))
    _riskcast(home, "ingest", str(home / "cohort"))
    _riskcast(home, "train", "--no-ablations", "--test-fraction", "0.3")
    _riskcast(home, "score", "--at", "2026-01-15T12:00Z")
    _riskcast(home, "audit", "--by", "sex")
    _riskcast(home, "evaluate", "--data", str(home / "cohort"), "--bootstrap", "0", "--out", str(home / "reports" / "other.json"))
    _riskcast(home, "predict", "--data", str(home / "cohort"), "--out", str(home / "predictions.parquet"))
    _riskcast(home, "demo-feed", "--patients", "2")
    _riskcast(home, "users", "add", "ada", "--role", "admin", "--password-stdin", stdin="Quartz-Heron-Lantern-71!\n")
    for folder in ("lake", "models", "reports", "scratch", "inbox"):
        assert (home / folder).is_dir(), folder
    assert (home / "riskcast.db").is_file()
    assert open_to_others(home) == []
