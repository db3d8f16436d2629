"""`riskcast users` (riskcast/cli/serve.py): adding and listing dashboard users from the command
line, the password read from standard input and never shown."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dashboard_home import PASSWORD, WARD_A
from riskcast.cli import cli


def test_users_add_reads_the_password_from_stdin_and_list_never_shows_it(tmp_path):
    runner = CliRunner()
    home = str(tmp_path / "home")
    added = runner.invoke(cli, ["--home", home, "users", "add", "Nina", "--role", "nurse", "--ward", WARD_A,
                                "--password-stdin"], input=f"{PASSWORD}\n", obj={})  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["--home", home, "--json", "users", "list"], obj={})
    assert json.loads(listed.output)["users"][0] | {"created_at": None} == {
        "username": "nina", "role": "nurse", "wards": [WARD_A], "active": True, "created_at": None,
    }  # fmt: skip
    assert PASSWORD not in listed.output and "argon2" not in listed.output
    refused = runner.invoke(cli, ["--home", home, "users", "add", "ben", "--role", "nurse", "--password-stdin"],
                            input=f"{PASSWORD}\n", obj={})  # fmt: skip
    assert refused.exit_code == 1 and "at least one --ward" in refused.output
