"""The MEDS adapter: a Medical Event Data Standard dataset as riskcast source frames.

A MEDS root holds `data/**/*.parquet` (one event per row: `subject_id`, `time`, `code`,
`numeric_value`, `text_value` and any extra columns, such as MIMIC-IV's `hadm_id`,
`icustay_id` and `race`) and `metadata/` (`dataset.json`, `codes.parquet` with each code's
description and `parent_codes`). Shards are read one at a time (MEDS keeps each subject in
one shard), so memory is bounded by the largest shard, not the dataset.

What is read (codes as MEDS-transforms writes them for MIMIC-IV, and as `riskcast export
--format meds` writes them):
- patients: one per subject; sex from `GENDER//F|M|…`, birth_year from `MEDS_BIRTH`, age
  from `AGE` (riskcast's export, for sources that give age only), race/ethnicity from a
  `race` column or `RACE//…`, site from a `site` column, else --site, else the dataset name.
  `patient_id` is a `patient_id` column where there is one (riskcast's export), else the
  subject_id.
- encounters (`encounters="hospital"`, the default): one per `encounter_id` or `hadm_id`
  value, admitted at `HOSPITAL_ADMISSION…` and discharged at `HOSPITAL_DISCHARGE…`; the ward
  is the last `TRANSFER_TO//<kind>//<ward>` before discharge. With `encounters="icu"`: one
  per `icustay_id`/`stay_id`, from `ICU_ADMISSION//<unit>` (the ward) to `ICU_DISCHARGE`.
- outcomes: `death` from `MEDS_DEATH` and `HOSPITAL_DISCHARGE//DIED` (one per stay, the
  earliest); `icu_transfer` at each `ICU_ADMISSION` of a hospital stay; `OUTCOME//<type>`
  (riskcast's export) for the other types.
- observations: codes whose `parent_codes` hold a LOINC code of the catalogue, codes a
  mapping file knows (schemas/mappings/, e.g. MIMIC-IV item ids in `LAB//<itemid>//<unit>`),
  and riskcast's own `VITAL//<name>`/`LAB//<name>`. The unit is the `unit` column, else the
  unit in the code, else the mapping file's; placeholders like `UNK` count as none. GCS
  charted in parts is added up (eye + verbal + motor at the same time). `numeric_value` is
  float32 in MEDS: it is read back through its shortest decimal form, so 98.4 stays 98.4.
  An event without a numeric value offers its `text_value`, which the contract then judges.
  Events that name no stay are attached to the subject's stay that holds their time.

Times are naive in MEDS: the contract reads them in the site's time zone (for MIMIC-IV,
America/New_York; set RISKCAST_SOURCE_TIMEZONE).

Skipped, counted, not quarantined: codes that are not measurements riskcast uses
(diagnoses, procedures, medications, unmapped labs: rule `unmapped_code`, by the code's
prefix), measurements that fall in no stay (`outside_stays`, by variable), deaths outside
any stay and a death recorded twice. Quarantined (by the contract, or here when only the
adapter can tell): measurements that map but fail — no value, a unit the catalogue does not
know, out of range, a stay that does not exist — with the shard and row number (rows count
from 1) as file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from riskcast.catalog import load_catalog
from riskcast.contracts import SOURCE_FILE, SOURCE_LINE
from riskcast.errors import IngestError
from riskcast.ingest.mapping import (
    SourceMapping,
    loinc_variable,
    mappings_for_meds,
    parts_of_sums,
    placeholder_units,
    usable_unit,
)
from riskcast.ingest.rejects import REJECTED, SKIPPED, combine, skipped_counts
from riskcast.ingest.stays import (
    add_up_parts,
    attach_to_stays,
    deaths_in_stays,
    last_ward,
    observation_window_hours,
    one_death_per_stay,
)

FORMAT = "meds"
REQUIRED_COLUMNS = ("subject_id", "time", "code")
HOSPITAL_ID_COLUMNS = ("encounter_id", "hadm_id")
ICU_ID_COLUMNS = ("icustay_id", "stay_id")
EXTRA_COLUMNS = ("numeric_value", "text_value", "unit", "race", "site", "patient_id")
_OUTCOME_PREFIX = "OUTCOME//"


@dataclass(frozen=True)
class _Codes:
    """What each distinct code of a dataset means to riskcast."""

    table: pl.DataFrame  # code, variable, _part, _code_unit, _default_unit
    mappings: list[SourceMapping]

    @property
    def placeholders(self) -> list[str]:
        return placeholder_units(self.mappings)


def looks_like_meds(path: Path) -> bool:
    """True for a folder with `data/` holding Parquet shards and a MEDS `metadata/` (or shards
    whose columns are MEDS's subject_id, time and code)."""
    path = Path(path)
    data = path / "data"
    if not path.is_dir() or not data.is_dir():
        return False
    shards = _shards(path)
    if not shards:
        return False
    if (path / "metadata" / "dataset.json").is_file() or (path / "metadata" / "codes.parquet").is_file():
        return True
    try:
        return set(REQUIRED_COLUMNS) <= set(pl.read_parquet_schema(shards[0]))
    except (OSError, pl.exceptions.PolarsError):
        return False


def read_meds(
    root: Path, *, site: str | None = None, encounters: str = "hospital", mappings: list[SourceMapping] | None = None
) -> dict[str, pl.DataFrame]:
    """Read a MEDS root into source frames (see the module docstring).

    Returns patients, encounters, observations and outcomes frames with the provenance
    columns, plus REJECTED (quarantine rows the adapter judged) and SKIPPED (counts).
    Raises IngestError when the root has no shard or a shard lacks subject_id, time or code.
    """
    root = Path(root)
    if encounters not in ("hospital", "icu"):
        raise IngestError(f"encounters must be 'hospital' or 'icu', got {encounters!r}")
    shards = _shards(root)
    if not shards:
        raise IngestError(f"{root.name}: no MEDS shards found (expected data/**/*.parquet)")
    dataset = _dataset_metadata(root)
    dataset_name = dataset.get("dataset_name")
    chosen = list(mappings) if mappings is not None else mappings_for_meds(dataset_name)
    parent_codes = _parent_codes(root)
    default_site = site or dataset_name or root.resolve().name
    codes_seen: dict[str, dict] = {}
    parts: dict[str, list[pl.DataFrame]] = {k: [] for k in ("patients", "encounters", "observations", "outcomes", REJECTED, SKIPPED)}
    for shard in shards:
        frames = _read_shard(
            root, shard, level=encounters, parent_codes=parent_codes, mappings=chosen, default_site=default_site,
            dataset=dataset_name, codes_seen=codes_seen,
        )
        for key, frame in frames.items():
            parts[key].append(frame)
    out = {t: pl.concat(parts[t], how="diagonal_relaxed") for t in ("patients", "encounters", "observations", "outcomes")}
    out[REJECTED] = combine(parts[REJECTED], kind="rejected")
    out[SKIPPED] = combine(parts[SKIPPED], kind="skipped")
    return out


# ---------------------------------------------------------------- metadata


def _shards(root: Path) -> list[Path]:
    data = root / "data"
    if not data.is_dir():
        return []
    return sorted(p for p in data.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))


