"""The PhysioNet 2019 adapter: the sepsis challenge's `.psv` files as riskcast source frames.

The PhysioNet/Computing in Cardiology Challenge 2019 ("Early Prediction of Sepsis from
Clinical Data") ships one pipe-separated file per ICU stay (`p000001.psv`), one row per ICU
hour, 41 columns: 8 vital signs, 26 laboratory values, Age, Gender, Unit1, Unit2,
HospAdmTime, ICULOS (hours since ICU admission) and SepsisLabel. Missing values are `NaN`.

`read_physionet` turns a file, a folder of them or an archive (.tar, .tar.gz, .tgz, .zip)
into source frames for the canonical tables `patients`, `encounters`, `observations` and
`outcomes`, each with the provenance columns `_source_file` ("training_setA.tar.gz:
training_setA/p000001.psv") and `_source_line` (the line in that .psv; the header is line 1).
Nothing is validated here: riskcast.contracts does that, converting the challenge's US units
to the catalogue's canonical units.

Time. The challenge has no clock times, only ICULOS. Each stay gets a fixed, synthetic
admission time: 2000-01-01T00:00Z plus the numeric part of its id in hours (p000042 is
admitted at 2000-01-02T18:00Z), so later ids are admitted later and a split by time is
possible (a file whose stem has no number is placed by its position among the files read). A row's charttime is admit_time + ICULOS hours; discharge_time is the charttime of
the stay's last hour. All times are UTC.

Sepsis. `SepsisLabel` is already shifted by the challenge: it is 1 from 6 hours *before* the
clinical onset of sepsis (t_sepsis, Sepsis-3) onwards. The outcome row therefore has
event_time = charttime of the first row with SepsisLabel == 1, plus 6 hours, which is
t_sepsis. Labels are not shifted any other way. For a stay that is labelled from its first
row, the true onset may be earlier than this (it is at most that first charttime + 6 h).

Units are those the values are recorded in, which differ from the challenge's own table in
three places, decided from the data (training set A): Lactate is mmol/L (median 1.8; in mg/dL
it would be about 16), Magnesium is mg/dL (median 2.0; the table says "mmol/dL") and FiO2 is
a fraction (median 0.5; the table says %).

Malformed input never stops the other rows or files. Files are read as text and checked line
by line; what cannot be read comes back as rejected rows (riskcast.ingest.rejections, under
the key REJECTED) naming the file, line and rule, never the text:
- a file that is empty, holds NUL bytes (binary), or whose header is not UTF-8 or lacks
  challenge columns is rejected whole (`unreadable_file`, `missing_columns`); the other files
  are read;
- a line with the wrong number of fields, or with text in ICULOS (so no time), is rejected
  (`malformed_line`, `unparseable_value`) and contributes nothing else;
- a cell with text that is neither a number nor `NaN`/empty is rejected on its own
  (`unparseable_value`, naming the column) and counts as missing; the line's other cells go on;
- blank lines are skipped.
A path that cannot be read at all (not found, no .psv inside, a corrupt archive) raises
IngestError naming it.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np
import polars as pl

from riskcast.contracts import SOURCE_FILE, SOURCE_LINE, UTC_DATETIME
from riskcast.errors import IngestError
from riskcast.ingest.rejects import (
    MALFORMED_LINE,
    MISSING_COLUMNS,
    REJECTED,
    UNREADABLE_FILE,
    rejected_lines,
)

SOURCE = "physionet2019"
FORMAT = "physionet"  # the `table` of a rejected file, which would have fed all four tables

# Challenge column -> (catalogue variable, unit as recorded in the challenge data, UCUM).
CLINICAL_COLUMNS: dict[str, tuple[str, str]] = {
    "HR": ("heart_rate", "/min"),
    "O2Sat": ("spo2", "%"),
    "Temp": ("temperature", "Cel"),
    "SBP": ("sbp", "mm[Hg]"),
    "MAP": ("map", "mm[Hg]"),
    "DBP": ("dbp", "mm[Hg]"),
    "Resp": ("resp_rate", "/min"),
    "EtCO2": ("etco2", "mm[Hg]"),
    "BaseExcess": ("base_excess", "mmol/L"),
    "HCO3": ("bicarbonate", "mmol/L"),
    "FiO2": ("fio2", "1"),
    "pH": ("ph", "[pH]"),
    "PaCO2": ("paco2", "mm[Hg]"),
    "SaO2": ("sao2", "%"),
    "AST": ("ast", "U/L"),
    "BUN": ("urea", "mg/dL"),
    "Alkalinephos": ("alkaline_phosphatase", "U/L"),
    "Calcium": ("calcium", "mg/dL"),
    "Chloride": ("chloride", "mmol/L"),
    "Creatinine": ("creatinine", "mg/dL"),
    "Bilirubin_direct": ("bilirubin_direct", "mg/dL"),
    "Glucose": ("glucose", "mg/dL"),
    "Lactate": ("lactate", "mmol/L"),
    "Magnesium": ("magnesium", "mg/dL"),
    "Phosphate": ("phosphate", "mg/dL"),
    "Potassium": ("potassium", "mmol/L"),
    "Bilirubin_total": ("bilirubin", "mg/dL"),
    "TroponinI": ("troponin_i", "ng/mL"),
    "Hct": ("haematocrit", "%"),
    "Hgb": ("haemoglobin", "g/dL"),
    "PTT": ("ptt", "s"),
    "WBC": ("wbc", "10*3/uL"),
    "Fibrinogen": ("fibrinogen", "mg/dL"),
    "Platelets": ("platelets", "10*3/uL"),
}
STAY_COLUMNS = ("Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS", "SepsisLabel")
EXPECTED_COLUMNS = (*CLINICAL_COLUMNS, *STAY_COLUMNS)

ADMISSION_ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)
SEPSIS_ONSET_AFTER_FIRST_LABEL_HOURS = 6
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

_US_PER_HOUR = 3_600_000_000
_MAX_ID_HOURS = 10_000_000  # about 1,100 years after the anchor
_ANCHOR_US = int(ADMISSION_ANCHOR.timestamp()) * 1_000_000
_SITE_FROM_NAME = re.compile(r"training_?set_?([a-z])$", re.IGNORECASE)


@dataclass(frozen=True)
class _PsvFile:
    """One .psv file's bytes and how provenance names it."""

    label: str  # "training_setA.tar.gz:training_setA/p000001.psv"
    stem: str  # "p000001": patient_id and encounter_id
    data: bytes


