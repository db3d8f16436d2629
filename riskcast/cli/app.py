"""The `riskcast` command: a thin layer over the library.

Every command takes `--json` for machines. Expected mistakes (a missing file, a bad
setting) print one clear line and exit 1; there is no traceback unless --debug.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from riskcast import __version__
from riskcast.config import Settings, load_settings
from riskcast.errors import RiskcastError
from riskcast.printable import printable

F = TypeVar("F", bound=Callable[..., Any])


def now_utc() -> datetime:
    """The wall clock, read only at the edge (commands), in UTC."""
    return datetime.now(UTC)


def parse_time(value: str | None) -> datetime | None:
    """A CLI time argument: ISO 8601; no offset means UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2026-01-15T12:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def emit(ctx: click.Context, data: dict[str, Any], text: str | Callable[[], str]) -> None:
    """Print JSON when --json was given, else the human text."""
    if ctx.obj.get("json"):
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text() if callable(text) else text)


def friendly_errors(func: F) -> F:
    """Turn expected errors into one line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return func(*args, **kwargs)
        except RiskcastError as exc:
            if ctx.obj.get("debug"):
                raise
            click.echo(f"error: {printable(exc)}", err=True)  # a file name never forges a line
            ctx.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="riskcast")
@click.option("--home", type=click.Path(path_type=Path), default=None, help="riskcast home (default: $RISKCAST_HOME or ./riskcast-home).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, as_json: bool, debug: bool, verbose: bool) -> None:
    """riskcast: early warning of deterioration from routine vitals and labs."""
    ctx.ensure_object(dict)
    ctx.obj["json"] = as_json
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        ctx.obj["settings"] = load_settings(home=home)
    except RiskcastError as exc:
        raise click.ClickException(str(exc)) from exc


def settings_of(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


