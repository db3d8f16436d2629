"""The `riskcast` command: a thin layer over the library.

Every command takes `--json` for machines, before its name or after it (`riskcast --json
demo` and `riskcast demo --json` are the same). Expected mistakes (a missing file, a bad
setting) print one clear line and exit 1; there is no traceback unless --debug.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from riskcast import __version__
from riskcast.config import Settings, home_warnings, load_settings
from riskcast.errors import ConfigError, RiskcastError
from riskcast.printable import printable

F = TypeVar("F", bound=Callable[..., Any])


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


def check_output_file(out: Path, *, option: str = "--out", kinds: str = ".parquet or .csv") -> None:
    """Fail at once, before any work, when `out` cannot take the file a command will write:
    an existing directory, or a folder that cannot be made or written to. Creates the
    missing parent folders; leaves no file behind."""
    if out.is_dir():
        raise ConfigError(f"{option} {out} is a directory; give a file name ending in {kinds}")
    existing = next(folder for folder in out.absolute().parents if folder.exists())
    if not existing.is_dir():
        raise ConfigError(f"cannot write {option} {out}: {existing} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out.parent, prefix=f".tmp-{out.name}-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"cannot write {option} {out}: {exc.strerror or exc}") from None


def write_output_file(out: Path, write: Callable[[Path], None], *, option: str = "--out") -> None:
    """Have `write` fill a private temporary file beside `out`, then rename it over `out`,
    so a reader never sees half a file; the temporary file is removed whatever happens."""
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".tmp-{out.name}-")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, out)
    except OSError as exc:
        raise ConfigError(f"cannot write {option} {out}: {exc.strerror or exc}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


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


def _json_wanted(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(dict)["json"] = True


_JSON_HELP = "Print machine-readable JSON."


def _json_option() -> click.Option:
    return click.Option(["--json"], is_flag=True, expose_value=False, is_eager=True, callback=_json_wanted, help=_JSON_HELP)


class JsonCommand(click.Command):
    """A command that also takes `--json` after its name (it sets the same flag as before it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_json_option())


class JsonGroup(click.Group):
    """A group whose commands and subgroups all take `--json` (see JsonCommand)."""

    command_class = JsonCommand
    group_class = type  # subgroups are JsonGroups too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not any("--json" in p.opts for p in self.params):
            self.params.append(_json_option())


@click.group(cls=JsonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="riskcast")
@click.option("--home", type=click.Path(path_type=Path), default=None, help="riskcast home (default: $RISKCAST_HOME or ./riskcast-home).")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, as_json: bool, debug: bool, verbose: bool) -> None:
    """riskcast: early warning of deterioration from routine vitals and labs."""
    ctx.ensure_object(dict)
    ctx.obj["json"] = ctx.obj.get("json", False) or as_json
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
    for warning in home_warnings(ctx.obj["settings"]):
        click.echo(f"warning: {warning}", err=True)


def settings_of(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