def _dataset_metadata(root: Path) -> dict:
    path = root / "metadata" / "dataset.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(f"{root.name}/metadata/dataset.json: cannot be read as JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}


def _parent_codes(root: Path) -> dict[str, list[str]]:
    """code -> its LOINC parents, from metadata/codes.parquet (empty without it)."""
    path = root / "metadata" / "codes.parquet"
    if not path.is_file():
        return {}
    try:
        schema = pl.read_parquet_schema(path)
        if "code" not in schema or "parent_codes" not in schema:
            return {}
        frame = pl.read_parquet(path, columns=["code", "parent_codes"])
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise IngestError(f"{root.name}/metadata/codes.parquet: cannot be read as Parquet ({exc})") from exc
    loinc = (
        frame.explode("parent_codes")
        .filter(pl.col("parent_codes").str.starts_with("LOINC/"))
        .select("code", pl.col("parent_codes").str.slice(len("LOINC/")).alias("loinc"))
        .group_by("code")
        .agg("loinc")
    )
    return dict(zip(loinc["code"].to_list(), loinc["loinc"].to_list(), strict=True))


def _code_meaning(code: str, parent_codes: dict[str, list[str]], mappings: list[SourceMapping]) -> dict:
    """variable, part, unit in the code and the default unit for one code."""
    catalog = load_catalog()
    variable = next((v for v in (loinc_variable(c, catalog) for c in parent_codes.get(code, [])) if v), None)
    part = code_unit = default_unit = None
    for mapping in mappings:
        match = mapping.meds_code.match(code) if mapping.meds_code is not None else None
        if match is None:
            continue
        code_unit = match.group("unit")
        item = mapping.items.get(match.group("item"))
        if item is not None and (variable is None or variable == item.variable):
            variable, part, default_unit = item.variable, item.part, item.unit
        break
    segments = code.split("//")
    if variable is None and len(segments) == 2 and segments[0] in ("VITAL", "LAB") and segments[1] in catalog.variables:
        variable = segments[1]  # riskcast's own export
    if code_unit is None and variable is not None and len(segments) >= 3 and segments[0] == "LAB":
        code_unit = segments[-1]
    return {"code": code, "variable": variable, "_part": part, "_code_unit": code_unit, "_default_unit": default_unit}


