"""The `riskcast` command. Each area's commands live in their own module of this package
and register themselves on the group in riskcast.cli.app; every module here is loaded."""

import importlib
import pkgutil

from riskcast.cli.app import cli

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "app":
        importlib.import_module(f"{__name__}.{_module.name}")


def main() -> None:
    """Entry point of the `riskcast` console script."""
    cli(obj={})