def read_physionet(
    path: Path, *, site: str | None = None, limit: int | None = None
) -> dict[str, pl.DataFrame]:
    """Read PhysioNet 2019 challenge files into source frames for the four canonical tables.

    path: one .psv file, a folder of them (searched recursively) or a .tar, .tar.gz, .tgz or
        .zip archive holding them. Files are read in the order of their path names.
    site: the site every stay belongs to; by default taken from the archive or folder name
        ("training_setA" -> "physionet-A", anything else -> "physionet-<name>").
    limit: read only the first `limit` files (in path-name order), for quick looks and tests.

    Returns {"patients", "encounters", "observations", "outcomes"} -> frame with the contract
    columns plus `_source_file` and `_source_line`. Times are Datetime("us", "UTC"); an
    observation's `value` is Float64 in the unit recorded in `unit` (US units, see the module
    docstring); `variable` is the catalogue name. One patient and one encounter per file, both
    named by the file's stem; ward is "MICU" (Unit1), "SICU" (Unit2) or "ICU-unknown". A stay
    with any SepsisLabel == 1 gets one "sepsis" outcome at the first labelled row + 6 h.

    Beside them, under REJECTED, the files, lines and cells that could not be read (see the
    module docstring); the tables are missing when no file could be read.

    Raises IngestError when the path does not exist, holds no .psv file, or is an archive
    that cannot be opened.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of files, got {limit}")
    files, source_name = _read_files(Path(path), limit=limit)
    site = site or _site_from_name(source_name)
    stays = _stay_frame(files)
    rows, rejected_files = _parse_rows(files)
    if rows is None:
        return {REJECTED: rejected_files}
    rows = _with_charttime(rows, stays)
    summary = _stay_summary(rows)
    frames = {
        "patients": _patients(stays, summary, site),
        "encounters": _encounters(stays, summary, site),
        "observations": _observations(stays, rows),
        "outcomes": _outcomes(stays, summary),
    }
    rejected = pl.concat([rejected_files, _rejected_lines(stays, rows)])
    if rejected.height:
        frames[REJECTED] = rejected
    return frames


def non_psv_files(path: Path) -> list[Path]:
    """The files in a PhysioNet folder that are not .psv files (and so are not read), sorted."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and not _is_psv_name(p.name))


