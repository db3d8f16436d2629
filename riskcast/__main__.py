"""`python -m riskcast` is the `riskcast` command."""

from riskcast.cli import main

main()
