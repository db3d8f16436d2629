"""Stays, the wards they pass through, and what happens during them: shared by the MEDS,
FHIR and OMOP adapters.

Each adapter first builds its stays as a frame with `encounter_id`, `_subject` (the
patient), `_admit` and `_discharge` (null while admitted), then uses these functions to
- attach rows that name no stay (a lab taken before admission, a death) to the stay of the
  same patient that holds their time (`attach_to_stays`);
- pick the ward an encounter is recorded in (`last_ward`): the canonical encounters table
  has one ward per stay, and, as in a live feed where the latest row wins, it is the last
  ward the patient was in before discharge;
- tell an intensive-care ward from another by its name (`is_icu_ward`);
- keep one death per stay (`one_death_per_stay`): MEDS and OMOP record a death both as a
  death event and as a discharge disposition;
- add up scores charted in parts (`add_up_parts`: GCS = eye + verbal + motor).

Times on both sides of a comparison must have the same type: naive (MEDS, OMOP: the site's
local time, converted to UTC by the contract) or UTC (FHIR, where times carry offsets).
"""

from __future__ import annotations

import re

import polars as pl

from riskcast.catalog import load_contract
from riskcast.contracts import SOURCE_FILE, SOURCE_LINE
from riskcast.ingest.rejects import empty_rejected, empty_skipped, rejected_rows, skipped_counts

ICU_WARD = re.compile(r"\bICU\b|intensive care|\bCCU\b|coronary care|\b[A-Z]{1,5}ICU\b", re.IGNORECASE)
UNKNOWN_WARD = "unknown"


def is_icu_ward(name: str | None) -> bool:
    """True for a ward whose name says it is intensive care ('Medical Intensive Care Unit (MICU)')."""
    return bool(name) and ICU_WARD.search(name) is not None


def icu_ward_expr(name: pl.Expr) -> pl.Expr:
    """is_icu_ward as a polars expression."""
    return name.fill_null("").str.contains(r"(?i)\bICU\b|intensive care|\bCCU\b|coronary care|\b[A-Z]{1,5}ICU\b")


def observation_window_hours() -> tuple[float, float]:
    """How long before admission and after discharge an observation still belongs to a stay."""
    window = load_contract("observations").extra.get("window", {})
    return float(window.get("before_admit_hours", 0)), float(window.get("after_discharge_hours", 0))


def attach_to_stays(
    events: pl.DataFrame, stays: pl.DataFrame, *, before_hours: float = 0.0, after_hours: float = 0.0
) -> pl.DataFrame:
    """Fill `encounter_id` where it is null with the patient's stay that holds `_time`.

    events: `_row` (unique), `_subject`, `_time`, `encounter_id` (null where not known).
    stays: `encounter_id`, `_subject`, `_admit`, `_discharge`.
    A stay holds a time from `before_hours` before admission to `after_hours` after
    discharge (open stays: onwards). Where several do, the one whose own admission-to-
    discharge span holds the time wins, then the one admitted closest to it. Rows that no
    stay holds keep a null encounter_id.
    """
    need = events.filter(pl.col("encounter_id").is_null() & pl.col("_time").is_not_null()).select(
        "_row", "_subject", "_time"
    )
    if need.height == 0 or stays.height == 0:
        return events
    time, admit, discharge = pl.col("_time"), pl.col("_admit"), pl.col("_discharge")
    found = (
        need.join(stays.select("_subject", "encounter_id", "_admit", "_discharge"), on="_subject", how="inner")
        .filter(
            (time >= admit - pl.duration(hours=before_hours))
            & (discharge.is_null() | (time <= discharge + pl.duration(hours=after_hours)))
        )
        .with_columns(
            ((time >= admit) & (discharge.is_null() | (time <= discharge))).alias("_inside"),
            (time - admit).abs().alias("_distance"),
        )
        .sort(["_row", "_inside", "_distance"], descending=[False, True, False])
        .unique("_row", keep="first", maintain_order=True)
        .select("_row", pl.col("encounter_id").alias("_found"))
    )
    return (
        events.join(found, on="_row", how="left", maintain_order="left")
        .with_columns(pl.coalesce("encounter_id", "_found").alias("encounter_id"))
        .drop("_found")
    )


def last_ward(ward_events: pl.DataFrame, stays: pl.DataFrame) -> pl.DataFrame:
    """encounter_id, ward: the last ward entered at or before discharge.

    ward_events: `encounter_id`, `_time`, `ward`. A stay without any ward gets "unknown".
    """
    wards = (
        ward_events.filter(pl.col("ward").is_not_null() & (pl.col("ward").str.strip_chars() != ""))
        .join(stays.select("encounter_id", "_discharge"), on="encounter_id", how="inner")
        .filter(pl.col("_discharge").is_null() | pl.col("_time").is_null() | (pl.col("_time") <= pl.col("_discharge")))
        .sort("encounter_id", "_time", nulls_last=False, maintain_order=True)
        .group_by("encounter_id", maintain_order=True)
        .agg(pl.col("ward").last())
    )
    return stays.select("encounter_id").join(wards, on="encounter_id", how="left", maintain_order="left").with_columns(
        pl.col("ward").fill_null(UNKNOWN_WARD)
    )