def _code_table(codes: list[str], parent_codes: dict, mappings: list[SourceMapping], seen: dict[str, dict]) -> pl.DataFrame:
    for code in codes:
        if code not in seen:
            seen[code] = _code_meaning(code, parent_codes, mappings)
    return pl.DataFrame(
        [seen[c] for c in codes],
        schema={"code": pl.String, "variable": pl.String, "_part": pl.String, "_code_unit": pl.String, "_default_unit": pl.String},
        orient="row",
    )


# ---------------------------------------------------------------- one shard


def _read_shard(
    root: Path, shard: Path, *, level: str, parent_codes: dict, mappings: list[SourceMapping], default_site: str,
    dataset: str | None, codes_seen: dict[str, dict],
) -> dict[str, pl.DataFrame]:
    label = f"{root.name}/{shard.relative_to(root).as_posix()}"
    try:
        schema = pl.read_parquet_schema(shard)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise IngestError(f"{label}: cannot be read as Parquet ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in schema]
    if missing:
        raise IngestError(f"{label}: not a MEDS shard: lacks column(s) {', '.join(missing)}")
    id_columns = HOSPITAL_ID_COLUMNS if level == "hospital" else ICU_ID_COLUMNS
    stay_column = next((c for c in id_columns if c in schema), None)
    if stay_column is None:
        raise IngestError(
            f"{label}: no {' or '.join(id_columns)} column, so {level} stays cannot be told apart"
            + ("; try --encounters hospital" if level == "icu" else "")
        )
    hospital_column = next((c for c in HOSPITAL_ID_COLUMNS if c in schema), None)
    wanted = [*REQUIRED_COLUMNS, *(c for c in (*EXTRA_COLUMNS, stay_column, hospital_column) if c and c in schema)]
    try:
        events = pl.read_parquet(shard, columns=list(dict.fromkeys(wanted)))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise IngestError(f"{label}: cannot be read as Parquet ({exc})") from exc
    events = events.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(SOURCE_LINE),
        pl.lit(label).alias(SOURCE_FILE),
        pl.col("subject_id").cast(pl.String).alias("_subject"),
        _as_text(events, stay_column).alias("_stay"),
        _as_text(events, hospital_column).alias("_hospital_stay") if hospital_column else pl.lit(None, pl.String).alias("_hospital_stay"),
    )
    if isinstance(events.schema["time"], pl.Datetime) and events.schema["time"].time_zone is not None:
        events = events.with_columns(pl.col("time").dt.replace_time_zone(None))  # compare naive with naive
    elif not isinstance(events.schema["time"], pl.Datetime):
        events = events.with_columns(pl.col("time").cast(pl.Datetime("us"), strict=False))
    codes = _code_table(events["code"].drop_nulls().unique().sort().to_list(), parent_codes, mappings, codes_seen)
    events = events.join(codes, on="code", how="left", maintain_order="left")

    stays, stay_codes = _stays(events, level=level, default_site=default_site)
    patients, patient_codes = _patients(events, default_site=default_site)
    outcomes, outcome_codes, outcome_skipped = _outcomes(events, stays, level=level)
    observations, rejected, observation_skipped = _observations(events, stays, mappings=mappings, dataset=dataset)
    used = pl.col("variable").is_not_null() | pl.col("code").is_in(pl.concat([stay_codes, patient_codes, outcome_codes]).implode())
    unmapped = skipped_counts(
        events.filter(~used.fill_null(False)), table="observations", rule="unmapped_code",
        family=pl.col("code").str.split("//").list.first(),
    )
    encounters = stays.drop("patient_id").join(
        patients.select("_subject", "patient_id"), on="_subject", how="left", maintain_order="left"
    )
    return {
        "patients": patients.drop("_subject"),
        "encounters": encounters.drop("_subject", "_admit", "_discharge").rename(
            {"_admit_time": "admit_time", "_discharge_time": "discharge_time"}
        ),
        "observations": observations,
        "outcomes": outcomes,
        REJECTED: rejected,
        SKIPPED: combine([unmapped, outcome_skipped, observation_skipped], kind="skipped"),
    }


