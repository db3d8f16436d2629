"""`riskcast serve` (the dashboard) and `riskcast users add|list|disable|enable`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from riskcast.cli.app import cli, emit, friendly_errors, settings_of
from riskcast.clock import wall_clock
from riskcast.store.tables import USER_ROLES

if TYPE_CHECKING:
    from sqlalchemy import Engine


@cli.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=8050, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option(
    "--demo-users/--no-demo-users",
    default=True,
    show_default=True,
    help="On first run (no users yet) create demo-nurse, demo-physician and demo-admin and print their password once.",
)
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests answered at once (the server's worker threads).")  # fmt: skip
@click.option("--trusted-proxy", default=None, metavar="ADDRESS",
              help="The reverse proxy's address (e.g. 127.0.0.1): only its X-Forwarded-For and "
                   "X-Forwarded-Proto are believed.")  # fmt: skip
@click.option("--cookie-secure", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Mark the session cookie Secure: auto = when the request came over HTTPS.")  # fmt: skip
@click.option("--idle-minutes", type=click.FloatRange(1, 720), default=30, show_default=True,
              help="Sign out a session nobody used for this long (the board's own refreshes do not count).")  # fmt: skip
@click.option("--session-hours", type=click.FloatRange(0.5, 24), default=12, show_default=True,
              help="Sign out every session this long after its sign-in.")  # fmt: skip
@click.pass_context
@friendly_errors
def serve_command(ctx: click.Context, port: int, host: str, demo_users: bool, threads: int, trusted_proxy: str | None,
                  cookie_secure: str, idle_minutes: float, session_hours: float) -> None:  # fmt: skip
    """Serve the ward dashboard on a production WSGI server (waitress) until Ctrl+C."""
    from riskcast.dashboards.app import serve
    from riskcast.dashboards.context import SecurityOptions

    security = SecurityOptions(session_hours=session_hours, idle_minutes=idle_minutes, cookie_secure=cookie_secure)
    serve(settings_of(ctx), port=port, host=host, demo_users=demo_users, security=security, threads=threads,
          trusted_proxy=trusted_proxy)  # fmt: skip


@cli.group()
def users() -> None:
    """Dashboard users: who may sign in, with which role, on which wards."""


def _engine(ctx: click.Context) -> Engine:
    from riskcast.store import open_store

    return open_store(settings_of(ctx).database_url)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(USER_ROLES), required=True, help="What the user may see and do.")
@click.option("--ward", "wards", multiple=True, help="A ward they see (repeat for several; a nurse needs at least one).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--replace", is_flag=True, help="Reset an existing user's role, wards and password.")
@click.pass_context
@friendly_errors
def users_add(ctx: click.Context, name: str, role: str, wards: tuple[str, ...], password_stdin: bool, replace: bool) -> None:
    """Add user NAME (the password is asked for, or read with --password-stdin; stored hashed)."""
    from riskcast.dashboards.auth import add_user

    password = _read_password(password_stdin)
    engine = _engine(ctx)
    try:
        info = add_user(engine, name, role=role, wards=wards, password=password, now=wall_clock(), replace=replace)
    finally:
        engine.dispose()
    shown = ", ".join(info.wards) if info.wards else "all wards"
    emit(
        ctx,
        {"username": info.username, "role": info.role, "wards": list(info.wards), "active": info.active},
        f"{'updated' if replace else 'added'} {info.username}: {info.role}, {shown}",
    )


@users.command("list")
@click.pass_context
@friendly_errors
def users_list(ctx: click.Context) -> None:
    """List users (never their passwords)."""
    from riskcast.dashboards.auth import list_users

    engine = _engine(ctx)
    try:
        found = list_users(engine)
    finally:
        engine.dispose()
    rows = [
        {
            "username": u.username,
            "role": u.role,
            "wards": list(u.wards),
            "active": u.active,
            "created_at": u.created_at.isoformat(),
        }
        for u in found
    ]

    def text() -> str:
        if not rows:
            return "no users yet: add one with `riskcast users add NAME --role nurse --ward WARD`"
        width = max(len(r["username"]) for r in rows)
        return "\n".join(
            f"{r['username']:<{width}}  {r['role']:<14}  {', '.join(r['wards']) or 'all wards'}"
            + ("" if r["active"] else "  (disabled)")
            for r in rows
        )

    emit(ctx, {"users": rows}, text)


def _set_active(ctx: click.Context, name: str, active: bool) -> None:
    from riskcast.dashboards.auth import set_active

    engine = _engine(ctx)
    try:
        set_active(engine, name, active=active, now=wall_clock())
    finally:
        engine.dispose()
    emit(ctx, {"username": name.lower(), "active": active}, f"{'enabled' if active else 'disabled'} {name.lower()}")


@users.command("disable")
@click.argument("name")
@click.pass_context
@friendly_errors
def users_disable(ctx: click.Context, name: str) -> None:
    """Stop NAME signing in; their open sessions end at their next click."""
    _set_active(ctx, name, False)


@users.command("enable")
@click.argument("name")
@click.pass_context
@friendly_errors
def users_enable(ctx: click.Context, name: str) -> None:
    """Let a disabled user sign in again."""
    _set_active(ctx, name, True)
