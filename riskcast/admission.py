"""Who is in hospital at an hour: the one definition of "admitted".

An encounter is admitted at `at` when it was admitted at or before `at` and is not yet
discharged by then: its discharge_time is null (still in hospital when the data was sent)
or later than `at`. A patient discharged exactly at `at` has left. Times are UTC-aware.

The scorer scores exactly these encounters at each hour (riskcast.pipeline.scoring), so the
encounters scored in the latest scoring run are the admitted ones as of that hour: that is
how the read models (riskcast.read_models), which see the store rather than the lake,
tell who is still on the ward. The monitor's feed check asks this module too.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl


def is_admitted_at(at: datetime) -> pl.Expr:
    """True for an encounters row in hospital at `at` (admit_time <= at < discharge_time,
    a null discharge_time meaning not discharged)."""
    discharge = pl.col("discharge_time")
    return (pl.col("admit_time") <= at) & (discharge.is_null() | (discharge > at))


def admitted_at(encounters: pl.LazyFrame, *, at: datetime) -> pl.LazyFrame:
    """The rows of `encounters` (the canonical encounters table) admitted at `at`."""
    return encounters.filter(is_admitted_at(at))
