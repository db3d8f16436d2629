"""`riskcast alerts ack|snooze|resolve` act as a dashboard user, never as a claimed name and role.

The user signs in with their dashboard password (prompted, or one line of standard input with
--password-stdin); their role and wards come from the users table, as on the dashboard; only
nurses and physicians may act, a nurse only on her wards; and the alert's history records the
user, their role and the operating-system account that ran the command.
"""

from __future__ import annotations

import getpass
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from riskcast.alerts.policy import load_policy
from riskcast.alerts.state import alert_history, list_alerts, process_scores
from riskcast.cli import cli
from riskcast.config import load_settings
from riskcast.dashboards.auth import add_user, set_active
from riskcast.store import open_store

PASSWORD = "Quartz-Heron-Lantern-71!"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one new alert on ward 'Ward A' and a user of every role (built once:
    Argon2 hashing is deliberately slow)."""
    home = tmp_path_factory.mktemp("template")
    engine = open_store(load_settings(env={"RISKCAST_HOME": str(home)}).database_url)
    try:
        for name, role, wards in [("demo-physician", "physician", []), ("demo-admin", "admin", []),
                                  ("ds", "data_scientist", []), ("nina", "nurse", ["Ward A"]), ("nora", "nurse", ["Ward B"])]:
            add_user(engine, name, role=role, password=PASSWORD, wards=wards, now=NOW)
        scores = pl.DataFrame(
            {"encounter_id": ["E1"], "patient_id": ["P1"], "ward": ["Ward A"], "scored_at": [NOW], "risk": [0.9],
             "status": ["scored"], "model_version": ["v1"]},
            schema_overrides={"scored_at": pl.Datetime("us", "UTC")},
        )
        process_scores(engine, scores, policy_set=load_policy(), model_threshold=0.3, now=NOW)
        assert list_alerts(engine)["alert_id"].to_list() == [1]
    finally:
        engine.dispose()
    return home / "riskcast.db"


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    """A home of its own holding a copy of the template store."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    shutil.copy(template, home / "riskcast.db")
    return home


def _alerts(home: Path, *args: str, password: str | None = PASSWORD):
    return CliRunner().invoke(cli, ["--home", str(home), "alerts", *args], input=None if password is None else f"{password}\n", obj={})


def _history(home: Path) -> list[dict]:
    engine = open_store(load_settings(env={"RISKCAST_HOME": str(home)}).database_url)
    try:
        return alert_history(engine, alert_id=1).filter(pl.col("action") != "raised").to_dicts()
    finally:
        engine.dispose()


def test_the_old_line_claiming_a_role_and_a_name_is_refused(home: Path) -> None:
    result = _alerts(home, "ack", "1", "--role", "admin", "--by", "demo-physician", password=None)
    assert result.exit_code != 0
    assert "--role is not taken any more: the role comes from the users table" in result.output
    assert _history(home) == []


def test_a_physician_acts_with_their_password_and_their_role_from_the_users_table(home: Path) -> None:
    result = _alerts(home, "ack", "1", "--user", "demo-physician", "--password-stdin", "--reason", "seen")
    assert result.exit_code == 0, result.output
    assert "alert #1 is now acknowledged" in result.stdout
    (event,) = _history(home)
    assert (event["actor"], event["role"], event["action"]) == ("demo-physician", "physician", "acknowledged")
    assert event["os_user"] == getpass.getuser()


def test_the_password_is_asked_for_when_not_given_on_standard_input(home: Path) -> None:
    result = _alerts(home, "resolve", "1", "--user", "demo-physician", "--reason", "reviewed")
    assert result.exit_code == 0, result.output
    assert "Password for demo-physician" in result.stderr and PASSWORD not in result.output
    assert result.stdout.strip() == "alert #1 is now resolved"  # the prompt stays off standard output (for --json)
    assert _history(home)[0]["action"] == "resolved"


@pytest.mark.parametrize("password", ["wrong-password-123", ""])
def test_a_wrong_password_is_refused_and_records_nothing(home: Path, password: str) -> None:
    result = _alerts(home, "ack", "1", "--user", "demo-physician", "--password-stdin", password=password)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: cannot act as 'demo-physician': wrong user name or password, or the user is disabled"
    assert _history(home) == []


