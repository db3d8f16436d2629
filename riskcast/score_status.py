"""What a score says about its own data: scored, or insufficient data.

The headline rule of riskcast is that missing data is never shown as low risk. A score whose
essential vitals are missing or older than the catalogue's stale-after interval has the
status INSUFFICIENT_DATA and no risk; every other score is SCORED and carries a risk. The
scorer (riskcast.pipeline.scoring) decides which; the store, the alert policy, the read
models, the external validation and the dashboard only read the status, always through this
one name.

The members are strings (StrEnum): they compare equal to, print as and serialise to the same
words the store, the JSON reports and the dashboard have always used ("scored",
"insufficient_data"), so nothing stored or written changes.
"""

from __future__ import annotations

from enum import StrEnum


class ScoreStatus(StrEnum):
    """Whether a score carries a risk (SCORED) or its data could not support one."""

    SCORED = "scored"
    """The essential vitals were present and fresh: the score carries a calibrated risk."""
    INSUFFICIENT_DATA = "insufficient_data"
    """An essential vital was missing or stale: no risk, and never to be read as low risk."""