def looks_like_physionet(path: Path) -> bool:
    """True for a .psv file, a folder holding .psv files, or an archive holding them.

    Judged by file names only (an archive's member list is read, its files are not), so it
    is quick; read_physionet checks the headers. An archive that cannot be opened counts as
    PhysioNet (the only archive format riskcast reads), so that ingest quarantines it as
    unreadable instead of ignoring it.
    """
    path = Path(path)
    try:
        if path.is_dir():
            return any(p.is_file() and _is_psv_name(p.name) for p in path.rglob("*"))
        if not path.is_file():
            return False
        if _is_psv_name(path.name):
            return True
    except OSError:
        return False
    kind = _archive_kind(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                return any(_is_psv_name(name) for name in archive.namelist())
        if kind == "tar":
            with tarfile.open(path, "r:*") as archive:
                return any(member.isfile() and _is_psv_name(member.name) for member in archive)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error):
        return True
    return False


# ---------------------------------------------------------------- files


def _is_psv_name(name: str) -> bool:
    """A .psv file name, not a macOS resource fork ('._p000001.psv', '__MACOSX/...')."""
    base = PurePosixPath(name).name
    return base.lower().endswith(".psv") and not base.startswith("._") and "__MACOSX" not in name


def _archive_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    return None


def _without_archive_suffix(name: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _site_from_name(name: str) -> str:
    """'training_setA' -> 'physionet-A'; any other name -> 'physionet-<name>'."""
    match = _SITE_FROM_NAME.search(name)
    return f"physionet-{match.group(1).upper()}" if match else f"physionet-{name}"


def _read_files(path: Path, *, limit: int | None) -> tuple[list[_PsvFile], str]:
    """Every .psv file under path, sorted by name, and the name the site is derived from."""
    if not path.exists():
        raise IngestError(f"{path}: no such file or folder")
    kind = _archive_kind(path) if path.is_file() else None
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and _is_psv_name(p.name))[:limit]
        files = [_PsvFile(f"{path.name}/{p.relative_to(path).as_posix()}", p.stem, _read_bytes(p)) for p in found]
        source_name = path.resolve().name
    elif _is_psv_name(path.name):
        files = [_PsvFile(path.name, path.stem, _read_bytes(path))]
        source_name = path.resolve().parent.name
    elif kind is not None:
        files = _read_archive(path, kind, limit=limit)
        source_name = _without_archive_suffix(path.name)
    else:
        raise IngestError(
            f"{path.name}: not a PhysioNet 2019 source; expected a .psv file, a folder of them, "
            f"or a {', '.join(ARCHIVE_SUFFIXES)} archive holding them"
        )
    if not files:
        raise IngestError(f"{path.name}: no .psv files found (PhysioNet 2019 files are named like p000001.psv)")
    return files, source_name


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path.name}: cannot be read ({exc.strerror or exc})") from exc


