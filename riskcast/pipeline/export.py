"""Export the lake as a MEDS dataset, with outcome labels as MEDS label files.

So MEDS tools (MEDS-Tab, ACES, meds-evaluation, …) can work on a hospital's riskcast data.
The layout (MEDS 0.4, validated with the `meds` package's schemas):

    data/{train,tuning,held_out}/0.parquet   subject_id, time, code, numeric_value, text_value,
                                             patient_id, encounter_id, unit, site
    metadata/dataset.json                    dataset_name, versions, created_at, extra columns
    metadata/codes.parquet                   code, description, parent_codes (LOINC/…)
    metadata/subject_splits.parquet          subject_id, split
    labels/<outcome>_<H>h/0.parquet          subject_id, prediction_time, boolean_value

Codes: `GENDER//F|M|O|U`, `RACE//<text>` and `AGE` (age in years at admission, where the
source gave it) are static (no time); `MEDS_BIRTH` at 1 January of the birth year;
`HOSPITAL_ADMISSION`, `TRANSFER_TO//admit//<ward>` and `HOSPITAL_DISCHARGE` for each
encounter; `VITAL//<variable>` and `LAB//<variable>` for observations, in the catalogue's
canonical unit (the `unit` column) with the variable's LOINC code as parent; `MEDS_DEATH`,
`ICU_ADMISSION` and `OUTCOME//<type>` for outcomes. Times are UTC (MEDS times carry no zone:
ingest the export with RISKCAST_SOURCE_TIMEZONE=UTC, the default). numeric_value is float32
as MEDS requires, so values come back to float32 precision (about 7 significant digits).

subject_id must be a 64-bit integer: a patient_id that is one is kept; any other is
replaced by a stable number from its sha256, and the `patient_id` column keeps the original,
so re-ingesting the export gives the same patients. The split is by the same hash (80% train,
10% tuning, 10% held out). Labels are those riskcast trains on (riskcast.labels): one per
encounter-hour of the hourly grid; censored hours are left out.

The export is written to a temporary folder beside `out` and renamed into place, so a
reader never sees half an export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from riskcast.catalog import load_catalog
from riskcast.errors import LakeError
from riskcast.features.build import hourly_grid
from riskcast.labels import make_labels
from riskcast.lake import Lake

SPLITS = ("train", "tuning", "held_out")
SEX_CODES = {"female": "F", "male": "M", "other": "O", "unknown": "U"}
EXTRA_COLUMNS = {"patient_id": pl.String, "encounter_id": pl.String, "unit": pl.String, "site": pl.String}
OUTCOME_CODES = {"death": "MEDS_DEATH", "icu_transfer": "ICU_ADMISSION"}
_INT64 = r"^-?\d{1,18}$"


@dataclass(frozen=True)
class MedsExport:
    """What `export_meds` wrote."""

    out: Path
    subjects: dict[str, int]
    events: int
    labels: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "subjects": self.subjects, "events": self.events, "labels": self.labels}


def subject_ids(patient_ids: pl.Series) -> pl.DataFrame:
    """patient_id -> subject_id (int64) and split, stable across exports.

    An id that is a decimal integer is kept; otherwise the first 63 bits of its sha256. The
    split is by the sha256 too (80/10/10), so a patient keeps it from export to export.
    """
    ids = patient_ids.unique().sort().to_list()
    digests = [hashlib.sha256(str(i).encode()).digest() for i in ids]
    numeric = all(pl.Series(ids, dtype=pl.String).str.contains(_INT64).fill_null(False)) if ids else True
    subjects = [int(i) if numeric else int.from_bytes(d[:8], "big") >> 1 for i, d in zip(ids, digests, strict=True)]
    if len(set(subjects)) != len(subjects):
        raise LakeError("two patient_ids map to the same MEDS subject_id; rename one of them and export again")
    buckets = [int.from_bytes(d[8:12], "big") % 10 for d in digests]
    split = ["train" if b < 8 else "tuning" if b == 8 else "held_out" for b in buckets]
    return pl.DataFrame(
        {"patient_id": ids, "subject_id": subjects, "split": split},
        schema={"patient_id": pl.String, "subject_id": pl.Int64, "split": pl.String},
    )


def _naive_utc(column: str) -> pl.Expr:
    return pl.col(column).dt.convert_time_zone("UTC").dt.replace_time_zone(None).dt.cast_time_unit("us")


def _events(tables: dict[str, pl.DataFrame], ids: pl.DataFrame) -> pl.DataFrame:
    """Every MEDS event of the lake, with the extra columns, before sorting."""
    catalog = load_catalog()
    patients, encounters = tables["patients"], tables["encounters"]
    observations, outcomes = tables["observations"], tables["outcomes"]
    null_time = pl.lit(None, dtype=pl.Datetime("us"))
    null_value = pl.lit(None, dtype=pl.Float64)
    null_text = pl.lit(None, dtype=pl.String)

    def event(frame: pl.DataFrame, time: pl.Expr, code: pl.Expr, value: pl.Expr = null_value, *,
              encounter: pl.Expr = null_text, unit: pl.Expr = null_text, site: pl.Expr = null_text) -> pl.DataFrame:
        return frame.select(
            pl.col("patient_id"), time.alias("time"), code.alias("code"), value.cast(pl.Float64).alias("numeric_value"),
            encounter.alias("encounter_id"), unit.alias("unit"), site.alias("site"),
        )

    sex = pl.col("sex").replace_strict(SEX_CODES, default="U")
    birth = pl.datetime(pl.col("birth_year"), 1, 1, time_unit="us")
    patient_events = [
        event(patients, null_time, pl.format("GENDER//{}", sex), site=pl.col("site")),
        event(patients.filter(pl.col("race_ethnicity").is_not_null()), null_time, pl.format("RACE//{}", pl.col("race_ethnicity"))),
        event(patients.filter(pl.col("birth_year").is_not_null()), birth, pl.lit("MEDS_BIRTH")),
        event(patients.filter(pl.col("age").is_not_null()), null_time, pl.lit("AGE"), pl.col("age")),
    ]
    stay = {"encounter": pl.col("encounter_id"), "site": pl.col("site")}
    encounter_events = [
        event(encounters, _naive_utc("admit_time"), pl.lit("HOSPITAL_ADMISSION"), **stay),
        event(encounters, _naive_utc("admit_time"), pl.format("TRANSFER_TO//admit//{}", pl.col("ward")), **stay),
        event(encounters.filter(pl.col("discharge_time").is_not_null()), _naive_utc("discharge_time"), pl.lit("HOSPITAL_DISCHARGE"), **stay),
    ]
    kind = pl.col("variable").replace_strict({n: v.kind.upper() for n, v in catalog.variables.items()}, default="LAB")
    with_patient = observations.join(encounters.select("encounter_id", "patient_id"), on="encounter_id", how="inner")
    observation_events = [event(
        with_patient, _naive_utc("charttime"), pl.format("{}//{}", kind, pl.col("variable")), pl.col("value"),
        encounter=pl.col("encounter_id"), unit=pl.col("unit"),
    )]
    outcome_code = pl.col("event_type").replace_strict(OUTCOME_CODES, default=None)
    outcome_events = [event(
        outcomes.join(encounters.select("encounter_id", "patient_id"), on="encounter_id", how="inner"),
        _naive_utc("event_time"), pl.coalesce(outcome_code, pl.format("OUTCOME//{}", pl.col("event_type"))),
        encounter=pl.col("encounter_id"),
    )]
    frames = [f for f in (*patient_events, *encounter_events, *observation_events, *outcome_events) if f.height]
    events = pl.concat(frames) if frames else event(patients.clear(), null_time, null_text)
    return events.join(ids, on="patient_id", how="inner")


def _codes(events: pl.DataFrame) -> pl.DataFrame:
    """metadata/codes.parquet: description and LOINC parents of every code used."""
    catalog = load_catalog()
    rows = []
    for code in events.get_column("code").unique().sort().to_list():
        kind, _, name = code.partition("//")
        variable = catalog.variables.get(name) if kind in ("VITAL", "LAB") else None
        if variable is not None:
            rows.append((code, f"{variable.label} ({variable.unit})", [f"LOINC/{c}" for c in variable.loinc]))
        else:
            rows.append((code, None, []))
    return pl.DataFrame(
        rows, orient="row", schema={"code": pl.String, "description": pl.String, "parent_codes": pl.List(pl.String)}
    )


def _write_table(frame: pl.DataFrame, path: Path, schema_class: Any) -> None:
    """Write `frame` as Parquet after checking it against a `meds` schema."""
    import pyarrow.parquet as pq

    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    table = schema_class.align(table)  # casts to the schema's types (float32, large_string, …)
    schema_class.validate(table)  # raises if it is not valid MEDS
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def export_meds(
    lake: Lake, out: Path, *, now: datetime, outcome: str | None = "deterioration", horizon_hours: float = 12.0,
    dataset_name: str = "riskcast",
) -> MedsExport:
    """Write the lake to `out` as a MEDS dataset (see the module docstring).

    outcome: the outcome whose labels are written (None: no labels). Raises LakeError when
    the lake is empty or `out` exists and is not empty.
    """
    import meds

    from riskcast import __version__

    out = Path(out)
    if lake.is_empty():
        raise LakeError(f"the lake at {lake.root} is empty: ingest data before exporting it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LakeError(f"{out} exists and is not empty; export into a new folder")
    tables = {t: lake.scan(t).drop("batch_id").collect() for t in ("patients", "encounters", "observations", "outcomes")}
    ids = subject_ids(tables["patients"].get_column("patient_id"))
    events = _events(tables, ids)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        subjects: dict[str, int] = {}
        for split in SPLITS:
            part = events.filter(pl.col("split") == split).sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
            subjects[split] = part.get_column("subject_id").n_unique()
            shard = part.select(
                "subject_id", "time", "code", pl.col("numeric_value").cast(pl.Float32),
                pl.lit(None, dtype=pl.String).alias("text_value"), *EXTRA_COLUMNS,
            )
            if shard.height:
                _write_table(shard, tmp / "data" / split / "0.parquet", meds.DataSchema)
        _write_table(_codes(events), tmp / "metadata" / "codes.parquet", meds.CodeMetadataSchema)
        _write_table(ids.select("subject_id", "split"), tmp / "metadata" / "subject_splits.parquet", meds.SubjectSplitSchema)
        batches = lake.committed_batch_ids()
        metadata = {
            "dataset_name": dataset_name,
            "dataset_version": batches[-1] if batches else "",
            "etl_name": "riskcast export --format meds",
            "etl_version": __version__,
            "meds_version": meds.__version__,
            "created_at": now.isoformat(),
            "raw_source_id_columns": ["patient_id", "encounter_id"],
            "code_modifier_columns": ["unit"],
            "site_id_columns": ["site"],
        }
        (tmp / "metadata" / "dataset.json").write_text(json.dumps(metadata, indent=2))
        label_summary = _write_labels(tables, ids, tmp, outcome=outcome, horizon_hours=horizon_hours) if outcome else {}
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return MedsExport(out=out, subjects=subjects, events=events.height, labels=label_summary)


def _write_labels(
    tables: dict[str, pl.DataFrame], ids: pl.DataFrame, folder: Path, *, outcome: str, horizon_hours: float
) -> dict[str, Any]:
    """labels/<outcome>_<H>h/0.parquet from the hourly grid, as riskcast trains on them."""
    import meds

    encounters = tables["encounters"]
    data_end = tables["observations"].get_column("charttime").max()
    grid = hourly_grid(encounters.lazy(), at=None, data_end=data_end)
    labels = make_labels(grid, tables["outcomes"], encounters, outcome=outcome, horizon_hours=horizon_hours)
    labels = (
        labels.filter(pl.col("label").is_not_null())
        .join(encounters.select("encounter_id", "patient_id"), on="encounter_id", how="inner")
        .join(ids, on="patient_id", how="inner")
        .select("subject_id", _naive_utc("time").alias("prediction_time"), (pl.col("label") == 1).alias("boolean_value"))
        .sort("subject_id", "prediction_time")
    )
    name = f"{outcome}_{horizon_hours:g}h"
    _write_table(labels, folder / "labels" / name / "0.parquet", meds.LabelSchema)
    return {"task": name, "rows": labels.height, "positive": int(labels.get_column("boolean_value").sum())}
