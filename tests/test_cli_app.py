"""The `riskcast` command's shell: --json wherever it is typed, and output paths checked first."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from riskcast.cli import cli


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_every_command_accepts_json_after_its_name() -> None:
    lacking = [" ".join(path) for path, command in _commands(cli) if "--json" not in {o for p in command.params for o in p.opts}]
    assert not lacking, f"no --json after: {lacking}"


@pytest.mark.parametrize("args", [["--json", "models", "list"], ["models", "list", "--json"], ["models", "--json", "list"]])
def test_json_before_or_after_the_command_prints_the_same_json(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), *args], obj={})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"versions": []}


def test_the_readmes_demo_line_parses_with_json_at_the_end(tmp_path: Path) -> None:
    # `riskcast demo --no-serve --json` as the README writes it; --help stops before the demo runs.
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "demo", "--no-serve", "--json", "--help"], obj={})
    assert result.exit_code == 0, result.output
    assert "No such option" not in result.output


# ---------------------------------------------------------------- predict --out, checked first


def _predict(tmp_path: Path, out: Path) -> click.testing.Result:
    data = tmp_path / "other-site"
    data.mkdir(exist_ok=True)
    return CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "predict", "--data", str(data), "--out", str(out)], obj={})


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".tmp-*"))


def test_predict_into_an_existing_directory_fails_at_once_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "predictions"
    out.mkdir()
    result = _predict(tmp_path, out)
    # No model is registered in this home: failing on the output path proves it is checked before the run.
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: --out {out} is a directory; give a file name ending in .parquet or .csv"]
    assert _leftovers(tmp_path) == []


def test_predict_to_an_unwritable_path_fails_at_once_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    out = blocker / "predictions.parquet"
    result = _predict(tmp_path, out)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write --out {out}:"), lines
    assert "Traceback" not in result.output
    assert _leftovers(tmp_path) == []


def test_predict_checks_the_output_before_looking_for_a_model(tmp_path: Path) -> None:
    # A good output path gets past the check, and the run then stops on the missing model.
    result = _predict(tmp_path, tmp_path / "out" / "predictions.csv")
    assert result.exit_code == 1
    assert "no champion model yet" in result.stderr
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out" / "predictions.csv").exists()
