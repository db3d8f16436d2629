"""Validate a source frame against its table contract: valid rows and quarantined rows.

A source frame has the contract's columns (as strings or already typed) plus two
provenance columns, `_source_file` and `_source_line`. Every input row comes out exactly
once: either typed and normalised in `valid`, or in `quarantined` with the first rule it
broke, a detail a person can act on (never the patient's value), and the raw row as JSON.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import polars as pl

from riskcast.catalog import Catalog, TableContract, load_catalog, load_contract
from riskcast.errors import ContractError

SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
_RULE = "_rule"
_DETAIL = "_detail"

QUARANTINE_SCHEMA = {
    "table": pl.String,
    "source_file": pl.String,
    "source_line": pl.Int64,
    "rule": pl.String,
    "detail": pl.String,
    "record": pl.String,
}

UTC_DATETIME = pl.Datetime("us", "UTC")
_OFFSET_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z")
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
_EXACT_INTEGER = 2**53  # the largest whole number a float holds exactly


@dataclass(frozen=True)
class Validated:
    """The outcome of validating one table: rows that go on and rows held back."""

    table: str
    valid: pl.DataFrame
    quarantined: pl.DataFrame
    first_keys: pl.DataFrame | None = None
    """Observations validated with `earlier_keys` only: the key (encounter_id, charttime,
    variable) of each row first seen in the batch (it broke no rule but, maybe, repeating the
    lake's rows), for the `earlier_keys` of the batch's next part."""

    @property
    def counts_by_rule(self) -> dict[str, int]:
        """How many rows each rule quarantined."""
        return dict(Counter(self.quarantined["rule"].to_list()))


def empty_quarantine() -> pl.DataFrame:
    """A quarantine frame with no rows."""
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def parse_datetime(column: pl.Expr, *, source_timezone: str = "UTC") -> pl.Expr:
    """ISO 8601 text -> UTC datetime; a time without an offset is read in source_timezone.

    Accepts 'T' or a space between date and time, fractional seconds, 'Z' and +hh:mm
    offsets. Text that does not parse becomes null (the caller quarantines it). A local
    time that does not exist (skipped by a DST change) is null too; an ambiguous one (the
    repeated hour) is read as the earlier instant.
    """
    return _parse_datetime(column, source_timezone)[0]


def _parse_datetime(column: pl.Expr, source_timezone: str) -> tuple[pl.Expr, pl.Expr]:
    """(UTC datetime or null, True where the text is a local time that does not exist in source_timezone)."""
    text = (
        column.cast(pl.String)
        .str.strip_chars()
        .str.replace(" ", "T")
        .str.replace(r"Z$", "+00:00")
        .str.replace(r"([+-]\d{2}):(\d{2})$", "${1}${2}")
    )
    with_offset = pl.coalesce(
        [text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in _OFFSET_FORMATS]
    )
    naive = pl.coalesce([text.str.to_datetime(f, strict=False, time_unit="us") for f in _NAIVE_FORMATS])
    local = local_to_utc(naive, source_timezone)
    nonexistent = with_offset.is_null() & naive.is_not_null() & local.is_null()
    return pl.coalesce([with_offset, local]), nonexistent


_TZ_TABLE_LAST_YEAR = 2037
"""polars (chrono-tz) knows daylight saving only this far ahead; later local times are converted
with Python's zoneinfo, which follows the zone's rule for ever. Research datasets shift dates
far into the future (MIMIC-IV: 2110-2202), so this matters for them."""


def local_to_utc(column: pl.Expr, source_timezone: str) -> pl.Expr:
    """Naive local datetimes in source_timezone -> UTC; ambiguous times (the repeated hour) are
    read as the earlier instant, times skipped by a DST change are null."""
    fast = column.dt.replace_time_zone(source_timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
    if source_timezone == "UTC":
        return fast
    far = column.map_batches(lambda s: _zoneinfo_to_utc(s, source_timezone), return_dtype=UTC_DATETIME)
    return pl.when(column.dt.year() > _TZ_TABLE_LAST_YEAR).then(far).otherwise(fast)


def _zoneinfo_to_utc(series: pl.Series, source_timezone: str) -> pl.Series:
    """Far-future local times -> UTC with zoneinfo, once per distinct minute (a column of nulls elsewhere)."""
    from datetime import timezone
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(source_timezone)
    far = series.filter(series.dt.year() > _TZ_TABLE_LAST_YEAR).dt.truncate("1m").unique().drop_nulls()
    offsets = {}
    for local in far.to_list():
        aware = local.replace(tzinfo=zone, fold=0)
        utc = aware.astimezone(timezone.utc)
        exists = utc.astimezone(zone).replace(tzinfo=None) == local
        offsets[local] = aware.utcoffset().total_seconds() if exists and aware.utcoffset() is not None else None
    if not offsets:
        return pl.Series(series.name, [None] * series.len(), dtype=UTC_DATETIME)
    table = pl.DataFrame(
        {"minute": list(offsets), "offset": list(offsets.values())},
        schema={"minute": series.dtype, "offset": pl.Float64},
    )
    frame = pl.DataFrame({"local": series}).with_columns(pl.col("local").dt.truncate("1m").alias("minute"))
    joined = frame.join(table, on="minute", how="left", maintain_order="left")
    utc = joined.select(
        (pl.col("local") - pl.duration(seconds=pl.col("offset"))).dt.replace_time_zone("UTC").dt.cast_time_unit("us")
    ).to_series()
    return utc.alias(series.name)


def _typed_datetime(frame: pl.DataFrame, name: str, source_timezone: str) -> tuple[pl.Expr, pl.Expr]:
    """A column as UTC datetimes, and True where a local time does not exist in source_timezone."""
    dtype = frame.schema[name]
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            return column.dt.convert_time_zone("UTC").dt.cast_time_unit("us"), pl.lit(False)
        local = local_to_utc(column.dt.cast_time_unit("us"), source_timezone)
        return local, column.is_not_null() & local.is_null()
    if dtype == pl.Date:
        local = local_to_utc(column.cast(pl.Datetime("us")), source_timezone)
        return local, column.is_not_null() & local.is_null()
    return _parse_datetime(column, source_timezone)


def _text(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A column as stripped text with empty strings as null."""
    text = pl.col(name).cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _first_rule(checks: list[tuple[pl.Expr, str, pl.Expr | str]]) -> tuple[pl.Expr, pl.Expr]:
    """The first (condition, rule, detail) that holds for each row, as two expressions."""
    rule: pl.Expr = pl.lit(None, dtype=pl.String)
    detail: pl.Expr = pl.lit(None, dtype=pl.String)
    for condition, name, text in reversed(checks):
        text_expr = pl.lit(text) if isinstance(text, str) else text
        rule = pl.when(condition.fill_null(False)).then(pl.lit(name)).otherwise(rule)
        detail = pl.when(condition.fill_null(False)).then(text_expr).otherwise(detail)
    return rule, detail


def _check_columns(frame: pl.DataFrame, contract: TableContract, source: str) -> None:
    missing = [c for c in contract.required if c not in frame.columns]
    if missing:
        raise ContractError(
            f"{source}: table {contract.table!r} is missing required column(s) {', '.join(missing)}; "
            f"expected columns: {', '.join(contract.column_names)}"
        )
    for name in (SOURCE_FILE, SOURCE_LINE):
        if name not in frame.columns:
            raise ContractError(f"{source}: internal: adapter did not attach provenance column {name!r}")


def require_columns(frame: pl.DataFrame, table: str, *, source: str) -> None:
    """Raise ContractError naming `source` (a file) when `frame` lacks a required column of `table`.

    Ingest calls this for each file before files of one table are combined, so the message
    names the file that lacks the column.
    """
    _check_columns(frame, load_contract(table), source)


def _generic_checks(
    frame: pl.DataFrame, contract: TableContract, source_timezone: str, now: datetime | None = None
) -> tuple[dict[str, pl.Expr], list[tuple[pl.Expr, str, pl.Expr | str]]]:
    """The columns to stage and the checks shared by all tables, over those staged columns.

    Staged: `__typed_<name>` for every contract column, and the helpers the checks read
    (`__raw_`, `__number_`, `__nonexistent_<name>`), each computed once when staged; the checks
    only read staged columns, so no parse runs twice. Numbers that are not finite (NaN, inf)
    do not parse; an integer column takes whole numbers only (1950.7 is not a birth year).
    With `now`, a time later than `now` plus the contract's `future_tolerance_minutes` is in
    the future.
    """
    staged: dict[str, pl.Expr] = {}
    missing_checks: list[tuple[pl.Expr, str, pl.Expr | str]] = []
    parse_checks: list[tuple[pl.Expr, str, pl.Expr | str]] = []
    value_checks: list[tuple[pl.Expr, str, pl.Expr | str]] = []
    latest = _latest_allowed(contract, now)
    for column in contract.columns:
        name = column.name
        typed = pl.col(f"__typed_{name}")
        if name not in frame.columns:
            staged[f"__typed_{name}"] = pl.lit(None, dtype=_polars_type(column.type))
            continue
        staged[f"__raw_{name}"] = _text(frame, name)
        raw = pl.col(f"__raw_{name}")
        checked = typed
        if column.type == "string":
            value = _text(frame, name)
            staged[f"__typed_{name}"] = value.replace(column.aliases) if column.aliases else value
        elif column.type == "datetime":
            value, nonexistent = _typed_datetime(frame, name, source_timezone)
            staged[f"__typed_{name}"] = value
            staged[f"__nonexistent_{name}"] = nonexistent
            parse_checks += [
                (
                    pl.col(f"__nonexistent_{name}"),
                    "nonexistent_time",
                    f"{name} does not exist in {source_timezone} (the clocks skipped it); give an offset or a "
                    "time that exists",
                ),
                (raw.is_not_null() & typed.is_null(), "unparseable_time", f"{name} is not an ISO 8601 time"),
            ]
            if latest is not None:
                value_checks.append((typed > latest, "in_the_future", f"{name} is later than the time of ingest"))
        elif column.type in ("float", "integer"):
            source = _text(frame, name) if frame.schema[name] == pl.String else pl.col(name)
            number = source.cast(pl.Float64, strict=False)
            staged[f"__number_{name}"] = pl.when(number.is_finite()).then(number)  # NaN, inf -> null
            finite = pl.col(f"__number_{name}")
            if name != "value":  # observations' value is parsed with the catalogue's codes
                parse_checks.append((raw.is_not_null() & finite.is_null(), "unparseable_value", f"{name} is not a number"))
            if column.type == "integer":
                whole = number.is_finite() & (number == number.floor())
                # Masked before the cast, so that 1e20 or NaN never reach it.
                staged[f"__typed_{name}"] = pl.when(whole & (number.abs() <= _EXACT_INTEGER)).then(number).cast(pl.Int64)
                parse_checks.append(
                    (finite.is_not_null() & (finite != finite.floor()), "unparseable_value", f"{name} is not a whole number")
                )
            else:
                staged[f"__typed_{name}"] = pl.when(number.is_finite()).then(number)
            checked = finite  # ranges are checked on the number, before any cast
        else:
            raise ContractError(f"schemas/{contract.table}.yaml: column {name!r} has unknown type {column.type!r}")
        if column.required:
            missing_checks.append((raw.is_null(), "missing_required", f"{name} is empty"))
        if column.allowed:
            value_checks.append(
                (
                    typed.is_not_null() & ~typed.is_in(list(column.allowed)),
                    "not_allowed",
                    f"{name} must be one of {', '.join(column.allowed)}",
                )
            )
        if column.value_range is not None:
            low, high = column.value_range
            value_checks.append(
                (
                    checked.is_not_null() & ((checked < low) | (checked > high)),
                    "out_of_range",
                    f"{name} is outside {low}–{high}",
                )
            )
    return staged, missing_checks + parse_checks + value_checks


def _latest_allowed(contract: TableContract, now: datetime | None) -> pl.Expr | None:
    """The latest time a row of this table may carry: now plus the contract's tolerance."""
    tolerance = contract.extra.get("future_tolerance_minutes")
    if now is None or tolerance is None:
        return None
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    return pl.lit((now + timedelta(minutes=float(tolerance))).astimezone(timezone.utc), dtype=UTC_DATETIME)


def _polars_type(kind: str) -> pl.DataType:
    return {"string": pl.String(), "float": pl.Float64(), "integer": pl.Int64(), "datetime": UTC_DATETIME}[kind]


def _split(
    frame: pl.DataFrame, table: str, typed_columns: list[str], extra_columns: list[str] | None = None
) -> Validated:
    """Split a frame with _rule/_detail columns into valid and quarantined parts."""
    valid = frame.filter(pl.col(_RULE).is_null()).select(
        [pl.col(f"__typed_{c}").alias(c) for c in typed_columns]
        + [pl.col(c) for c in (extra_columns or [])]
        + [pl.col(SOURCE_FILE).alias("source_file"), pl.col(SOURCE_LINE).cast(pl.Int64).alias("source_line")]
    )
    bad = frame.filter(pl.col(_RULE).is_not_null())
    # The raw row as it came, contract columns only: a column outside the contract (a name,
    # a record number) is never kept, here or in the lake.
    raw_columns = [c for c in typed_columns if c in bad.columns]
    quarantined = bad.select(
        pl.lit(table).alias("table"),
        pl.col(SOURCE_FILE).cast(pl.String).alias("source_file"),
        pl.col(SOURCE_LINE).cast(pl.Int64).alias("source_line"),
        pl.col(_RULE).alias("rule"),
        pl.col(_DETAIL).alias("detail"),
        pl.struct([pl.col(c).cast(pl.String) for c in raw_columns]).struct.json_encode().alias("record")
        if raw_columns
        else pl.lit("{}").alias("record"),
    )
    return Validated(table=table, valid=valid, quarantined=quarantined)


def _with_typed(frame: pl.DataFrame, staged: dict[str, pl.Expr]) -> pl.DataFrame:
    """The frame with the staged columns of _generic_checks added (typed values and helpers)."""
    return frame.with_columns([expr.alias(name) for name, expr in staged.items()])


def _key_duplicate(key: list[str], *, keep: str) -> pl.Expr:
    """True for rows whose key repeats an earlier (keep='first') or later (keep='last') row."""
    typed_key = [f"__typed_{k}" for k in key]
    if keep == "first":
        return ~pl.struct(typed_key).is_first_distinct()
    return ~pl.struct(typed_key).is_last_distinct()


def validate_patients(frame: pl.DataFrame, *, source: str = "patients") -> Validated:
    """Validate a patients frame. Within one batch the last row for a patient wins."""
    contract = load_contract("patients")
    _check_columns(frame, contract, source)
    typed, checks = _generic_checks(frame, contract, "UTC")
    staged = _with_typed(frame, typed)
    rule, detail = _first_rule(checks)
    staged = staged.with_columns(rule.alias(_RULE), detail.alias(_DETAIL))
    staged = _mark_duplicates(staged, list(contract.key), keep="last", detail="patient_id appears again later in this batch")
    return _split(staged, "patients", contract.column_names)


def validate_encounters(
    frame: pl.DataFrame,
    *,
    source: str = "encounters",
    source_timezone: str = "UTC",
    now: datetime | None = None,
    known_patients: pl.DataFrame | None = None,
    accepted_observations: pl.DataFrame | None = None,
) -> Validated:
    """Validate an encounters frame. Within one batch the last row for an encounter wins.

    now: the time of ingest (UTC-aware); admissions and discharges later than it (plus the
        contract's tolerance) are quarantined. None skips the check.
    known_patients: patient_id of every known patient (this batch's and the lake's); an
        encounter of another patient is quarantined. None skips the check.
    accepted_observations: encounter_id, first_charttime, last_charttime of the observations
        already in the lake; a corrected encounter whose window would leave them outside it is
        quarantined (the lake keeps what it accepted, so the correction is held back instead).
    """
    contract = load_contract("encounters")
    _check_columns(frame, contract, source)
    typed, checks = _generic_checks(frame, contract, source_timezone, now)
    checks.append(
        (
            pl.col("__typed_discharge_time").is_not_null()
            & (pl.col("__typed_discharge_time") < pl.col("__typed_admit_time")),
            "discharge_before_admit",
            "discharge_time is before admit_time",
        )
    )
    staged = _with_typed(frame, typed)
    if known_patients is not None:
        known = known_patients.select(pl.col("patient_id").cast(pl.String).unique(), pl.lit(True).alias("__known_patient"))
        staged = staged.join(known, left_on="__typed_patient_id", right_on="patient_id", how="left", maintain_order="left")
        checks.append((pl.col("__known_patient").is_null(), "unknown_patient", "patient_id is not in the patients table"))
    if accepted_observations is not None:
        before, after = _window(load_contract("observations"))
        spans = accepted_observations.select(
            pl.col("encounter_id").alias("__typed_encounter_id"),
            pl.col("first_charttime").alias("__first_charttime"),
            pl.col("last_charttime").alias("__last_charttime"),
        ).unique("__typed_encounter_id", keep="last")
        staged = staged.join(spans, on="__typed_encounter_id", how="left", maintain_order="left")
        discharge = pl.col("__typed_discharge_time")
        checks.append(
            (
                (pl.col("__first_charttime") < pl.col("__typed_admit_time") - before)
                | (discharge.is_not_null() & (pl.col("__last_charttime") > discharge + after)),
                "leaves_observations_outside",
                "the corrected admit_time or discharge_time would leave observations already accepted outside the "
                "encounter's window; correct those observations, or send times that cover them",
            )
        )
    rule, detail = _first_rule(checks)
    staged = staged.with_columns(rule.alias(_RULE), detail.alias(_DETAIL))
    staged = staged.drop("__known_patient", "__first_charttime", "__last_charttime", strict=False)
    staged = _mark_duplicates(staged, list(contract.key), keep="last", detail="encounter_id appears again later in this batch")
    return _split(staged, "encounters", contract.column_names)


def _window(contract: TableContract) -> tuple[pl.Expr, pl.Expr]:
    """How long before admission and after discharge a table's times may lie (its `window`)."""
    window = contract.extra.get("window", {})
    return (
        pl.duration(hours=float(window.get("before_admit_hours", 0))),
        pl.duration(hours=float(window.get("after_discharge_hours", 0))),
    )


def validate_outcomes(
    frame: pl.DataFrame,
    *,
    known_encounters: pl.DataFrame | None = None,
    source: str = "outcomes",
    source_timezone: str = "UTC",
    now: datetime | None = None,
) -> Validated:
    """Validate an outcomes frame; events of encounters we do not know are quarantined.

    known_encounters: encounter_id of every known encounter, and, when it has admit_time and
        discharge_time, events outside the encounter's window (schemas/outcomes.yaml) are
        quarantined too. now: the time of ingest; later events are quarantined.
    """
    contract = load_contract("outcomes")
    _check_columns(frame, contract, source)
    typed, checks = _generic_checks(frame, contract, source_timezone, now)
    staged = _with_typed(frame, typed)
    if known_encounters is not None:
        with_window = {"admit_time", "discharge_time"} <= set(known_encounters.columns)
        known = known_encounters.select(
            pl.col("encounter_id").alias("__typed_encounter_id"),
            *([pl.col("admit_time").alias("__admit"), pl.col("discharge_time").alias("__discharge")] if with_window else []),
            pl.lit(True).alias("__known"),
        ).unique("__typed_encounter_id", keep="last")
        staged = staged.join(known, on="__typed_encounter_id", how="left", maintain_order="left")
        checks.append((pl.col("__known").is_null(), "unknown_encounter", "encounter_id is not in the encounters table"))
        if with_window:
            before, after = _window(contract)
            event_time = pl.col("__typed_event_time")
            checks.append(
                (
                    (event_time < pl.col("__admit") - before)
                    | (pl.col("__discharge").is_not_null() & (event_time > pl.col("__discharge") + after)),
                    "outside_encounter",
                    "event_time is outside the encounter's admission window",
                )
            )
    rule, detail = _first_rule(checks)
    staged = staged.with_columns(rule.alias(_RULE), detail.alias(_DETAIL))
    staged = _mark_duplicates(staged, list(contract.key), keep="first", detail="the same event appears earlier in this batch")
    return _split(staged.drop("__known", "__admit", "__discharge", strict=False), "outcomes", contract.column_names)


def _mark_duplicates(staged: pl.DataFrame, key: list[str], *, keep: str, detail: str) -> pl.DataFrame:
    """Among rows that passed every other rule, quarantine repeats of the key."""
    staged = staged.with_row_index("__dup_order")
    repeated = staged.filter(pl.col(_RULE).is_null()).filter(_key_duplicate(key, keep=keep))["__dup_order"]
    if repeated.len() == 0:
        return staged.drop("__dup_order")
    is_repeat = pl.col("__dup_order").is_in(repeated.implode())
    return staged.with_columns(
        pl.when(is_repeat).then(pl.lit("duplicate")).otherwise(pl.col(_RULE)).alias(_RULE),
        pl.when(is_repeat).then(pl.lit(detail)).otherwise(pl.col(_DETAIL)).alias(_DETAIL),
    ).drop("__dup_order")


def _known_units(catalog: Catalog) -> set[str]:
    """Every unit spelling the catalogue knows (canonical units, conversions, aliases): safe to name."""
    units = {v.unit for v in catalog.variables.values()}
    units |= {unit for v in catalog.variables.values() for unit in v.conversions}
    return units | set(catalog.unit_aliases) | set(catalog.unit_aliases.values())


def _variable_frames(catalog: Catalog) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Lookup tables from the catalogue: codes->name, (name, unit)->conversion, ranges, ordinal codes."""
    codes = pl.DataFrame(
        {"__code": list(catalog.by_code), "__variable": list(catalog.by_code.values())},
        schema={"__code": pl.String, "__variable": pl.String},
    )
    rows = []
    for v in catalog.variables.values():
        rows.append((v.name, v.unit, 1.0, 0.0))
        rows.extend((v.name, unit, c.scale, c.offset) for unit, c in v.conversions.items())
    conversions = pl.DataFrame(
        rows, schema={"__variable": pl.String, "__unit": pl.String, "__scale": pl.Float64, "__offset": pl.Float64}, orient="row"
    )
    ranges = pl.DataFrame(
        {
            "__variable": [v.name for v in catalog.variables.values()],
            "__min": [v.plausible_min for v in catalog.variables.values()],
            "__max": [v.plausible_max for v in catalog.variables.values()],
            "__canonical_unit": [v.unit for v in catalog.variables.values()],
            "__unit_matters": [v.unit_matters for v in catalog.variables.values()],
            "__expected_units": [
                " or ".join([v.unit, *v.conversions]) for v in catalog.variables.values()
            ],
        }
    )
    ordinal = pl.DataFrame(
        [(v.name, code, value) for v in catalog.variables.values() for code, value in v.codes.items()],
        schema={"__variable": pl.String, "__value_text": pl.String, "__code_value": pl.Float64},
        orient="row",
    )
    return codes, conversions, ranges, ordinal


def validate_observations(
    frame: pl.DataFrame,
    *,
    encounters: pl.DataFrame | None = None,
    existing_keys: pl.DataFrame | None = None,
    earlier_keys: pl.DataFrame | None = None,
    catalog: Catalog | None = None,
    source: str = "observations",
    source_timezone: str = "UTC",
    now: datetime | None = None,
) -> Validated:
    """Validate observations: map names/LOINC codes and units to the catalogue, check ranges.

    encounters: encounter_id, admit_time, discharge_time of every known encounter (this
        batch's and the lake's); observations of other encounters are quarantined. None skips
        the encounter checks (for a frame validated on its own).
    existing_keys: encounter_id, charttime, variable already in the lake; repeats are
        quarantined as duplicates.
    earlier_keys: for a batch validated in parts, in order: the `first_keys` of its earlier
        parts (encounter_id, charttime, variable); repeats of them are duplicates within the
        batch, as if the parts were one frame. The result then carries this part's `first_keys`.
    now: the time of ingest (UTC-aware); later charttimes (plus the contract's tolerance) are
        quarantined as in the future. None skips the check.
    Valid rows carry the canonical variable name and the value in the canonical unit.
    """
    catalog = catalog or load_catalog()
    contract = load_contract("observations")
    _check_columns(frame, contract, source)
    typed, checks = _generic_checks(frame, contract, source_timezone, now)
    codes, conversions, ranges, ordinal = _variable_frames(catalog)

    staged = _with_typed(frame, typed).with_columns(pl.int_range(pl.len()).alias("__order"))
    staged = staged.with_columns(
        _text(frame, "unit").replace(catalog.unit_aliases).alias("__unit_given")
        if "unit" in frame.columns
        else pl.lit(None, dtype=pl.String).alias("__unit_given"),
        _text(frame, "value").alias("__value_text"),
    )
    staged = (
        staged.join(codes, left_on="__typed_variable", right_on="__code", how="left", maintain_order="left")
        .join(ranges, on="__variable", how="left", maintain_order="left")
        .join(ordinal, on=["__variable", "__value_text"], how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("__unit_given").is_null() & ~pl.col("__unit_matters").fill_null(True))
            .then(pl.col("__canonical_unit"))
            .otherwise(pl.col("__unit_given"))
            .alias("__unit")
        )
        .join(conversions, on=["__variable", "__unit"], how="left", maintain_order="left")
    )
    staged = staged.with_columns(pl.col("__unit_given").is_in(list(_known_units(catalog))).alias("__unit_known"))
    value = pl.coalesce(pl.col("__code_value"), pl.col("__typed_value"))
    canonical_value = value * pl.col("__scale") + pl.col("__offset")
    staged = staged.with_columns(canonical_value.alias("__canonical_value"))
    checks += [
        # The variable first: whether a value parses depends on it (ACVPU letters).
        # Text from the file is never repeated in a detail; names from the catalogue are.
        (pl.col("__variable").is_null(), "unknown_variable", "variable is neither a catalogue name nor one of its LOINC codes"),
        (pl.col("__value_text").is_not_null() & value.is_null(), "unparseable_value", "value is not a number"),
        (pl.col("__unit").is_null(), "missing_unit", pl.format("unit is empty for variable '{}' (expected {})", pl.col("__variable"), pl.col("__expected_units"))),
        (
            pl.col("__scale").is_null(),
            "unknown_unit",
            pl.when(pl.col("__unit_known"))
            .then(pl.format("unit '{}' is not valid for variable '{}' (expected {})", pl.col("__unit_given"), pl.col("__variable"), pl.col("__expected_units")))
            .otherwise(pl.format("unit is not a unit riskcast knows for variable '{}' (expected {})", pl.col("__variable"), pl.col("__expected_units"))),
        ),
        (
            (pl.col("__canonical_value") < pl.col("__min")) | (pl.col("__canonical_value") > pl.col("__max")),
            "out_of_range",
            pl.format("value outside the plausible range {}–{} {} for '{}'", pl.col("__min"), pl.col("__max"), pl.col("__canonical_unit"), pl.col("__variable")),
        ),
    ]
    if encounters is not None:
        before, after = _window(contract)
        known = encounters.select(
            pl.col("encounter_id").alias("__typed_encounter_id"),
            pl.col("admit_time").alias("__admit"),
            pl.col("discharge_time").alias("__discharge"),
            pl.lit(True).alias("__known"),
        ).unique("__typed_encounter_id", keep="last")
        staged = staged.join(known, on="__typed_encounter_id", how="left", maintain_order="left")
        charttime = pl.col("__typed_charttime")
        checks += [
            (pl.col("__known").is_null(), "unknown_encounter", "encounter_id is not in the encounters table"),
            (
                (charttime < pl.col("__admit") - before)
                | (pl.col("__discharge").is_not_null() & (charttime > pl.col("__discharge") + after)),
                "outside_encounter",
                "charttime is outside the encounter's admission window",
            ),
        ]
    rule, detail = _first_rule(checks)
    staged = staged.with_columns(rule.alias(_RULE), detail.alias(_DETAIL))
    staged = staged.with_columns(
        pl.col("__variable").alias("__typed_variable"),
        pl.col("__canonical_value").alias("__typed_value"),
        pl.col("__canonical_unit").alias("__typed_unit"),
    )
    in_batch_detail = "the same encounter, charttime and variable appears earlier in this batch"
    typed_key = ["__typed_encounter_id", "__typed_charttime", "__typed_variable"]
    if earlier_keys is not None and earlier_keys.height:
        earlier = earlier_keys.select(
            pl.col("encounter_id").cast(pl.String).alias("__typed_encounter_id"),
            pl.col("charttime").cast(UTC_DATETIME).alias("__typed_charttime"),
            pl.col("variable").cast(pl.String).alias("__typed_variable"),
            pl.lit(True).alias("__earlier"),
        ).unique(typed_key)
        staged = staged.join(earlier, on=typed_key, how="left", maintain_order="left")
        repeat = pl.col(_RULE).is_null() & pl.col("__earlier").fill_null(False)
        staged = staged.with_columns(
            pl.when(repeat).then(pl.lit("duplicate")).otherwise(pl.col(_RULE)).alias(_RULE),
            pl.when(repeat).then(pl.lit(in_batch_detail)).otherwise(pl.col(_DETAIL)).alias(_DETAIL),
        )
    staged = _mark_duplicates(staged, list(contract.key), keep="first", detail=in_batch_detail)
    first_keys = None
    if earlier_keys is not None:
        first_keys = staged.filter(pl.col(_RULE).is_null()).select(
            pl.col("__typed_encounter_id").alias("encounter_id"),
            pl.col("__typed_charttime").alias("charttime"),
            pl.col("__typed_variable").alias("variable"),
        )
    if existing_keys is not None and existing_keys.height:
        seen = existing_keys.select(
            pl.col("encounter_id").alias("__typed_encounter_id"),
            pl.col("charttime").alias("__typed_charttime"),
            pl.col("variable").alias("__typed_variable"),
            pl.lit(True).alias("__seen"),
        ).unique()
        staged = staged.join(
            seen, on=["__typed_encounter_id", "__typed_charttime", "__typed_variable"], how="left", maintain_order="left"
        )
        repeat = pl.col(_RULE).is_null() & pl.col("__seen").fill_null(False)
        staged = staged.with_columns(
            pl.when(repeat).then(pl.lit("duplicate")).otherwise(pl.col(_RULE)).alias(_RULE),
            pl.when(repeat).then(pl.lit("already in the lake from an earlier batch")).otherwise(pl.col(_DETAIL)).alias(_DETAIL),
        )
    staged = staged.sort("__order")
    helper_columns = [c for c in staged.columns if c.startswith("__") and not c.startswith("__typed_")]
    validated = _split(staged.drop(helper_columns), "observations", contract.column_names)
    return validated if first_keys is None else replace(validated, first_keys=first_keys)


def validate(
    table: str,
    frame: pl.DataFrame,
    *,
    encounters: pl.DataFrame | None = None,
    existing_keys: pl.DataFrame | None = None,
    source: str | None = None,
    source_timezone: str = "UTC",
    now: datetime | None = None,
) -> Validated:
    """Validate one canonical table's frame (see the table-specific functions)."""
    ZoneInfo(source_timezone)
    source = source or table
    if table == "patients":
        return validate_patients(frame, source=source)
    if table == "encounters":
        return validate_encounters(frame, source=source, source_timezone=source_timezone, now=now)
    if table == "outcomes":
        return validate_outcomes(
            frame, known_encounters=encounters, source=source, source_timezone=source_timezone, now=now
        )
    if table == "observations":
        return validate_observations(
            frame, encounters=encounters, existing_keys=existing_keys, source=source, source_timezone=source_timezone,
            now=now,
        )
    raise ContractError(f"unknown table {table!r}; the canonical tables are patients, encounters, observations, outcomes")
