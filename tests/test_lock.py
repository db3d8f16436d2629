"""The lock files: every install of riskcast's checkout gets the same libraries, byte for byte.

pyproject.toml keeps ranges for people who install riskcast as a library; `make install`
and CI install requirements-test.lock with pip's --require-hashes, then riskcast itself
with --no-deps. These tests fail when a dependency is added to pyproject.toml without
`make lock`, or a pin falls outside its range.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a pip requirements file written by `make lock`."""
    pins: dict[str, tuple[str, int]] = {}
    name = None
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match.group(1))
            pins[name] = (match.group(2), 0)
        elif name is not None and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            pytest.fail(f"{path.name}: line {line!r} is neither a pin nor a hash")
    return pins


def _requirements(*, extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    names += [line for line in (ROOT / "requirements-build.in").read_text().splitlines() if line and not line.startswith("#")]
    return [Requirement(text) for text in names]


@pytest.mark.parametrize(("lock", "extras"), [("requirements.lock", ("postgres",)), ("requirements-test.lock", ("test",))])
def test_every_dependency_is_pinned_within_its_range_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    pins = _pins(ROOT / lock)
    for requirement in _requirements(extras=extras):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {requirement.name}: run `make lock`"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), f"{lock}: {name}=={version} is outside {requirement}"
    unhashed = [name for name, (_, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"{lock}: pins without a hash: {unhashed}"


def test_the_test_lock_runs_the_same_versions_as_the_runtime_lock() -> None:
    runtime, test = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-test.lock")
    differ = {name: (runtime[name][0], test[name][0]) for name in runtime.keys() & test.keys() if runtime[name][0] != test[name][0]}
    assert not differ, f"the two lock files disagree: {differ}"


def test_make_install_installs_the_lock_with_hashes_and_riskcast_without_resolving() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("$(STAMP):"):].split("\n\n")[0]
    assert "requirements-test.lock" in recipe.splitlines()[0], "the install must be redone when the lock changes"
    assert "--require-hashes -r requirements-test.lock" in recipe
    editable = next(line for line in recipe.splitlines() if " -e ." in line)
    assert "--no-deps" in editable and "--no-build-isolation" in editable
