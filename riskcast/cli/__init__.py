"""The `riskcast` command. Each area's commands live in their own module and register
themselves on the group in riskcast.cli.app."""

from riskcast.cli import data, demo, modelling  # noqa: F401  (registers commands)
from riskcast.cli.app import cli


def main() -> None:
    """Entry point of the `riskcast` console script."""
    cli(obj={})