def _as_text(frame: pl.DataFrame, column: str | None) -> pl.Expr:
    if column is None:
        return pl.lit(None, dtype=pl.String)
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _prefix(code: str) -> pl.Expr:
    return (pl.col("code") == code) | pl.col("code").str.starts_with(f"{code}//")


def _stays(events: pl.DataFrame, *, level: str, default_site: str) -> tuple[pl.DataFrame, pl.Series]:
    """The shard's stays (encounter rows plus _subject, _admit, _discharge) and the codes used."""
    admission, discharge = ("HOSPITAL_ADMISSION", "HOSPITAL_DISCHARGE") if level == "hospital" else ("ICU_ADMISSION", "ICU_DISCHARGE")
    is_admit, is_discharge = _prefix(admission), _prefix(discharge)
    marks = events.filter((is_admit | is_discharge) & pl.col("_stay").is_not_null())
    site = pl.col("site").drop_nulls().first() if "site" in events.columns else pl.lit(None, pl.String)
    stays = marks.group_by("_stay", maintain_order=True).agg(
        pl.col("_subject").first(),
        pl.col("time").filter(is_admit).min().alias("_admit"),
        pl.col("time").filter(is_discharge).max().alias("_discharge"),
        pl.col(SOURCE_FILE).first(),
        pl.col(SOURCE_LINE).sort_by(~is_admit).first(),  # the admission row, else the discharge
        site.alias("site"),
    ).rename({"_stay": "encounter_id"})
    if level == "hospital":
        transfer = events.filter(_prefix("TRANSFER_TO") & pl.col("_stay").is_not_null()).select(
            pl.col("_stay").alias("encounter_id"),
            pl.col("time").alias("_time"),
            pl.col("code").str.split("//").list.get(1, null_on_oob=True).alias("_kind"),
            pl.col("code").str.split("//").list.slice(2).list.join("//").alias("ward"),
        ).filter(pl.col("_kind") != "discharge")
        used = pl.Series(["HOSPITAL_ADMISSION", "HOSPITAL_DISCHARGE", "TRANSFER_TO"])
    else:
        transfer = events.filter(is_admit & pl.col("_stay").is_not_null()).select(
            pl.col("_stay").alias("encounter_id"),
            pl.col("time").alias("_time"),
            pl.col("code").str.split("//").list.slice(1).list.join("//").alias("ward"),
        )
        used = pl.Series(["ICU_ADMISSION", "ICU_DISCHARGE"])
    wards = last_ward(transfer.select("encounter_id", "_time", "ward"), stays)
    stays = stays.join(wards, on="encounter_id", how="left", maintain_order="left").with_columns(
        pl.col("_admit").alias("_admit_time"),
        pl.col("_discharge").alias("_discharge_time"),
        pl.col("_subject").alias("patient_id"),
        pl.col("site").fill_null(default_site),
    )
    codes_used = events.filter(pl.any_horizontal([_prefix(c) for c in used])).get_column("code").unique()
    return stays, codes_used


