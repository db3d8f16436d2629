"""The OMOP CDM adapter (5.3 and 5.4): a folder of CSV/Parquet tables, or a database by URL.

Tables read (names case-insensitive; a short prefix such as MIMIC's `2b_concept` counts):
- person -> patients: person_id, year_of_birth, sex from gender_concept_id (8507 male, 8532
  female, 8521 other, 8551 unknown; else gender_source_value), race from race_source_value.
- visit_occurrence -> hospital stays (every visit: inpatient, emergency and outpatient
  alike); the ward is the care_site_name of the visit's last visit_detail, else of the
  visit. With `encounters="icu"`, the stays are the visit_detail rows in an intensive-care
  care site (by name, or visit_detail_concept_id 32037 Intensive Care / 581379 Inpatient
  Critical Care Facility).
- measurement -> observations: measurement_concept_id -> LOINC through the `concept` table
  (else measurement_source_value when it is a catalogue LOINC code); unit_concept_id -> the
  UCUM code through `concept`, else unit_source_value; value_as_number; measurement_datetime,
  else measurement_date; the stay from visit_occurrence_id (visit_detail_id at ICU level),
  else the person's stay that holds the time.
- death -> a `death` outcome in the stay that holds it; a visit discharged to death
  (discharged_to_concept_id 4216643, or the source value DIED/EXPIRED) -> death at its end;
  an intensive-care visit_detail within a visit -> `icu_transfer` at its start.
- care_site (ward names), concept (LOINC and UCUM codes), cdm_source (the site's name unless
  --site is given).
Times are naive in OMOP: the contract reads them in the site's time zone.

From a database: `read_omop("postgresql://user@host/db")` reads the same tables through
SQLAlchemy from the connection's default schema (set the schema with the URL, e.g.
`?options=-csearch_path%3Domop` for PostgreSQL). A row's line is its position in the
table read in the order of its id column; the file is `<url without password>#<table>`.
The password never appears in a message.

Counted and skipped: measurements whose concept maps to no catalogue variable
(`unmapped_code`, by vocabulary), measurements and deaths outside any stay. Quarantined: a
visit or measurement of a person who is not in `person` (`unknown_patient`), and through the
contract mapped measurements without a value, with an unknown unit, out of range.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import polars as pl

from riskcast.catalog import load_catalog
from riskcast.contracts import SOURCE_FILE, SOURCE_LINE, parse_datetime
from riskcast.errors import IngestError
from riskcast.ingest.mapping import DEFAULT_PLACEHOLDER_UNITS, loinc_variable, usable_unit
from riskcast.ingest.rejects import REJECTED, SKIPPED, combine, rejected_rows, skipped_counts
from riskcast.ingest.stays import (
    attach_to_stays,
    deaths_in_stays,
    icu_ward_expr,
    last_ward,
    observation_window_hours,
    one_death_per_stay,
)

FORMAT = "omop"
TABLES = ("person", "visit_occurrence", "visit_detail", "care_site", "measurement", "death", "concept", "cdm_source")
ID_COLUMNS = {
    "person": "person_id", "visit_occurrence": "visit_occurrence_id", "visit_detail": "visit_detail_id",
    "care_site": "care_site_id", "measurement": "measurement_id", "death": "person_id", "concept": "concept_id",
}
SEX_CONCEPTS = {"8507": "male", "8532": "female", "8521": "other", "8551": "unknown"}
ICU_CONCEPTS = ("32037", "581379")
DIED_CONCEPTS = ("4216643",)
DIED_SOURCE_VALUES = ("DIED", "EXPIRED", "DEATH")
SUFFIXES = (".csv", ".csv.gz", ".parquet")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


def is_database_url(text: str) -> bool:
    """True for a SQLAlchemy database URL (postgresql://…, sqlite:///…), not a path."""
    return bool(_URL.match(text)) and not text.startswith("file://")


def redacted_url(url: str) -> str:
    """The URL without its password (for messages and provenance)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL: show only its scheme
        return url.split("://", 1)[0] + "://…"


def _table_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            for table in TABLES:
                if stem == table or re.fullmatch(rf"[0-9a-z]{{1,3}}_{table}", stem):
                    return table
    return None


def looks_like_omop(path: Path) -> bool:
    """True for a folder holding person and visit_occurrence tables (CSV or Parquet)."""
    path = Path(path)
    if not path.is_dir():
        return False
    found = {_table_of(p) for p in path.iterdir() if p.is_file()}
    return {"person", "visit_occurrence"} <= found


# ---------------------------------------------------------------- reading tables


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text, names in lower case (OMOP CSVs differ in both)."""
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    return frame.with_columns(
        pl.when(pl.col(c).cast(pl.String).str.strip_chars() == "").then(None).otherwise(pl.col(c).cast(pl.String)).alias(c)
        for c in frame.columns
    )


def _folder_tables(folder: Path) -> dict[str, pl.DataFrame]:
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        table = _table_of(path) if path.is_file() else None
        if table is not None:
            files.setdefault(table, []).append(path)
    tables = {}
    for table, paths in files.items():
        frames = []
        for path in paths:
            try:
                if path.name.lower().endswith(".parquet"):
                    frame, first = pl.read_parquet(path), 1
                else:
                    frame, first = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False), 2
            except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
                raise IngestError(f"{path.name}: cannot be read as an OMOP {table} table ({exc})") from exc
            frames.append(_as_text(frame).with_columns(
                pl.lit(path.name).alias(SOURCE_FILE),
                pl.int_range(first, pl.len() + first, dtype=pl.Int64).alias(SOURCE_LINE),
            ))
        tables[table] = pl.concat(frames, how="diagonal_relaxed")
    return tables


