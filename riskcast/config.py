"""Settings: one typed object from defaults, an optional riskcast.toml and RISKCAST_* variables.

Precedence, lowest first: built-in defaults, `<home>/riskcast.toml`, environment.

Everything under the home is the owner's only (folders 0700, files 0600): the store holds
password hashes and patient identifiers, the lake and reports patient data. The `riskcast`
command runs with umask 077 (see riskcast.cli.main) and the writers of the lake, store,
models and reports set these modes themselves; riskcast.toml, which may hold a database
password, is refused when others may read it, as the dashboard's secret key is.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from riskcast.errors import ConfigError

DEFAULT_HOME = "riskcast-home"
CONFIG_FILE = "riskcast.toml"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
OWNER_ONLY_UMASK = 0o077
"""The umask of the `riskcast` command: whatever it creates, only its owner can read."""


def make_private_dir(path: Path) -> Path:
    """Create the folder `path` and every missing parent owner-only (0700); folders that
    exist already are left as they are. Returns `path`."""
    path = Path(path)
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask
    return path


def open_to_others(path: Path) -> int | None:
    """The permission bits of `path` when group or others have any access to it, else None."""
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    return mode if mode & 0o077 else None


def check_private_file(path: Path, *, holds: str) -> None:
    """ConfigError when others may read `path`, a file that `holds` something secret."""
    mode = open_to_others(path)
    if mode is not None:
        raise ConfigError(
            f"{path} is readable by other users (mode {mode:o}); it {holds}: run `chmod 600 {path}`"
        )


def home_warnings(settings: Settings) -> list[str]:
    """What is wrong with the home's permissions, as warnings for the start of a command."""
    home = settings.home
    if not home.is_dir():
        return []
    mode = open_to_others(home)
    if mode is None:
        return []
    return [f"the riskcast home {home} is open to other users (mode {mode:o}); run `chmod 700 {home}`"]


@dataclass(frozen=True)
class Settings:
    """Where riskcast keeps its data and how it reads sources."""

    home: Path = field(default_factory=lambda: Path(DEFAULT_HOME))
    db_url: str | None = None
    source_timezone: str = "UTC"

    @property
    def lake_dir(self) -> Path:
        """The append-only Parquet lake."""
        return self.home / "lake"

    @property
    def models_dir(self) -> Path:
        """Trained model artefacts, one directory per version."""
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        """Evaluation and audit reports."""
        return self.home / "reports"

    @property
    def database_url(self) -> str:
        """The store's SQLAlchemy URL: RISKCAST_DB_URL, else a SQLite file in the home."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'riskcast.db').resolve()}"


def load_settings(env: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment (os.environ by default) and keyword overrides."""
    env = dict(os.environ if env is None else env)
    settings = Settings(home=Path(env.get("RISKCAST_HOME", DEFAULT_HOME)))
    toml_path = settings.home / CONFIG_FILE
    if toml_path.exists():
        check_private_file(toml_path, holds="may hold a database password")
        try:
            file_values = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path}: not valid TOML ({exc})") from exc
        known = {"db_url", "source_timezone"}
        unknown = set(file_values) - known
        if unknown:
            raise ConfigError(f"{toml_path}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
        settings = replace(settings, **file_values)
    if env.get("RISKCAST_DB_URL"):
        settings = replace(settings, db_url=env["RISKCAST_DB_URL"])
    if env.get("RISKCAST_SOURCE_TIMEZONE"):
        settings = replace(settings, source_timezone=env["RISKCAST_SOURCE_TIMEZONE"])
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    try:
        ZoneInfo(settings.source_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"source time zone {settings.source_timezone!r} is not an IANA zone name (e.g. 'Europe/London')"
        ) from exc
    return settings


def read_yaml_config(path: str | Path | None, *, packaged: str, what: str) -> tuple[Any, str]:
    """The parsed YAML of `path`, or of the packaged schemas/`packaged` when None, and its
    source name for messages. ConfigError names the file (`what` says what it is) when it
    cannot be read or is not YAML; checking its content is the caller's."""
    import yaml
    from importlib import resources

    if path is None:
        source = f"schemas/{packaged}"
        try:
            text = resources.files("riskcast.schemas").joinpath(packaged).read_text()
        except FileNotFoundError:
            raise ConfigError(f"{source} is missing from the installed package") from None
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} {source}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text), source
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
