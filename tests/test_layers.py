"""`make lint` checks every module, jobs/ and dashboards/ included: a reach-back planted in a
copy of the checkout breaks it, and the untouched copy passes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COPIED_FILES = ("Makefile", "pyproject.toml")
COPIED_FOLDERS = ("riskcast", "jobs", "dashboards", "schemas", "tools")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The parts of this checkout that `make lint` reads, copied."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in COPIED_FILES:
        shutil.copy2(REPO / name, copy / name)
    for name in COPIED_FOLDERS:
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return copy


def make_lint(checkout: Path) -> subprocess.CompletedProcess[str]:
    """`make lint` in `checkout`, with this interpreter's environment in place of the checkout's .venv."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        [make, "-s", "-o", "install", "lint", f"BIN={Path(sys.executable).parent}"],
        cwd=checkout, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def plant(checkout: Path, module: str, line: str) -> None:
    path = checkout / module
    path.write_text(path.read_text() + f"\n{line}  # planted by test_layers\n")


def test_make_lint_passes_on_an_untouched_copy_and_analyses_every_module(checkout: Path) -> None:
    modules = [p for folder in ("riskcast", "jobs", "dashboards", "schemas") for p in (checkout / folder).rglob("*.py")]
    result = make_lint(checkout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Analyzed (\d+) files", result.stdout).group(1) == str(len(modules))
    assert len(modules) > 100  # riskcast/ alone has fewer: jobs/ and dashboards/ are in the graph
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken", "shown"),
    [
        ("riskcast/features/build.py", "import riskcast.dashboards", "data flows one way",
         "riskcast.features.build -> riskcast.dashboards"),
        ("jobs/inbox.py", "import riskcast.cli", "data flows one way", "riskcast.jobs.inbox -> riskcast.cli"),
        ("dashboards/components/text.py", "import riskcast.jobs", "data flows one way",
         "riskcast.dashboards.components.text -> riskcast.jobs"),
        ("riskcast/evaluate/metrics.py", "import riskcast.store", "the pure core reads neither the store nor the lake",
         "riskcast.evaluate.metrics -> riskcast.store"),
        ("riskcast/fairness/gates.py", "import riskcast.config", "the fairness audit reads no settings or config file",
         "riskcast.fairness.gates -> riskcast.config"),
        ("dashboards/auth.py", "from riskcast.store.tables import users",
         "the dashboards read the store through its named queries", "riskcast.dashboards.auth -> riskcast.store.tables"),
        ("dashboards/components/text.py", "from riskcast.store import tables",
         "the dashboards read the store through its named queries",
         "riskcast.dashboards.components.text -> riskcast.store.tables"),
    ],
)  # fmt: skip
def test_a_planted_reach_back_fails_make_lint(checkout: Path, module: str, line: str, broken: str, shown: str) -> None:
    plant(checkout, module, line)
    result = make_lint(checkout)
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout
    assert shown in result.stdout


def test_a_new_top_level_module_needs_a_layer(checkout: Path) -> None:
    (checkout / "riskcast" / "helpers.py").write_text('"""Planted by test_layers."""\n')
    result = make_lint(checkout)
    assert result.returncode != 0
    assert "riskcast.helpers" in result.stdout
    assert "not listed as layers" in result.stdout


def test_a_folder_pip_would_not_install_fails_make_lint(checkout: Path) -> None:
    (checkout / "dashboards" / "widgets").mkdir()
    (checkout / "dashboards" / "widgets" / "__init__.py").write_text('"""Planted by test_layers."""\n')
    result = make_lint(checkout)
    assert result.returncode != 0
    assert "in no package pip installs" in result.stderr
    assert "dashboards/widgets/__init__.py" in result.stderr
