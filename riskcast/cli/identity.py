"""Who acts through the command line: a dashboard user, signed in with their password.

`riskcast alerts ack|snooze|resolve` record a named person in the alert's history, so the
command does not take a name and a role on trust: the user gives their dashboard user name
(--user, or $RISKCAST_USER) and password (asked for without echo, or the first line of
standard input with --password-stdin); the role and wards come from the users table, exactly
as when they sign in to the dashboard. The operating-system account that ran the command is
recorded beside them.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from riskcast.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from riskcast.dashboards.auth import DashboardUser


@dataclass(frozen=True)
class CommandLineActor:
    """A signed-in dashboard user acting from the command line, and the account running it."""

    user: DashboardUser
    os_user: str


def os_account() -> str:
    """The operating-system login name running this process ("unknown" when it has none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def read_password(username: str, *, from_stdin: bool) -> str:
    """The password: the first line of standard input, or asked for without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(f"Password for {username}", hide_input=True, default="", show_default=False, err=True)


def authenticated_actor(engine: Engine, username: str, password: str) -> CommandLineActor:
    """The active dashboard user `username` with this password; ConfigError otherwise (the
    message does not say whether the name, the password or the account was wrong)."""
    from riskcast.dashboards.auth import authenticate

    user = authenticate(engine, username, password)
    if user is None:
        raise ConfigError(f"cannot act as {username!r}: wrong user name or password, or the user is disabled")
    return CommandLineActor(user=user, os_user=os_account())


def may_act_on_alert(actor: CommandLineActor, engine: Engine, alert_id: int) -> None:
    """ConfigError unless the user's role may act on alerts and the alert is on their wards
    (the dashboard's own rules: riskcast.dashboards.auth.DashboardUser)."""
    from riskcast.read_models import alert_scope

    user = actor.user
    if not user.may_act:
        raise ConfigError(
            f"{user.username} is a {user.role}: only nurses and physicians may acknowledge, snooze or resolve alerts"
        )
    scope = alert_scope(engine, alert_id)
    if scope is not None and not user.may_see_ward(scope.ward):
        raise ConfigError(f"alert {alert_id} is not on {user.username}'s wards")