def _patients(events: pl.DataFrame, *, default_site: str) -> tuple[pl.DataFrame, pl.Series]:
    is_gender, is_birth, is_race, is_age = _prefix("GENDER"), pl.col("code") == "MEDS_BIRTH", _prefix("RACE"), pl.col("code") == "AGE"
    race_column = pl.col("race").drop_nulls().first() if "race" in events.columns else pl.lit(None, pl.String)
    site_column = pl.col("site").drop_nulls().first() if "site" in events.columns else pl.lit(None, pl.String)
    id_column = pl.col("patient_id").drop_nulls().first() if "patient_id" in events.columns else pl.lit(None, pl.String)
    value = pl.col("numeric_value") if "numeric_value" in events.columns else pl.lit(None, pl.Float32)
    patients = events.group_by("_subject", maintain_order=True).agg(
        pl.col("code").filter(is_gender).first().str.split("//").list.get(1, null_on_oob=True).alias("sex"),
        pl.col("time").filter(is_birth).min().dt.year().alias("birth_year"),
        value.filter(is_age).first().cast(pl.String).cast(pl.Float64).alias("age"),
        pl.coalesce(race_column, pl.col("code").filter(is_race).first().str.split("//").list.slice(1).list.join("//")).alias("race_ethnicity"),
        site_column.alias("site"),
        id_column.cast(pl.String).alias("_patient_id"),
        pl.col(SOURCE_FILE).first(),
        pl.col(SOURCE_LINE).first(),
    )
    patients = patients.with_columns(
        pl.coalesce("_patient_id", "_subject").alias("patient_id"),
        pl.col("sex").fill_null("unknown"),  # MEDS requires no sex code: not recorded
        pl.col("site").fill_null(default_site),
    ).drop("_patient_id")
    codes = events.filter(is_gender | is_birth | is_race | is_age).get_column("code").unique()
    return patients, codes