def _read_archive(path: Path, kind: str, *, limit: int | None) -> list[_PsvFile]:
    """The .psv members of a tar or zip archive, sorted by member name, read into memory."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                names = sorted(n for n in archive.namelist() if _is_psv_name(n) and not n.endswith("/"))[:limit]
                return [_PsvFile(f"{path.name}:{n}", PurePosixPath(n).stem, archive.read(n)) for n in names]
        with tarfile.open(path, "r:*") as archive:
            # Read in archive order: seeking backwards in a compressed stream starts it over.
            members = [
                (m.name, archive.extractfile(m).read())  # type: ignore[union-attr]
                for m in archive
                if m.isfile() and _is_psv_name(m.name)
            ]
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error) as exc:
        # The library's message is not kept: it may quote the bytes it choked on.
        raise IngestError(f"{path.name}: cannot be read as a {kind} archive ({type(exc).__name__})") from exc
    members.sort(key=lambda member: member[0])
    return [_PsvFile(f"{path.name}:{name}", PurePosixPath(name).stem, data) for name, data in members[:limit]]


def _stay_frame(files: list[_PsvFile]) -> pl.DataFrame:
    """One row per file: its index, stem, provenance label and synthetic admission time."""
    hours = []
    for position, file in enumerate(files):
        digits = re.findall(r"\d+", file.stem)
        number = int(digits[-1]) if digits else 0
        # A stem without a usable number (none, or absurdly large) is placed by its position.
        hours.append(number if 0 < number < _MAX_ID_HOURS else position + 1)
    return pl.DataFrame(
        {
            "_file": pl.Series(range(len(files)), dtype=pl.UInt32),
            "_stem": [f.stem for f in files],
            "_label": [f.label for f in files],
            "_admit_time": pl.Series([_ANCHOR_US + h * _US_PER_HOUR for h in hours], dtype=pl.Int64).cast(UTC_DATETIME),
        }
    )


# ---------------------------------------------------------------- parsing


def _header(first_line: str) -> tuple[tuple[str, ...], list[str]]:
    """The header's column names, and the challenge columns it lacks."""
    header = tuple(field.strip() for field in first_line.rstrip("\r").split("|"))
    return header, [c for c in EXPECTED_COLUMNS if c not in header]


def _unreadable(file: _PsvFile, text: str | None) -> tuple[str, str] | None:
    """(rule, detail) when a file cannot be read at all, else None."""
    if not file.data.strip():
        return UNREADABLE_FILE, "the file is empty; expected the challenge's header line"
    if b"\x00" in file.data:
        return UNREADABLE_FILE, "the file is not UTF-8 text (it holds NUL bytes)"
    assert text is not None
    first_line = text.partition("\n")[0]
    if "\ufffd" in first_line:
        return UNREADABLE_FILE, "the header (line 1) is not UTF-8 text"
    _, missing = _header(first_line)
    if missing:
        return MISSING_COLUMNS, (
            f"header (line 1) lacks column(s) {', '.join(missing)}; a PhysioNet 2019 file has the "
            f"{len(EXPECTED_COLUMNS)} columns {'|'.join(EXPECTED_COLUMNS)}"
        )
    return None


def _parse_rows(files: list[_PsvFile]) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """All data lines of the readable files as one wide frame, in file and line order, and the
    files that could not be read as rejected rows (the frame is None when none could).

    Columns: _file, _line, _fields (how many fields the line has), the 41 challenge columns as
    Float64 (NaN and empty -> null), a Boolean `_bad_<column>` for each column where some cell
    held text that is not a number, `_wrong_fields` (the line has the wrong number of fields:
    all its columns are null) and `_malformed` (wrong number of fields, or text in ICULOS).
    Files are split into lines and fields in polars, all files sharing a header at once.
    """
    by_header: dict[tuple[str, ...], list[int]] = {}
    texts: dict[int, str] = {}
    rejected: list[tuple[str, str, str]] = []
    for index, file in enumerate(files):
        text = file.data.decode("utf-8-sig", errors="replace") if file.data.strip() and b"\x00" not in file.data else None
        problem = _unreadable(file, text)
        if problem is not None:
            rejected.append((file.label, *problem))
            continue
        assert text is not None
        texts[index] = text
        by_header.setdefault(_header(text.partition("\n")[0])[0], []).append(index)
    rejected_frame = pl.concat(
        [rejected_lines(FORMAT, label, [1], [rule], [detail]) for label, rule, detail in rejected]
    ) if rejected else rejected_lines(FORMAT, "", [], [], [])
    if not by_header:
        return None, rejected_frame
    parsed = [_parse_lines(header, indices, [texts[i] for i in indices]) for header, indices in by_header.items()]
    rows = pl.concat(parsed, how="diagonal")
    bad_flags = [c for c in rows.columns if c.startswith("_bad_")]
    rows = rows.with_columns(pl.col(bad_flags).fill_null(False)) if bad_flags else rows
    if len(parsed) > 1:
        rows = rows.sort("_file", "_line")
    no_time = [pl.col("_bad_ICULOS")] if "_bad_ICULOS" in rows.columns else []
    return rows.with_columns(pl.any_horizontal("_wrong_fields", *no_time).alias("_malformed")), rejected_frame