def _database_tables(url: str) -> dict[str, pl.DataFrame]:
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    shown = redacted_url(url)
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise IngestError(f"{shown}: not a database URL SQLAlchemy can open ({type(exc).__name__})") from exc
    tables = {}
    try:
        with engine.connect() as connection:
            present = {name.lower(): name for name in inspect(connection).get_table_names()}
            for table in TABLES:
                if table not in present:
                    continue
                name = present[table]
                columns = [c["name"] for c in inspect(connection).get_columns(name)]
                order = next((c for c in columns if c.lower() == ID_COLUMNS.get(table)), None)
                quote = connection.dialect.identifier_preparer.quote
                query = f"SELECT * FROM {quote(name)}" + (f" ORDER BY {quote(order)}" if order else "")
                frame = pl.read_database(text(query), connection, infer_schema_length=None)
                tables[table] = _as_text(frame).with_columns(
                    pl.lit(f"{shown}#{table}").alias(SOURCE_FILE),
                    pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(SOURCE_LINE),
                )
    except SQLAlchemyError as exc:
        raise IngestError(f"{shown}: cannot read the OMOP tables ({type(exc).__name__}: {exc.__class__.__doc__ or ''})".strip()) from exc
    finally:
        engine.dispose()
    return tables


def _tables(source: Path | str) -> tuple[dict[str, pl.DataFrame], str]:
    if isinstance(source, str) and is_database_url(source):
        tables, name = _database_tables(source), redacted_url(source)
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise IngestError(f"{folder}: an OMOP source is a folder of table files or a database URL")
        tables, name = _folder_tables(folder), folder.resolve().name
    for needed in ("person", "visit_occurrence"):
        if needed not in tables:
            raise IngestError(f"{name}: no OMOP {needed} table found; riskcast needs person and visit_occurrence")
    return tables, name


def database_content_hash(url: str) -> str:
    """sha256 over the OMOP tables riskcast reads from a database (read once for this)."""
    tables, _ = _tables(url)
    digest = hashlib.sha256()
    for table in sorted(tables):
        digest.update(table.encode())
        digest.update(tables[table].drop(SOURCE_FILE).write_csv().encode())
    return digest.hexdigest()


def _column(frame: pl.DataFrame, *names: str) -> pl.Expr:
    """The first of these columns the table has (OMOP renamed some between 5.3 and 5.4), else null."""
    present = [pl.col(n) for n in names if n in frame.columns]
    return pl.coalesce(present) if present else pl.lit(None, dtype=pl.String)


def _naive(text: pl.Expr) -> pl.Expr:
    """OMOP time text -> naive datetime, for comparisons (the contract applies the time zone)."""
    return parse_datetime(text, source_timezone="UTC").dt.replace_time_zone(None)


# ---------------------------------------------------------------- the tables as riskcast frames


