"""Outcome labels for the hourly grid: did the event happen within the next H hours?

For the row at time t and the encounter's first event of the chosen type at time e:

- label = 1 when t < e <= t + H (the event falls in the horizon, which includes its end);
- rows at or after e are dropped: once the event has happened there is nothing to predict;
- label = 0 when the horizon holds no event and the patient was observed through it
  (discharged, or still admitted at `as_of` with t + H <= as_of);
- otherwise the row is censored (label null) and left out of training and evaluation:
  a still-admitted patient may yet have the event.

Using the first event only, and dropping later rows, keeps training free of leakage from
the outcome itself.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from riskcast.catalog import load_contract
from riskcast.errors import LabelError

DEFAULT_HORIZON_HOURS = 12.0


def outcome_types(outcome: str) -> list[str]:
    """Event types an outcome name stands for ('deterioration' is a composite)."""
    contract = load_contract("outcomes")
    composite = contract.extra.get("composite_outcomes", {})
    if outcome in composite:
        return list(composite[outcome])
    allowed = contract.column("event_type").allowed
    if outcome not in allowed:
        raise LabelError(
            f"unknown outcome {outcome!r}; choose one of {', '.join([*composite, *allowed])}"
        )
    return [outcome]


def first_events(outcomes: pl.LazyFrame | pl.DataFrame, *, outcome: str) -> pl.LazyFrame:
    """encounter_id, event_time: the first event of the outcome's types per encounter."""
    return (
        outcomes.lazy()
        .filter(pl.col("event_type").is_in(outcome_types(outcome)))
        .group_by("encounter_id")
        .agg(pl.col("event_time").min())
    )


def make_labels(
    grid: pl.LazyFrame | pl.DataFrame,
    outcomes: pl.LazyFrame | pl.DataFrame,
    encounters: pl.LazyFrame | pl.DataFrame,
    *,
    outcome: str = "deterioration",
    horizon_hours: float = DEFAULT_HORIZON_HOURS,
    as_of: datetime | None = None,
    keep_after_event: bool = False,
) -> pl.DataFrame:
    """Labels for every (encounter_id, time) of the grid, in the grid's order: label (0/1/null)
    and event_time.

    keep_after_event keeps rows at or after the event (labelled 1), as the PhysioNet 2019
    challenge scores them; training should leave it off.
    """
    if horizon_hours <= 0:
        raise LabelError(f"horizon_hours must be positive, got {horizon_hours}")
    events = first_events(outcomes, outcome=outcome)
    horizon = pl.duration(seconds=int(horizon_hours * 3600))
    frame = (
        grid.lazy()
        .select("encounter_id", "time")
        .join(events, on="encounter_id", how="left", maintain_order="left")
        .join(
            encounters.lazy().select("encounter_id", "discharge_time"),
            on="encounter_id",
            how="left",
            maintain_order="left",
        )
    )
    if not keep_after_event:
        frame = frame.filter(pl.col("event_time").is_null() | (pl.col("time") < pl.col("event_time")))
    in_horizon = pl.col("event_time").is_not_null() & (pl.col("event_time") <= pl.col("time") + horizon)
    observed_through = pl.col("discharge_time").is_not_null()
    if as_of is not None:
        observed_through = observed_through | (pl.col("time") + horizon <= pl.lit(as_of))
    label = (
        pl.when(in_horizon)
        .then(pl.lit(1, dtype=pl.Int8))
        .when(pl.col("event_time").is_not_null() | observed_through)
        .then(pl.lit(0, dtype=pl.Int8))
        .otherwise(pl.lit(None, dtype=pl.Int8))
    )
    return frame.select("encounter_id", "time", label.alias("label"), "event_time").collect()


def challenge_labels(grid: pl.LazyFrame | pl.DataFrame, outcomes: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """PhysioNet 2019 per-hour SepsisLabel, rebuilt from the sepsis onset event.

    The adapter stores onset as t_sepsis (first SepsisLabel hour + 6 h), so the challenge's
    label is 1 from t_sepsis − 6 h onwards: exactly the original column, never shifted twice.
    """
    events = first_events(outcomes, outcome="sepsis")
    six_hours = pl.duration(hours=6)
    return (
        grid.lazy()
        .select("encounter_id", "time")
        .join(events, on="encounter_id", how="left", maintain_order="left")
        .select(
            "encounter_id",
            "time",
            (pl.col("event_time").is_not_null() & (pl.col("time") >= pl.col("event_time") - six_hours))
            .cast(pl.Int8)
            .alias("sepsis_label"),
        )
        .collect()
    )