def _parse_lines(header: tuple[str, ...], indices: list[int], texts: list[str]) -> pl.DataFrame:
    """Parse the data lines of files that share one header (see _parse_rows)."""
    n_fields = len(header)
    lines = (
        pl.DataFrame({"_file": pl.Series(indices, dtype=pl.UInt32), "_text": texts})
        .with_columns(pl.col("_text").str.split("\n"))
        .with_columns(pl.int_ranges(1, pl.col("_text").list.len() + 1, dtype=pl.Int64).alias("_line"))
        .explode("_text", "_line")
        .filter(pl.col("_line") > 1)
        .with_columns(pl.col("_text").str.strip_chars_end("\r"))
        .filter(pl.col("_text").str.strip_chars() != "")
    )
    # One split more than the header has: a field there means too many, a null before it too few.
    fields = lines.select("_file", "_line", pl.col("_text").str.split_exact("|", n_fields).alias("_fields")).unnest(
        "_fields"
    )
    wrong_fields = pl.col(f"field_{n_fields - 1}").is_null() | pl.col(f"field_{n_fields}").is_not_null()
    counts = lines.select((pl.col("_text").str.count_matches("|", literal=True) + 1).cast(pl.Int64).alias("_fields"))
    text = pl.concat([fields, counts], how="horizontal").select(
        "_file",
        "_line",
        "_fields",
        pl.lit(n_fields, dtype=pl.Int64).alias("_header_fields"),
        wrong_fields.alias("_wrong_fields"),
        *[pl.when(~wrong_fields).then(pl.col(f"field_{header.index(c)}")).alias(c) for c in EXPECTED_COLUMNS],
    )
    return _numbers(text)


def _numbers(text: pl.DataFrame) -> pl.DataFrame:
    """Text cells -> Float64: 'NaN' and empty cells are null; other text is null and flagged.

    A flag column `_bad_<column>` is added only for columns where some cell is not a number,
    so clean data (the usual case) pays for one cast per column and nothing more.
    """
    numbers = text.with_columns(pl.col(c).cast(pl.Float64, strict=False).alias(f"_num_{c}") for c in EXPECTED_COLUMNS)
    not_numbers = numbers.select(
        (pl.col(c).is_not_null() & pl.col(f"_num_{c}").is_null()).any().alias(c) for c in EXPECTED_COLUMNS
    ).row(0, named=True)
    suspect = [c for c, any_text in not_numbers.items() if any_text]
    retried = []
    for c in suspect:  # e.g. " 98", "" or "abc": retry without surrounding blanks
        stripped = pl.col(c).str.strip_chars()
        number = stripped.cast(pl.Float64, strict=False)
        retried += [number.alias(f"_num_{c}"), ((stripped != "") & number.is_null()).alias(f"_bad_{c}")]
    numbers = numbers.with_columns(retried)
    bad = [c for c in suspect if numbers[f"_bad_{c}"].any()]
    return numbers.select(
        "_file",
        "_line",
        "_fields",
        "_header_fields",
        "_wrong_fields",
        *[pl.col(f"_num_{c}").fill_nan(None).alias(c) for c in EXPECTED_COLUMNS],
        *[f"_bad_{c}" for c in bad],
    )


# ---------------------------------------------------------------- tables


def _with_charttime(rows: pl.DataFrame, stays: pl.DataFrame) -> pl.DataFrame:
    """charttime = the stay's synthetic admit_time + ICULOS hours (null when ICULOS is missing)."""
    offset = pl.duration(microseconds=(pl.col("ICULOS") * _US_PER_HOUR).round().cast(pl.Int64))
    return rows.join(stays.select("_file", "_admit_time"), on="_file", how="left", maintain_order="left").with_columns(
        (pl.col("_admit_time") + offset).alias("_charttime")
    )


def _stay_summary(rows: pl.DataFrame) -> pl.DataFrame:
    """Per file with data: demographics, unit, last charttime and the first sepsis-labelled row."""
    labelled = (pl.col("SepsisLabel") == 1) & pl.col("_charttime").is_not_null()
    return rows.filter(~pl.col("_wrong_fields")).group_by("_file", maintain_order=True).agg(
        pl.col("_line").first().alias("_first_line"),
        pl.col("Age").drop_nulls().first().alias("_age"),
        pl.col("Gender").drop_nulls().first().alias("_gender"),
        (pl.col("Unit1") == 1).any().alias("_micu"),
        (pl.col("Unit2") == 1).any().alias("_sicu"),
        pl.col("_charttime").max().alias("_last_charttime"),
        pl.col("_charttime").filter(labelled).first().alias("_first_label_time"),
        pl.col("_line").filter(labelled).first().alias("_first_label_line"),
    )