def read_omop(source: Path | str, *, site: str | None = None, encounters: str = "hospital") -> dict[str, pl.DataFrame]:
    """Read an OMOP CDM folder or database URL into source frames (see the module docstring)."""
    if encounters not in ("hospital", "icu"):
        raise IngestError(f"encounters must be 'hospital' or 'icu', got {encounters!r}")
    tables, name = _tables(source)
    empty = pl.DataFrame()
    default_site = site or _cdm_site(tables.get("cdm_source")) or name
    person, visits = tables["person"], tables["visit_occurrence"]
    details, care_sites = tables.get("visit_detail", empty), tables.get("care_site", empty)
    patients = _patients(person, default_site)
    known = patients.select(pl.col("patient_id").alias("_subject"))
    site_names = care_sites.select(
        pl.col("care_site_id"), _column(care_sites, "care_site_name", "care_site_source_value").alias("_site_name")
    ) if care_sites.height else pl.DataFrame(schema={"care_site_id": pl.String, "_site_name": pl.String})
    wards = _details(details, site_names)
    stays, rejected, icu_details = _stays(visits, wards, site_names, known, level=encounters, default_site=default_site)
    outcomes, outcome_skips = _outcomes(tables.get("death", empty), visits, stays, icu_details, level=encounters)
    observations, observation_rejects, observation_skips = _observations(
        tables.get("measurement", empty), tables.get("concept", empty), stays, icu_details, known, level=encounters
    )
    return {
        "patients": patients,
        "encounters": stays.drop("_subject", "_admit", "_discharge"),
        "observations": observations,
        "outcomes": outcomes,
        REJECTED: combine([rejected, observation_rejects], kind="rejected"),
        SKIPPED: combine([outcome_skips, observation_skips], kind="skipped"),
    }


def _cdm_site(cdm_source: pl.DataFrame | None) -> str | None:
    if cdm_source is None or cdm_source.height == 0:
        return None
    values = cdm_source.select(_column(cdm_source, "cdm_source_abbreviation", "cdm_source_name")).to_series().drop_nulls()
    return values[0] if values.len() else None


def _patients(person: pl.DataFrame, default_site: str) -> pl.DataFrame:
    sex = pl.col("gender_concept_id").replace_strict(SEX_CONCEPTS, default=None) if "gender_concept_id" in person.columns else pl.lit(None, pl.String)
    return person.select(
        pl.col("person_id").str.strip_chars().alias("patient_id"),
        _column(person, "year_of_birth").alias("birth_year"),
        pl.lit(None, pl.Float64).alias("age"),
        pl.coalesce(sex, _column(person, "gender_source_value"), pl.lit("unknown")).alias("sex"),
        _column(person, "race_source_value").alias("race_ethnicity"),
        pl.lit(default_site).alias("site"),
        SOURCE_FILE, SOURCE_LINE,
    )


def _details(details: pl.DataFrame, site_names: pl.DataFrame) -> pl.DataFrame:
    """visit_detail rows with their ward name, times and whether they are intensive care."""
    if details.height == 0:
        return pl.DataFrame(schema={
            "_detail": pl.String, "_visit": pl.String, "_subject": pl.String, "ward": pl.String, "_start_text": pl.String,
            "_end_text": pl.String, "_start": pl.Datetime("us"), "_end": pl.Datetime("us"), "_icu": pl.Boolean,
            SOURCE_FILE: pl.String, SOURCE_LINE: pl.Int64,
        })
    start = _column(details, "visit_detail_start_datetime", "visit_detail_start_date")
    end = _column(details, "visit_detail_end_datetime", "visit_detail_end_date")
    return details.join(site_names, on="care_site_id", how="left").select(
        pl.col("visit_detail_id").alias("_detail"), _column(details, "visit_occurrence_id").alias("_visit"),
        pl.col("person_id").alias("_subject"), pl.col("_site_name").alias("ward"),
        start.alias("_start_text"), end.alias("_end_text"), _naive(start).alias("_start"), _naive(end).alias("_end"),
        (icu_ward_expr(pl.col("_site_name")) | _column(details, "visit_detail_concept_id").is_in(ICU_CONCEPTS).fill_null(False)).alias("_icu"),
        SOURCE_FILE, SOURCE_LINE,
    )


