"""`make lint`: the import contracts in pyproject.toml, checked over every module pip installs.

pyproject.toml maps the top-level jobs/ and dashboards/ folders into the package as
`riskcast.jobs` and `riskcast.dashboards` ([tool.setuptools] package-dir). import-linter
finds a package by its one directory, so run in the source tree it sees riskcast/ alone and a
planted `import riskcast.dashboards` in the feature builder passes unseen. This script lays the
Python files out as pip installs them (riskcast/, riskcast/jobs/, riskcast/dashboards/, ... in
a temporary directory, read from the same package-dir and packages), runs lint-imports there
with this checkout's contracts, and fails unless

- every .py file under a mapped folder belongs to a package pip installs, and
- lint-imports analysed exactly the files laid out (a check that skips a folder checks nothing).

    python tools/lint_layers.py [--root CHECKOUT]   # default: the checkout this file is in
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def package_sources(root: Path) -> dict[str, Path]:
    """Each package pip installs -> the folder its modules come from (setuptools' package-dir rule:
    the longest mapped prefix of the package name, the rest of the name as sub-folders)."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools.get("package-dir", {})
    sources = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        for cut in range(len(parts), -1, -1):
            prefix = ".".join(parts[:cut])
            if prefix in mapping or cut == 0:
                base = mapping.get(prefix, mapping.get("", "."))
                sources[package] = root.joinpath(base, *parts[cut:])
                break
    return sources


def lay_out(root: Path, tree: Path) -> tuple[int, list[Path]]:
    """Copy the installed .py files into `tree` under their package names.

    Returns (files copied, .py files under a mapped folder that no installed package holds)."""
    sources = package_sources(root)
    copied: set[Path] = set()
    for package, source in sources.items():
        target = tree.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for module in sorted(source.glob("*.py")):
            shutil.copy2(module, target / module.name)
            copied.add(module.resolve())
    stray = sorted(
        {
            path
            for folder in sources.values()
            for path in folder.rglob("*.py")
            if "__pycache__" not in path.parts and path.resolve() not in copied
        }
    )
    return len(copied), stray


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    root = parser.parse_args(argv).root.resolve()
    with tempfile.TemporaryDirectory(prefix="riskcast-lint-") as tmp:
        tree = Path(tmp)
        n_files, stray = lay_out(root, tree)
        if stray:
            listed = ", ".join(str(p.relative_to(root)) for p in stray)
            print(f"lint: {len(stray)} .py file(s) are in no package pip installs "
                  f"(add them to [tool.setuptools] packages): {listed}", file=sys.stderr)
            return 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        result = subprocess.run(
            [sys.executable, "-c", LINT_IMPORTS, str(root / "pyproject.toml"), "--no-cache"],
            cwd=tree, env=env, capture_output=True, text=True, check=False,
        )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    analysed = re.search(r"Analyzed (\d+) files", result.stdout)
    if result.returncode == 0 and (analysed is None or int(analysed.group(1)) != n_files):
        seen = "no count" if analysed is None else f"{analysed.group(1)} files"
        print(f"lint: lint-imports analysed {seen} but the package has {n_files} modules", file=sys.stderr)
        return 1
    if result.returncode == 0:
        print(f"lint: every module checked ({n_files} files: riskcast/, jobs/, dashboards/)")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