def _provenance(line: str) -> list[pl.Expr]:
    return [pl.col("_label").alias(SOURCE_FILE), pl.col(line).cast(pl.Int64).alias(SOURCE_LINE)]


def _patients(stays: pl.DataFrame, summary: pl.DataFrame, site: str) -> pl.DataFrame:
    """One patient per file with data; Gender 0 -> female, 1 -> male, missing -> unknown."""
    gender = pl.col("_gender")
    sex = (
        pl.when(gender.is_null()).then(pl.lit("unknown"))
        .when(gender == 0).then(pl.lit("female"))
        .when(gender == 1).then(pl.lit("male"))
        .otherwise(gender.cast(pl.String))  # any other code is left for the contract to quarantine
    )
    return stays.join(summary, on="_file", how="inner", maintain_order="left").select(
        pl.col("_stem").alias("patient_id"),
        pl.lit(None, dtype=pl.Int64).alias("birth_year"),
        pl.col("_age").alias("age"),
        sex.alias("sex"),
        pl.lit(None, dtype=pl.String).alias("race_ethnicity"),
        pl.lit(site).alias("site"),
        *_provenance("_first_line"),
    )


def _encounters(stays: pl.DataFrame, summary: pl.DataFrame, site: str) -> pl.DataFrame:
    """One encounter (ICU stay) per file with data, named like its patient."""
    ward = (
        pl.when(pl.col("_micu")).then(pl.lit("MICU"))
        .when(pl.col("_sicu")).then(pl.lit("SICU"))
        .otherwise(pl.lit("ICU-unknown"))
    )
    return stays.join(summary, on="_file", how="inner", maintain_order="left").select(
        pl.col("_stem").alias("encounter_id"),
        pl.col("_stem").alias("patient_id"),
        pl.col("_admit_time").alias("admit_time"),
        pl.col("_last_charttime").alias("discharge_time"),
        ward.alias("ward"),
        pl.lit(site).alias("site"),
        *_provenance("_first_line"),
    )


def _outcomes(stays: pl.DataFrame, summary: pl.DataFrame) -> pl.DataFrame:
    """One "sepsis" event per labelled stay at t_sepsis = first SepsisLabel == 1 row + 6 h."""
    onset = pl.col("_first_label_time") + pl.duration(hours=SEPSIS_ONSET_AFTER_FIRST_LABEL_HOURS)
    return (
        stays.join(summary, on="_file", how="inner", maintain_order="left")
        .filter(pl.col("_first_label_time").is_not_null())
        .select(
            pl.col("_stem").alias("encounter_id"),
            onset.alias("event_time"),
            pl.lit("sepsis").alias("event_type"),
            *_provenance("_first_label_line"),
        )
    )