def _stays(
    visits: pl.DataFrame, wards: pl.DataFrame, site_names: pl.DataFrame, known: pl.DataFrame, *, level: str, default_site: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(stays, rejected rows, intensive-care details)."""
    start = _column(visits, "visit_start_datetime", "visit_start_date")
    end = _column(visits, "visit_end_datetime", "visit_end_date")
    rows = visits.join(site_names, on="care_site_id", how="left") if "care_site_id" in visits.columns else visits.with_columns(
        pl.lit(None, pl.String).alias("_site_name"))
    hospital = rows.select(
        pl.col("visit_occurrence_id").alias("encounter_id"), pl.col("person_id").alias("patient_id"),
        pl.col("person_id").alias("_subject"), start.alias("admit_time"), end.alias("discharge_time"),
        _naive(start).alias("_admit"), _naive(end).alias("_discharge"), pl.col("_site_name").alias("_visit_ward"),
        pl.lit(default_site).alias("site"), SOURCE_FILE, SOURCE_LINE,
    )
    icu = wards.filter("_icu")
    if level == "hospital":
        stays = hospital
        events = pl.concat([
            wards.select(pl.col("_visit").alias("encounter_id"), pl.col("_start").alias("_time"), "ward"),
            hospital.select("encounter_id", pl.lit(None, pl.Datetime("us")).alias("_time"), pl.col("_visit_ward").alias("ward")),
        ])
    else:
        stays = icu.select(
            pl.col("_detail").alias("encounter_id"), pl.col("_subject").alias("patient_id"), "_subject",
            pl.col("_start_text").alias("admit_time"), pl.col("_end_text").alias("discharge_time"),
            pl.col("_start").alias("_admit"), pl.col("_end").alias("_discharge"), pl.lit(default_site).alias("site"),
            SOURCE_FILE, SOURCE_LINE,
        )
        events = icu.select(pl.col("_detail").alias("encounter_id"), pl.col("_start").alias("_time"), "ward")
    stays = stays.drop("_visit_ward", strict=False)
    stays = stays.join(last_ward(events, stays), on="encounter_id", how="left", maintain_order="left")
    strangers = stays.join(known, on="_subject", how="anti")
    rejected = rejected_rows(strangers, table="encounters", rule="unknown_patient",
                             detail="the visit's person_id is not in the person table", record=["encounter_id", "_subject"])
    stays = stays.join(strangers.select("encounter_id"), on="encounter_id", how="anti")
    return stays, rejected, icu


def _outcomes(
    death: pl.DataFrame, visits: pl.DataFrame, stays: pl.DataFrame, icu: pl.DataFrame, *, level: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    columns = ["encounter_id", "event_time", "event_type", SOURCE_FILE, SOURCE_LINE]
    deaths = [death.select(
        pl.col("person_id").alias("_subject"), _naive(_column(death, "death_datetime", "death_date")).alias("_time"),
        SOURCE_FILE, SOURCE_LINE,
    )] if death.height else []
    died_concept = _column(visits, "discharged_to_concept_id", "discharge_to_concept_id").is_in(DIED_CONCEPTS)
    died_value = _column(visits, "discharged_to_source_value", "discharge_to_source_value").str.to_uppercase().is_in(DIED_SOURCE_VALUES)
    died = visits.filter((died_concept | died_value).fill_null(False)).select(
        pl.col("visit_occurrence_id").alias("encounter_id"), pl.col("person_id").alias("_subject"),
        _naive(_column(visits, "visit_end_datetime", "visit_end_date")).alias("_time"), SOURCE_FILE, SOURCE_LINE,
    )
    events = []
    if level == "hospital":
        events.append(died.join(stays.select("encounter_id"), on="encounter_id", how="semi").select(
            "encounter_id", pl.col("_time").alias("event_time"), pl.lit("death").alias("event_type"), SOURCE_FILE, SOURCE_LINE))
        transfers = attach_to_stays(
            icu.select(pl.int_range(pl.len()).alias("_row"), pl.col("_visit").alias("encounter_id"), "_subject",
                       pl.col("_start").alias("_time"), SOURCE_FILE, SOURCE_LINE), stays,
        )
        events.append(transfers.filter(pl.col("encounter_id").is_not_null() & pl.col("_time").is_not_null()).select(
            "encounter_id", pl.col("_time").alias("event_time"), pl.lit("icu_transfer").alias("event_type"), SOURCE_FILE, SOURCE_LINE))
    else:
        deaths.append(died.drop("encounter_id"))
    candidates = pl.concat(deaths, how="diagonal_relaxed") if deaths else pl.DataFrame(
        schema={"_subject": pl.String, "_time": pl.Datetime("us"), SOURCE_FILE: pl.String, SOURCE_LINE: pl.Int64})
    placed, outside = deaths_in_stays(candidates, stays)
    outcomes = pl.concat([e.select(columns) for e in (*events, placed)], how="diagonal_relaxed")
    outcomes, twice = one_death_per_stay(outcomes)
    return outcomes.sort(SOURCE_FILE, SOURCE_LINE), combine([outside, twice], kind="skipped")


def _observations(
    measurement: pl.DataFrame, concept: pl.DataFrame, stays: pl.DataFrame, icu: pl.DataFrame, known: pl.DataFrame, *, level: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    columns = ["encounter_id", "charttime", "variable", "value", "unit", "source", SOURCE_FILE, SOURCE_LINE]
    if measurement.height == 0:
        return pl.DataFrame(schema={c: pl.String for c in columns} | {SOURCE_LINE: pl.Int64}), pl.DataFrame(), pl.DataFrame()
    catalog = load_catalog()
    concepts = concept.select("concept_id", "concept_code", "vocabulary_id") if concept.height else pl.DataFrame(
        schema={"concept_id": pl.String, "concept_code": pl.String, "vocabulary_id": pl.String})
    loinc = concepts.filter(pl.col("vocabulary_id") == "LOINC")
    lookup = {code: loinc_variable(code, catalog) for code in loinc["concept_code"].unique().to_list()}
    measured = measurement.join(
        concepts.select(pl.col("concept_id").alias("measurement_concept_id"), pl.col("concept_code").alias("_code"),
                        pl.col("vocabulary_id").alias("_vocabulary")),
        on="measurement_concept_id", how="left",
    ).join(
        concepts.filter(pl.col("vocabulary_id") == "UCUM").select(
            pl.col("concept_id").alias("unit_concept_id"), pl.col("concept_code").alias("_ucum")),
        on="unit_concept_id", how="left",
    ) if "unit_concept_id" in measurement.columns else measurement.with_columns(pl.lit(None, pl.String).alias("_ucum"))
    source_loinc = _column(measured, "measurement_source_value").str.strip_chars()
    by_source = {c: loinc_variable(c, catalog) for c in measured.select(source_loinc).to_series().drop_nulls().unique().to_list()}
    variable = pl.coalesce(
        pl.when(pl.col("_vocabulary") == "LOINC").then(pl.col("_code").replace_strict(lookup, default=None, return_dtype=pl.String)),
        source_loinc.replace_strict(by_source, default=None, return_dtype=pl.String),
    )
    measured = measured.with_columns(variable.alias("variable"))
    unmapped = measured.filter(pl.col("variable").is_null())
    skipped = [skipped_counts(unmapped, table="observations", rule="unmapped_code",
                              family=pl.col("_vocabulary").fill_null("no concept"))]
    measured = measured.filter(pl.col("variable").is_not_null())
    time_text = _column(measured, "measurement_datetime", "measurement_date")
    stay = _column(measured, "visit_occurrence_id") if level == "hospital" else _column(measured, "visit_detail_id")
    rows = measured.select(
        pl.int_range(pl.len()).alias("_row"),
        pl.col("person_id").alias("_subject"),
        stay.alias("_named"),
        time_text.alias("charttime"), _naive(time_text).alias("_time"),
        "variable",
        _column(measured, "value_as_number").alias("value"),
        pl.coalesce(usable_unit(pl.col("_ucum"), list(DEFAULT_PLACEHOLDER_UNITS)),
                    usable_unit(_column(measured, "unit_source_value"), list(DEFAULT_PLACEHOLDER_UNITS))).alias("unit"),
        pl.format("omop:{}", pl.coalesce(pl.col("_code"), source_loinc)).alias("source"),
        SOURCE_FILE, SOURCE_LINE,
    )
    stay_ids = stays.get_column("encounter_id").implode()
    rows = rows.with_columns(pl.when(pl.col("_named").is_in(stay_ids)).then(pl.col("_named")).alias("encounter_id"))
    # A visit id riskcast has not seen goes to the contract as it is (unknown_encounter), at hospital level.
    if level == "hospital":
        rows = rows.with_columns(pl.coalesce("encounter_id", "_named").alias("encounter_id"))
    strangers = rows.filter(pl.col("encounter_id").is_null()).join(known, on="_subject", how="anti")
    rejected = rejected_rows(strangers, table="observations", rule="unknown_patient",
                             detail="the measurement's person_id is not in the person table", record=["_subject"])
    rows = rows.join(strangers.select("_row"), on="_row", how="anti")
    before, after = observation_window_hours()
    rows = attach_to_stays(rows, stays, before_hours=before, after_hours=after)
    outside = rows.filter(pl.col("encounter_id").is_null() & pl.col("charttime").is_not_null())
    skipped.append(skipped_counts(outside, table="observations", rule="outside_stays", family=pl.col("variable")))
    kept = rows.filter(pl.col("encounter_id").is_not_null() | pl.col("charttime").is_null())
    return kept.select(columns), rejected, combine(skipped, kind="skipped")