def test_an_unknown_or_disabled_user_is_refused_alike(home: Path) -> None:
    engine = open_store(load_settings(env={"RISKCAST_HOME": str(home)}).database_url)
    set_active(engine, "demo-physician", active=False)
    engine.dispose()
    for user in ("demo-physician", "nobody"):
        result = _alerts(home, "ack", "1", "--user", user, "--password-stdin")
        assert result.exit_code == 1 and "wrong user name or password, or the user is disabled" in result.stderr
    assert _history(home) == []


@pytest.mark.parametrize(("user", "role"), [("demo-admin", "admin"), ("ds", "data_scientist")])
def test_roles_that_may_not_act_on_alerts_are_refused(home: Path, user: str, role: str) -> None:
    result = _alerts(home, "ack", "1", "--user", user, "--password-stdin")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {user} is a {role}: only nurses and physicians may acknowledge, snooze or resolve alerts"
    )
    assert _history(home) == []


def test_a_nurse_acts_only_on_alerts_of_her_wards(home: Path) -> None:
    refused = _alerts(home, "ack", "1", "--user", "nora", "--password-stdin")
    assert refused.exit_code == 1 and refused.stderr.strip() == "error: alert 1 is not on nora's wards"
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    allowed = _alerts(home, "snooze", "1", "--user", "nina", "--password-stdin", "--until", until, "--reason", "on rounds")
    assert allowed.exit_code == 0, allowed.output
    assert [(e["actor"], e["role"], e["action"]) for e in _history(home)] == [("nina", "nurse", "snoozed")]


def test_the_history_shows_who_acted_from_which_account(home: Path) -> None:
    assert _alerts(home, "ack", "1", "--user", "demo-physician", "--password-stdin").exit_code == 0
    result = CliRunner().invoke(cli, ["--home", str(home), "alerts", "history", "E1"], obj={})
    assert f"by demo-physician (physician, OS user {getpass.getuser()})" in result.stdout


# ------------------------------------------------------------------ models promote --override


@pytest.fixture
def home_with_a_model(home: Path) -> tuple[Path, str]:
    """The home with one registered model that has no evaluation and no audit (its gates fail)."""
    import numpy as np
    import pandas as pd

    from riskcast.model import ModelRegistry, RiskModel

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    y = (rng.random(400) < 1 / (1 + np.exp(-2 * X["a"].to_numpy() + 1))).astype(int)
    model = RiskModel(device="cpu", n_jobs=1).fit(X, y, groups=np.repeat(np.arange(80), 5))
    version = ModelRegistry(home / "models").register(model, metadata={}, now=NOW)
    return home, version


def _promote(home: Path, *args: str, password: str | None = PASSWORD):
    return CliRunner().invoke(cli, ["--home", str(home), "models", "promote", *args],
                              input=None if password is None else f"{password}\n", obj={})


def test_promote_no_longer_takes_a_claimed_admin_role(home_with_a_model) -> None:
    home, version = home_with_a_model
    result = _promote(home, version, "--by", "ada", "--reason", "ward trial", "--override", "--role", "admin", password=None)
    assert result.exit_code != 0 and "--role is not taken any more" in result.output
    from riskcast.model import ModelRegistry

    assert ModelRegistry(home / "models").champion() is None


def test_only_an_admin_of_the_users_table_may_override_a_failed_gate(home_with_a_model) -> None:
    from riskcast.model import ModelRegistry

    home, version = home_with_a_model
    nurse = _promote(home, version, "--user", "nina", "--password-stdin", "--reason", "x", "--override")
    assert nurse.exit_code == 1
    assert nurse.stderr.strip() == "error: nina is a nurse: only data scientists and admins may promote models"
    scientist = _promote(home, version, "--user", "ds", "--password-stdin", "--reason", "x", "--override")
    assert scientist.exit_code == 1 and "only an admin may override a failed gate (role: data_scientist)" in scientist.stderr
    assert ModelRegistry(home / "models").champion() is None
    admin = _promote(home, version, "--user", "demo-admin", "--password-stdin", "--reason", "ward trial", "--override")
    assert admin.exit_code == 0, admin.output
    registry = ModelRegistry(home / "models")
    assert registry.champion() == version
    event = registry.events()[-1]
    assert event["by"] == f"demo-admin (OS user {getpass.getuser()})" and "override of failed gate(s)" in event["reason"]