def _observations(stays: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Wide to long: one row per recorded clinical value, in file, line and column order.

    Malformed lines (see _rejected_lines) contribute nothing; a cell with text that is not a
    number is null here, like a missing one. np.nonzero over the cells to keep gives them in
    row-major order, so no sort is needed.
    """
    columns = list(CLINICAL_COLUMNS)
    values = rows.select(columns).to_numpy(order="c").reshape(rows.height, len(columns))
    keep = ~np.isnan(values) & ~rows["_malformed"].to_numpy()[:, None]
    row_index, column_index = np.nonzero(keep)
    row_index = pl.Series(row_index, dtype=pl.UInt32)
    column_index = pl.Series(column_index, dtype=pl.UInt32)
    file_index = rows["_file"].gather(row_index)
    variables = pl.Series([variable for variable, _ in CLINICAL_COLUMNS.values()], dtype=pl.String)
    units = pl.Series([unit for _, unit in CLINICAL_COLUMNS.values()], dtype=pl.String)
    return pl.DataFrame(
        {
            "encounter_id": stays["_stem"].gather(file_index),
            "charttime": rows["_charttime"].gather(row_index),
            "variable": variables.gather(column_index),
            "value": pl.Series(values[row_index.to_numpy(), column_index.to_numpy()], dtype=pl.Float64),
            "unit": units.gather(column_index),
            "source": pl.repeat(SOURCE, len(row_index), dtype=pl.String, eager=True),
            SOURCE_FILE: stays["_label"].gather(file_index),
            SOURCE_LINE: rows["_line"].gather(row_index),
        }
    )


def physionet_rows(path: Path, *, limit: int | None = None) -> pl.DataFrame:
    """One row per data line of the PhysioNet files under `path`, in file and line order.

    Columns: encounter_id (the file's stem, as read_physionet names the stay), source_file
    (provenance, as in the quarantine), file_name (the .psv's own name, e.g. p000001.psv),
    line (1 is the header), row (0-based position among the file's data lines), iculos
    (null when the line's ICULOS cannot be read) and time (the clock hour whose feature row
    describes the line: admit_time + ICULOS hours, rounded up to the hour). Predictions for
    outside scorers are keyed by these, so there is exactly one per line the files hold.
    """
    files, _ = _read_files(Path(path), limit=limit)
    stays = _stay_frame(files)
    parsed, _ = _parse_rows(files)
    if parsed is None:  # no file could be read: no rows to predict for
        return pl.DataFrame(schema={"encounter_id": pl.String, SOURCE_FILE: pl.String, "file_name": pl.String,
                                    "line": pl.Int64, "row": pl.Int64, "iculos": pl.Int64, "time": UTC_DATETIME})
    rows = _with_charttime(parsed, stays)
    stays = stays.with_columns(
        pl.Series("file_name", [PurePosixPath(f.label.split(":")[-1]).name for f in files], dtype=pl.String)
    )
    charttime = pl.col("_charttime")
    hour = charttime.dt.truncate("1h")
    return (
        rows.join(stays.select("_file", "_stem", "_label", "file_name"), on="_file", how="left", maintain_order="left")
        .select(
            pl.col("_stem").alias("encounter_id"),
            pl.col("_label").alias(SOURCE_FILE),
            "file_name",
            pl.col("_line").alias("line"),
            pl.int_range(pl.len()).over("_file").cast(pl.Int64).alias("row"),
            pl.col("ICULOS").cast(pl.Int64, strict=False).alias("iculos"),
            pl.when(charttime == hour).then(hour).otherwise(hour + pl.duration(hours=1)).alias("time"),
        )
    )


def _rejected_lines(stays: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Rejected rows for malformed lines and for cells that are not numbers, in file, line and column order.

    A line with the wrong number of fields is `malformed_line`; one whose ICULOS is text is
    `unparseable_value` (it has no time, so nothing on it is read); on any other line, each
    cell with text is `unparseable_value`, naming its column.
    """
    wrong = rows.filter(pl.col("_wrong_fields")).select(
        "_file", "_line", pl.lit(-1).alias("_order"), pl.lit(MALFORMED_LINE).alias("rule"),
        pl.format("line has {} fields; the header has {}", "_fields", "_header_fields").alias("detail"),
    )  # fmt: skip
    parts = [wrong]
    for order, column in enumerate(EXPECTED_COLUMNS):
        flag = f"_bad_{column}"
        if flag not in rows.columns:
            continue
        keep = pl.col(flag) & ~pl.col("_wrong_fields")
        if column != "ICULOS":
            keep = keep & ~pl.col("_malformed")
        detail = f"{column} is not a number" + ("; the line has no time, so none of it is read" if column == "ICULOS" else "")
        parts.append(
            rows.filter(keep).select(
                "_file", "_line", pl.lit(order).alias("_order"), pl.lit("unparseable_value").alias("rule"),
                pl.lit(detail).alias("detail"),
            )
        )  # fmt: skip
    found = pl.concat(parts).sort("_file", "_line", "_order")
    return found.join(stays.select("_file", "_label"), on="_file", how="left", maintain_order="left").select(
        pl.lit("observations").alias("table"),
        pl.col("_label").alias("source_file"),
        pl.col("_line").cast(pl.Int64).alias("source_line"),
        "rule",
        "detail",
        pl.lit("{}").alias("record"),
    )