def _outcomes(events: pl.DataFrame, stays: pl.DataFrame, *, level: str) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    died = pl.col("code") == "HOSPITAL_DISCHARGE//DIED"
    death = (pl.col("code") == "MEDS_DEATH") | died
    icu = _prefix("ICU_ADMISSION") if level == "hospital" else pl.lit(False)
    other = pl.col("code").str.starts_with(_OUTCOME_PREFIX)
    event_type = (
        pl.when(death).then(pl.lit("death"))
        .when(icu).then(pl.lit("icu_transfer"))
        .otherwise(pl.col("code").str.slice(len(_OUTCOME_PREFIX)))
    )
    # An ICU admission belongs to its hospital stay; other events name the stay of the level.
    stay = pl.col("_hospital_stay") if level == "hospital" else pl.col("_stay")
    if level == "icu":  # a hospital discharge names no ICU stay: place it by its time
        stay = pl.when(died).then(None).otherwise(stay)
    candidates = events.filter(death | icu | other).select(
        stay.alias("encounter_id"), pl.col("time").alias("_time"), "_subject", event_type.alias("event_type"),
        SOURCE_FILE, SOURCE_LINE,
    )
    named = candidates.filter(pl.col("encounter_id").is_not_null())
    unnamed_deaths = candidates.filter(pl.col("encounter_id").is_null() & (pl.col("event_type") == "death"))
    unnamed_other = candidates.filter(pl.col("encounter_id").is_null() & (pl.col("event_type") != "death"))
    placed_deaths, outside = deaths_in_stays(unnamed_deaths.select("_subject", "_time", SOURCE_FILE, SOURCE_LINE), stays)
    placed_other = attach_to_stays(unnamed_other.with_row_index("_row"), stays).drop("_row")
    not_placed = skipped_counts(
        placed_other.filter(pl.col("encounter_id").is_null()), table="outcomes", rule="outside_stays", family=pl.col("event_type")
    )
    outcomes = pl.concat(
        [
            named.select("encounter_id", pl.col("_time").alias("event_time"), "event_type", SOURCE_FILE, SOURCE_LINE),
            placed_deaths,
            placed_other.filter(pl.col("encounter_id").is_not_null()).select(
                "encounter_id", pl.col("_time").alias("event_time"), "event_type", SOURCE_FILE, SOURCE_LINE
            ),
        ],
        how="diagonal_relaxed",
    )
    outcomes, twice = one_death_per_stay(outcomes)
    codes = events.filter(death | icu | other).get_column("code").unique()
    return outcomes.sort(SOURCE_FILE, SOURCE_LINE), codes, combine([outside, not_placed, twice], kind="skipped")


def _observations(
    events: pl.DataFrame, stays: pl.DataFrame, *, mappings: list[SourceMapping], dataset: str | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Mapped measurements with their stay, unit and value (text, for the contract to parse)."""
    placeholders = placeholder_units(mappings)
    measured = events.filter(pl.col("variable").is_not_null())
    number = (
        pl.col("numeric_value").cast(pl.String)  # the shortest decimal form of the float32 (or float64)
        if "numeric_value" in measured.columns
        else pl.lit(None, pl.String)
    )
    text = pl.col("text_value").cast(pl.String) if "text_value" in measured.columns else pl.lit(None, pl.String)
    unit_column = usable_unit(pl.col("unit"), placeholders) if "unit" in measured.columns else pl.lit(None, pl.String)
    rows = measured.select(
        pl.int_range(pl.len()).alias("_row"),
        "_subject",
        pl.col("_stay").alias("encounter_id"),
        pl.col("time").alias("charttime"),
        "variable",
        "_part",
        pl.coalesce(number, text).alias("value"),
        pl.coalesce(unit_column, usable_unit(pl.col("_code_unit"), placeholders), pl.col("_default_unit")).alias("unit"),
        pl.format("meds:{}", pl.col("code")).alias("source"),
        SOURCE_FILE,
        SOURCE_LINE,
    )
    rows, rejected, incomplete = add_up_parts(rows, parts_of_sums(mappings), keys=["_subject", "encounter_id", "charttime"])
    before, after = observation_window_hours()
    rows = attach_to_stays(
        rows.with_columns(pl.int_range(pl.len()).alias("_row"), pl.col("charttime").alias("_time")),
        stays, before_hours=before, after_hours=after,
    )
    outside = rows.filter(pl.col("encounter_id").is_null() & pl.col("charttime").is_not_null())
    kept = rows.filter(pl.col("encounter_id").is_not_null() | pl.col("charttime").is_null()).sort(SOURCE_FILE, SOURCE_LINE)
    skipped = combine(
        [incomplete, skipped_counts(outside, table="observations", rule="outside_stays", family=pl.col("variable"))],
        kind="skipped",
    )
    return kept.select("encounter_id", "charttime", "variable", "value", "unit", "source", SOURCE_FILE, SOURCE_LINE), rejected, skipped
