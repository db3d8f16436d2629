"""The `riskcast` command. Each area's commands live in their own module of this package
and register themselves on the group in riskcast.cli.app; every module here is loaded."""

import importlib
import os
import pkgutil

from riskcast.cli.app import cli
from riskcast.config import OWNER_ONLY_UMASK

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "app":
        importlib.import_module(f"{__name__}.{_module.name}")


def main() -> None:
    """Entry point of the `riskcast` console script. Everything it creates (the home, store,
    lake, models, reports, scratch, inbox and archive, temporary files) is owner-only."""
    os.umask(OWNER_ONLY_UMASK)
    cli(obj={})