def deaths_in_stays(deaths: pl.DataFrame, stays: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Death outcomes for the deaths that fall in a stay, and SKIPPED counts for the rest.

    deaths: `_subject`, `_time`, `_source_file`, `_source_line`. A death at midnight is
    taken as known to the day only: it belongs to a stay when its date lies between the
    admission and discharge dates, and is then placed at the discharge time (the stay's
    last moment), so that no hour of the stay is labelled after a death it preceded.
    """
    if deaths.height == 0:
        return _empty_outcomes(stays.schema.get("_admit", pl.Datetime("us"))), empty_skipped()
    numbered = deaths.with_row_index("_death")
    time, admit, discharge = pl.col("_time"), pl.col("_admit"), pl.col("_discharge")
    date_only = time == time.dt.truncate("1d")
    within = (time >= admit) & (discharge.is_null() | (time <= discharge))
    within_day = date_only & (time.dt.date() >= admit.dt.date()) & (
        discharge.is_null() | (time.dt.date() <= discharge.dt.date())
    )
    matched = (
        numbered.join(stays.select("_subject", "encounter_id", "_admit", "_discharge"), on="_subject", how="inner")
        .filter(within | within_day)
        .with_columns(
            pl.when(within & ~date_only).then(time).otherwise(pl.coalesce(discharge, time)).alias("event_time")
        )
        .sort("_death", "event_time")
        .unique("_death", keep="first", maintain_order=True)
    )
    outside = numbered.join(matched.select("_death"), on="_death", how="anti")
    outcomes = matched.select(
        "encounter_id", "event_time", pl.lit("death").alias("event_type"), SOURCE_FILE, SOURCE_LINE
    )
    return outcomes, skipped_counts(outside, table="outcomes", rule="death_outside_stays", family="death")


def one_death_per_stay(outcomes: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the earliest death of each encounter (and every other event); count the others."""
    is_death = pl.col("event_type") == "death"
    deaths = outcomes.filter(is_death).with_row_index("_order").sort("encounter_id", "event_time", "_order")
    first = deaths.unique("encounter_id", keep="first", maintain_order=True)
    repeats = deaths.join(first.select("_order"), on="_order", how="anti")
    kept = pl.concat([outcomes.filter(~is_death), first.drop("_order")], how="diagonal_relaxed")
    return kept, skipped_counts(repeats, table="outcomes", rule="same_death_twice", family="death")


def _empty_outcomes(time_type: pl.DataType) -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "encounter_id": pl.String,
            "event_time": time_type,
            "event_type": pl.String,
            SOURCE_FILE: pl.String,
            SOURCE_LINE: pl.Int64,
        }
    )


def add_up_parts(
    observations: pl.DataFrame, parts: dict[str, tuple[str, ...]], *, keys: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Add up scores charted in parts: (rows without parts + one row per complete sum,
    REJECTED rows for parts whose value is not a number, SKIPPED counts of incomplete sums).

    observations: the keys (e.g. `_subject`, `encounter_id`, `charttime`), `variable`,
    `_part` (null for ordinary rows), `value` (text or number), `unit`, `source` and the
    provenance. A sum is made where every part of the variable was recorded under the same
    keys; it takes the provenance of its first part and the unit "{score}".
    """
    if "_part" not in observations.columns or observations["_part"].is_null().all():
        return observations.drop("_part", strict=False), empty_rejected(), empty_skipped()
    plain = observations.filter(pl.col("_part").is_null()).drop("_part")
    parted = observations.filter(pl.col("_part").is_not_null()).with_columns(
        pl.col("value").cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias("_number")
    )
    not_number = parted.filter(pl.col("_number").is_null())
    rejected = rejected_rows(
        not_number, table="observations", rule="unparseable_value",
        detail=pl.format("value is not a number (the {} part of '{}')", pl.col("_part"), pl.col("variable")),
        record=["encounter_id", "charttime", "variable", "_part", "value"],
    )
    numbers = parted.filter(pl.col("_number").is_not_null()).sort(SOURCE_FILE, SOURCE_LINE)
    group = [*keys, "variable"]
    grouped = numbers.group_by(group, maintain_order=True).agg(
        pl.col("_number").sum().alias("_total"),
        pl.col("_part").n_unique().alias("_n_parts"),
        pl.col("_part").len().alias("_n_rows"),
        pl.col("source").first(),
        pl.col(SOURCE_FILE).first(),
        pl.col(SOURCE_LINE).first(),
    )
    needed = pl.col("variable").replace_strict({v: len(p) for v, p in parts.items()}, default=0, return_dtype=pl.UInt32)
    complete = (pl.col("_n_parts") == needed) & (pl.col("_n_rows") == needed)
    sums = grouped.filter(complete).select(
        *group, "source", SOURCE_FILE, SOURCE_LINE, pl.col("_total").alias("value"), pl.lit("{score}").alias("unit")
    )
    incomplete = grouped.filter(~complete)
    skipped = skipped_counts(incomplete, table="observations", rule="incomplete_sum", family=pl.col("variable"))
    combined = pl.concat([plain, sums], how="diagonal_relaxed") if sums.height else plain
    return combined, rejected, skipped
