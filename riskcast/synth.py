"""The synthetic cohort: realistic ward data to run, test and demonstrate riskcast without patients.

`generate_cohort` returns the four canonical tables as *source* frames, exactly as a hospital
would hand them over: every column is text (times as ISO 8601 UTC with a "Z", numbers as plain
decimal strings, ACVPU as letters), with the contract columns of schemas/*.yaml and no
provenance columns (an ingest adapter adds `_source_file`/`_source_line` when it reads the
files that `write_cohort` writes). The same seed always gives the same tables; the clock is
never read (`now` defaults to 2026-01-15T12:00Z).

What is in it
-------------
- Patients: adult age (median ~70, 18-100), sex, race/ethnicity (White, Black, Hispanic,
  Asian, Other; the mix differs a little by site), a chronic-illness burden and a personal
  physiological baseline (COPD patients live at SpO2 88-92 %, kidney disease raises creatinine
  and urea, heart failure lowers blood pressure...). Some patients are readmitted; a
  patient's stays never overlap.
- Encounters: spread over the 60 days before `now` across `sites`, six wards per site
  ("north-medical-1" ... "north-surgical-6"); length of stay log-normal (median ~3.5 days,
  3 h minimum, 30 day cap). `admitted_fraction` of them are still admitted at `now`
  (discharge_time empty) and their data runs up to `now`.
- Observations (long format): ward vitals (heart_rate, resp_rate, sbp, dbp, temperature,
  spo2, avpu, o2_flow while on oxygen) in rounds on the ward's 4-hourly clock, 2-hourly or
  hourly when the patient looks sicker (as NEWS2 escalation asks), with missed rounds (more at
  night) and missed items; labs (metabolic panel, blood count, bilirubin, lactate and pH when
  sick) on admission (often in the emergency department, before admit_time), most mornings
  and every ~6 h when sick. Values follow the personal baseline, an admission illness that
  settles over a day or two, slow autocorrelated wander, a daily rhythm and measurement noise
  (respiratory rates are imprecise and often even). Oxygen is started when the *displayed*
  SpO2 falls below target (88 % for COPD, 92 % otherwise), at a flow that grows with the
  shortfall, and raises true SpO2; some COPD patients are on home oxygen throughout.
  Units follow the site's feed: even-numbered sites (first, third...) send UCUM and SI units,
  odd-numbered ones send common US spellings and units (bpm, mmHg, degF, creatinine and
  glucose in mg/dL, haemoglobin in g/dL...), and 5 % of rows come in the other feed's unit;
  values are converted with the catalogue's own conversions, so after validation every value
  is back in the canonical unit.
- Outcomes: 8 % of encounters deteriorate (icu_transfer, death or rapid_response, some rapid
  responses followed by ICU transfer), more often the old, chronically ill and acutely ill.
  Most are preceded by 6-24 h of drift; 15 % come with little warning (under 3 h). A drift is
  respiratory (65 %: SpO2 falls, RR and HR rise a little), septic (23 %: HR up, SBP down,
  fever or hypothermia, lactate and white cells up) or haemodynamic (12 %: SBP down, HR and
  lactate up); confusion comes last. ICU transfer and death end the ward stay (discharge_time
  = event time); a rapid response does not. Deteriorations still in the future at `now` are
  not reported (their drift may already be visible). Confounders keep the problem honest:
  abnormal baselines that never deteriorate (COPD, kidney disease), admission illness, and
  transient abnormal episodes that recover. A gradient-boosted model on riskcast's features
  reaches an AUROC of about 0.8-0.85 at a 12 h horizon (NEWS2 alone about 0.75), not 0.99.

Planted measurement bias (pulse oximetry)
-----------------------------------------
Pulse oximeters overestimate arterial oxygen saturation in Black patients, so that occult
hypoxaemia (SaO2 < 88 % with SpO2 92-96 %) is about three times as common as in White
patients (Sjoding et al., "Racial bias in pulse oximetry measurement", N Engl J Med 2020;
383:2477-8). With `pulse_ox_bias=True` (the default) every SpO2 reading of a patient whose
race_ethnicity is "Black" is the true saturation plus 2 points, more and noisier the lower
the true value (about +5.3 +/- 1.4 at a true 88 %), capped at 100. Staff act on what they
see, so oxygen is started later and the patient is observed less often than their true
saturation warrants. The deterioration process itself is identical in every group, so a
model trained on these data misses more deteriorations in Black patients only because of
the measurement: in our runs (5,000-16,000 encounters, half held out, alerting on the top
10 % of hours) the bias lowered the hour-level sensitivity of Black patients by about 0.1
(e.g. 0.54 -> 0.43) and left other groups unchanged. `pulse_ox_bias=False` removes it;
everything else, including every other patient's rows, is then identical. With a few
thousand encounters the groups still differ by chance (only ~50 Black patients deteriorate
in a held-out half), so audit with intervals that resample patients.

Malformed rows
--------------
`malformed_rate` adds (never replaces) bad rows: that share of the observation rows as
corrupted copies of clean rows (a unit that is wrong for the variable, an impossible value,
an unparseable value or time, an unknown variable name) or exact duplicates, plus a few bad
rows in the other tables. They are drawn from their own random stream after the clean data,
so the clean rows are the same whatever the rate; with `malformed_rate=0` every row passes
riskcast.contracts.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from riskcast.catalog import Catalog, load_catalog
from riskcast.errors import ConfigError

DEFAULT_NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
WINDOW_DAYS = 60
DETERIORATION_RATE = 0.08
PULSE_OX_AFFECTED_GROUP = "Black"
# Planted overestimate of SpO2 (points): offset + slope * (94 - true SpO2 when below 94), with
# noise of sd 0.5 + 0.15 * the same shortfall.
PULSE_OX_BIAS_OFFSET = 2.0
PULSE_OX_BIAS_SLOPE = 0.55
# How much less ill a patient looks per point of hypoxaemia the oximeter hides (severity units).
HIDDEN_HYPOXAEMIA_WEIGHT = 0.12
FORMATS = ("parquet", "csv")
TABLE_ORDER = ("patients", "encounters", "observations", "outcomes")
BLOCK_ENCOUNTERS = 5000
"""Stays whose observations are simulated at once (in admission order), each block from its own
random streams: memory grows with a block, not with the cohort. Part of a cohort's definition
(the same seed and block size give the same rows); a cohort of one block is the cohort riskcast
made before blocks."""

WARDS = ("medical-1", "medical-2", "respiratory-3", "cardiology-4", "elderly-care-5", "surgical-6")
RACE_GROUPS = ("White", "Black", "Hispanic", "Asian", "Other")
# Proportions for even- and odd-numbered sites (a little different, as real catchments are).
RACE_MIX = ((0.48, 0.31, 0.11, 0.07, 0.03), (0.62, 0.19, 0.09, 0.07, 0.03))
RACE_NOT_RECORDED = 0.01
SEX_MIX = (("female", 0.505), ("male", 0.49), ("other", 0.002), ("unknown", 0.003))

VITALS = ("heart_rate", "resp_rate", "sbp", "dbp", "temperature", "spo2", "avpu", "o2_flow")
LAB_PANELS = {
    "metabolic": ("creatinine", "urea", "potassium", "sodium", "bicarbonate", "glucose"),
    "blood_count": ("wbc", "platelets", "haemoglobin"),
    "liver": ("bilirubin",),
    "lactate": ("lactate",),
    "gas": ("ph",),
}
# The unit each feed sends a variable in (None: no unit, allowed for dimensionless scores).
FEED_UNITS: tuple[dict[str, str | None], ...] = (
    {
        "heart_rate": "/min", "resp_rate": "/min", "sbp": "mm[Hg]", "dbp": "mm[Hg]",
        "temperature": "Cel", "spo2": "%", "avpu": "{score}", "o2_flow": "L/min",
        "lactate": "mmol/L", "creatinine": "umol/L", "urea": "mmol/L", "wbc": "10*9/L",
        "platelets": "10*9/L", "bilirubin": "umol/L", "haemoglobin": "g/L", "glucose": "mmol/L",
        "potassium": "mmol/L", "sodium": "mmol/L", "bicarbonate": "mmol/L", "ph": "[pH]",
    },
    {
        "heart_rate": "bpm", "resp_rate": "breaths/min", "sbp": "mmHg", "dbp": "mmHg",
        "temperature": "degF", "spo2": "%", "avpu": None, "o2_flow": "l/min",
        "lactate": "mmol/l", "creatinine": "mg/dL", "urea": "mg/dL", "wbc": "K/uL",
        "platelets": "K/uL", "bilirubin": "mg/dL", "haemoglobin": "g/dL", "glucose": "mg/dL",
        "potassium": "mEq/L", "sodium": "mEq/L", "bicarbonate": "mEq/L", "ph": "pH",
    },
)
OTHER_FEED_SHARE = 0.05
# Decimals a value is recorded with, by canonical unit it is sent in (default: the catalogue's).
SOURCE_DECIMALS = {
    ("temperature", "[degF]"): 1, ("creatinine", "mg/dL"): 2, ("urea", "mg/dL"): 0,
    ("bilirubin", "mg/dL"): 1, ("haemoglobin", "g/dL"): 1, ("glucose", "mg/dL"): 0,
    ("lactate", "mmol/L"): 1, ("ph", "[pH]"): 2, ("wbc", "10*9/L"): 1, ("wbc", "10*3/uL"): 1,
}
# Physiological limits of the simulation (well inside the catalogue's plausible ranges).
PHYSIOLOGICAL_LIMITS = {
    "heart_rate": (28, 210), "resp_rate": (5, 55), "sbp": (55, 240), "dbp": (25, 140),
    "temperature": (33.0, 42.0), "spo2": (55, 100), "o2_flow": (0, 15), "lactate": (0.3, 20),
    "creatinine": (20, 1400), "urea": (1.0, 60), "wbc": (0.3, 80), "platelets": (5, 1200),
    "bilirubin": (2, 600), "haemoglobin": (45, 200), "glucose": (1.8, 45), "potassium": (2.0, 8.5),
    "sodium": (112, 168), "bicarbonate": (5, 45), "ph": (6.85, 7.65),
}
AVPU_LETTERS = np.array(["A", "C", "V", "P", "U"])
# How a deterioration shows: respiratory failure, sepsis, or haemodynamic (cardiac, bleeding).
DRIFT_KINDS = ("respiratory", "sepsis", "haemodynamic")
DRIFT_KIND_MIX = (0.65, 0.23, 0.12)
# Change per unit of severity: (admission illness and transient episodes, deterioration by kind).
EFFECTS = {
    "heart_rate": (28.0, (8.0, 32.0, 28.0)),
    "resp_rate": (8.0, (5.0, 9.0, 6.0)),
    "sbp": (-25.0, (-5.0, -32.0, -38.0)),
    "spo2": (-6.0, (-12.0, -6.0, -4.0)),
    "lactate": (2.5, (1.5, 4.0, 3.5)),
}


# ------------------------------------------------------------------ public API


def generate_cohort(
    n_encounters: int,
    *,
    seed: int = 0,
    now: datetime | None = None,
    pulse_ox_bias: bool = True,
    malformed_rate: float = 0.005,
    admitted_fraction: float = 0.15,
    sites: tuple[str, ...] = ("north", "south"),
    block_encounters: int = BLOCK_ENCOUNTERS,
) -> dict[str, pl.DataFrame]:
    """A synthetic cohort of `n_encounters` ward stays as source frames (see the module docstring).

    Returns {"patients", "encounters", "observations", "outcomes"}: text columns named as in
    schemas/*.yaml, times in UTC. `now` (timezone-aware; default 2026-01-15T12:00Z) is the end
    of the data: stays run over the 60 days before it and `admitted_fraction` of them are
    still open at it. Deterministic for a given seed and arguments. The observations are
    simulated `block_encounters` stays at a time (see BLOCK_ENCOUNTERS); `write_synthetic_cohort`
    writes the same cohort to files without holding it whole.
    """
    parts: dict[str, list[pl.DataFrame]] = {table: [] for table in TABLE_ORDER}
    for table, frame in _cohort_parts(
        n_encounters, seed=seed, now=now, pulse_ox_bias=pulse_ox_bias, malformed_rate=malformed_rate,
        admitted_fraction=admitted_fraction, sites=sites, block_encounters=block_encounters,
    ):  # fmt: skip
        parts[table].append(frame)
    return {table: pl.concat(frames) for table, frames in parts.items()}


@dataclass(frozen=True)
class WrittenCohort:
    """What `write_synthetic_cohort` wrote: the file of each table and its number of rows."""

    paths: list[Path]
    rows: dict[str, int]


def write_synthetic_cohort(
    n_encounters: int,
    out_dir: Path,
    *,
    fmt: str = "parquet",
    seed: int = 0,
    now: datetime | None = None,
    pulse_ox_bias: bool = True,
    malformed_rate: float = 0.005,
    admitted_fraction: float = 0.15,
    sites: tuple[str, ...] = ("north", "south"),
    block_encounters: int = BLOCK_ENCOUNTERS,
) -> WrittenCohort:
    """Simulate the cohort `generate_cohort` returns for the same arguments and write it to
    `<out_dir>/<table>.<fmt>`, block by block, so that memory grows with a block of
    encounters, not with the cohort (the people and stays themselves are small and held whole).

    Files are written under temporary names and renamed into place once every table is
    complete, so a reader never sees half a cohort.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown cohort format {fmt!r}; choose one of {', '.join(FORMATS)}")
    parts = _cohort_parts(
        n_encounters, seed=seed, now=now, pulse_ox_bias=pulse_ox_bias, malformed_rate=malformed_rate,
        admitted_fraction=admitted_fraction, sites=sites, block_encounters=block_encounters,
    )  # fmt: skip
    rows = dict.fromkeys(TABLE_ORDER, 0)
    with _TableFiles(Path(out_dir), fmt) as files:
        for table, frame in parts:
            files.append(table, frame)
            rows[table] += frame.height
        paths = files.commit(TABLE_ORDER)
    return WrittenCohort(paths, rows)


def write_cohort(tables: dict[str, pl.DataFrame], out_dir: Path, *, fmt: str = "parquet") -> list[Path]:
    """Write each table to `<out_dir>/<table>.<fmt>` (parquet or csv); returns the paths.

    Each file is written under a temporary name in the same folder and renamed into place, so
    a reader never sees half a file. CSV leaves empty cells for missing values.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown cohort format {fmt!r}; choose one of {', '.join(FORMATS)}")
    with _TableFiles(Path(out_dir), fmt) as files:
        for table, frame in tables.items():
            files.append(table, frame)
        return files.commit(list(tables))


class _TableFiles:
    """One file per table, appended part by part under a temporary name; `commit` renames them all.

    Leaving the `with` block without a commit (an error, an interrupt) removes the temporary files.
    """

    def __init__(self, out_dir: Path, fmt: str) -> None:
        self.out_dir = out_dir
        self.fmt = fmt
        self._temporary: dict[str, Path] = {}
        self._writers: dict[str, Any] = {}

    def __enter__(self) -> _TableFiles:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self

    def append(self, table: str, frame: pl.DataFrame) -> None:
        if table not in self._temporary:
            handle, temporary = tempfile.mkstemp(prefix=f".{table}.", suffix=f".{self.fmt}.tmp", dir=self.out_dir)
            os.close(handle)
            self._temporary[table] = Path(temporary)
        path = self._temporary[table]
        if self.fmt == "csv":
            with path.open("ab") as handle:
                frame.write_csv(handle, include_header=table not in self._writers)
            self._writers[table] = None
            return
        arrow = frame.to_arrow()
        if table not in self._writers:
            self._writers[table] = pq.ParquetWriter(path, arrow.schema, compression="zstd")
        self._writers[table].write_table(arrow)

    def commit(self, tables: list[str]) -> list[Path]:
        """Close the files and rename each to `<table>.<fmt>`, in the order of `tables`."""
        for writer in self._writers.values():
            if writer is not None:
                writer.close()
        self._writers.clear()
        paths = []
        for table in tables:
            path = self.out_dir / f"{table}.{self.fmt}"
            os.replace(self._temporary.pop(table), path)
            paths.append(path)
        return paths

    def __exit__(self, *exc: object) -> None:
        for writer in self._writers.values():
            if writer is not None:
                writer.close()
        for temporary in self._temporary.values():
            temporary.unlink(missing_ok=True)


def _cohort_parts(
    n_encounters: int,
    *,
    seed: int,
    now: datetime | None,
    pulse_ox_bias: bool,
    malformed_rate: float,
    admitted_fraction: float,
    sites: tuple[str, ...],
    block_encounters: int,
) -> Iterator[tuple[str, pl.DataFrame]]:
    """(table, rows) in the order they are made: patients, encounters, the observations of
    each block of encounters (the outcomes after the first block).

    The people and stays are drawn whole (they are small); the hourly grid, vitals and labs
    of each block come from that block's own random streams (the first block's are the
    cohort's, so a cohort of one block is what it was before blocks).
    """
    _check_arguments(n_encounters, now, malformed_rate, admitted_fraction, sites)
    if isinstance(block_encounters, bool) or not isinstance(block_encounters, int) or block_encounters < 1:
        raise ConfigError(f"block_encounters must be a positive whole number, got {block_encounters!r}")
    now = (now or DEFAULT_NOW).astimezone(timezone.utc)
    now_hours = now.timestamp() / 3600.0
    catalog = load_catalog()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    rng_people, rng_stays, rng_course, rng_vitals, rng_labs, rng_oximetry, rng_malformed = streams

    patients = _patients(n_encounters, len(sites), rng_people)
    stays = _stays(n_encounters, patients, now_hours, admitted_fraction, rng_stays, rng_course)
    patients, stays = _separate_overlapping_stays(patients, stays)
    patient_ids = _patient_ids(len(patients.age), rng_people)
    malformed = malformed_rate > 0
    patients_table = _patients_table(patients, stays, sites, patient_ids)
    encounters_table = _encounters_table(stays, patients, sites, patient_ids)
    yield "patients", _malformed_patients(patients_table, malformed_rate, rng_malformed) if malformed else patients_table
    yield "encounters", _malformed_encounters(encounters_table, malformed_rate, rng_malformed) if malformed else encounters_table

    salt = None
    for block, first in enumerate(range(0, stays.n, block_encounters)):
        if block == 0:
            rng_block_vitals, rng_block_labs, rng_block_oximetry, rng_block_malformed = rng_vitals, rng_labs, rng_oximetry, rng_malformed
        else:
            block_streams = np.random.SeedSequence(seed, spawn_key=(len(streams), block)).spawn(4)
            rng_block_vitals, rng_block_labs, rng_block_oximetry, rng_block_malformed = (
                np.random.default_rng(s) for s in block_streams
            )
        block_stays = stays.take(np.arange(first, min(first + block_encounters, stays.n)))
        grid = _hourly_grid(block_stays, rng_block_vitals)
        oximetry = _oximetry(
            grid, block_stays, patients, pulse_ox_bias=pulse_ox_bias, rng=rng_block_vitals, rng_oximetry=rng_block_oximetry
        )
        is_round = _ward_rounds(grid, block_stays, patients, oximetry, rng_block_vitals)
        vitals = _vital_signs(grid, is_round, oximetry, block_stays, patients, rng_block_vitals)
        del grid, oximetry, is_round
        labs = _lab_results(block_stays, patients, rng_block_labs)
        if salt is None:  # one salt for the cohort, drawn after the first block's labs
            salt = int(rng_labs.integers(2**62))
        observations = _observations_table(vitals + labs, block_stays, patients, catalog, salt=salt, first_encounter=first)
        if malformed:
            observations = _malformed_observations(observations, malformed_rate, catalog, rng_block_malformed)
        yield "observations", observations
        if block == 0:
            outcomes = _outcomes_table(stays, now_hours)
            yield "outcomes", _malformed_outcomes(outcomes, malformed_rate, rng_malformed) if malformed else outcomes


def _check_arguments(
    n_encounters: int, now: datetime | None, malformed_rate: float, admitted_fraction: float, sites: tuple[str, ...]
) -> None:
    if isinstance(n_encounters, bool) or not isinstance(n_encounters, int) or n_encounters < 1:
        raise ConfigError(f"n_encounters must be a positive whole number, got {n_encounters!r}")
    if now is not None and now.tzinfo is None:
        raise ConfigError("now must be timezone-aware (e.g. datetime(2026, 1, 15, 12, tzinfo=timezone.utc))")
    if not 0.0 <= malformed_rate <= 0.5:
        raise ConfigError(f"malformed_rate must be between 0 and 0.5, got {malformed_rate!r}")
    if not 0.0 <= admitted_fraction <= 1.0:
        raise ConfigError(f"admitted_fraction must be between 0 and 1, got {admitted_fraction!r}")
    if not sites or any(not isinstance(s, str) or not s.strip() for s in sites) or len(set(sites)) != len(sites):
        raise ConfigError(f"sites must be distinct, non-empty names, got {sites!r}")


# ------------------------------------------------------------------ people and stays


@dataclass(frozen=True)
class _People:
    """Per-patient attributes (arrays indexed by patient)."""

    site: np.ndarray  # site index
    age: np.ndarray  # years, at first admission
    sex: np.ndarray  # str
    race: np.ndarray  # str or None
    chronic: np.ndarray  # chronic-illness burden, 0-1
    copd: np.ndarray
    home_oxygen: np.ndarray
    kidney: np.ndarray
    heart_failure: np.ndarray
    diabetes: np.ndarray
    dementia: np.ndarray
    baseline: dict[str, np.ndarray]  # canonical units

    def take(self, index: np.ndarray) -> _People:
        fields = {k: v[index] for k, v in self.__dict__.items() if k != "baseline"}
        return _People(**fields, baseline={k: v[index] for k, v in self.baseline.items()})

    @property
    def black(self) -> np.ndarray:
        return self.race == PULSE_OX_AFFECTED_GROUP


def _patients(n: int, n_sites: int, rng: np.random.Generator) -> _People:
    """n patients with demographics, chronic illness and a personal baseline."""
    site = rng.integers(n_sites, size=n)
    age = np.clip(18 + 82 * rng.beta(2.4, 1.5, size=n), 18, 100)
    sex = np.array([s for s, _ in SEX_MIX])[_categorical(rng, np.array([p for _, p in SEX_MIX]), n)]
    race = np.empty(n, dtype=object)
    mix = np.array(RACE_MIX)[site % 2]
    race[:] = np.array(RACE_GROUPS, dtype=object)[_categorical(rng, mix, n)]
    race[rng.random(n) < RACE_NOT_RECORDED] = None
    chronic = np.clip(rng.beta(1.3, 4.5, size=n) + 0.006 * (age - 65), 0, 1)
    copd = rng.random(n) < 0.05 + 0.15 * chronic
    home_oxygen = copd & (rng.random(n) < 0.3)
    kidney = rng.random(n) < 0.04 + 0.2 * chronic + 0.002 * np.maximum(age - 60, 0)
    heart_failure = rng.random(n) < 0.04 + 0.15 * chronic
    diabetes = rng.random(n) < 0.17
    dementia = (age > 75) & (rng.random(n) < 0.12)
    normal = rng.standard_normal
    sbp = 122 + 0.3 * (age - 60) + 14 * normal(n) - 8 * heart_failure
    baseline = {
        "heart_rate": 77 + 9 * normal(n) + 6 * chronic + 5 * copd,
        "resp_rate": 15.5 + 1.6 * normal(n) + 2.5 * copd + 2 * chronic,
        "sbp": sbp,
        "dbp": 0.45 * sbp + 18 + 6 * normal(n) - 0.12 * (age - 60),
        "temperature": 36.75 + 0.22 * normal(n) - 0.004 * (age - 60),
        "spo2": np.minimum(99.5, 97.2 + 1.0 * normal(n) - 1.8 * chronic - 1.0 * heart_failure) - copd * rng.uniform(4, 8, n),
        "lactate": np.exp(np.log(1.1) + 0.3 * normal(n)),
        "creatinine": np.exp(np.log(78) + 0.22 * normal(n) + 0.1 * (sex == "male")) * np.where(kidney, rng.uniform(1.6, 4.5, n), 1.0),
        "urea": np.exp(np.log(5.5) + 0.25 * normal(n) + 0.004 * (age - 60)) * np.where(kidney, rng.uniform(1.5, 3.0, n), 1.0),
        "wbc": np.exp(np.log(7.2) + 0.25 * normal(n)),
        "platelets": np.maximum(60, 255 + 65 * normal(n)),
        "bilirubin": np.exp(np.log(9) + 0.4 * normal(n)),
        "haemoglobin": 132 + 13 * normal(n) + 10 * (sex == "male") - 22 * chronic - 12 * kidney,
        "glucose": 5.6 + 0.7 * normal(n) + diabetes * np.abs(4 + 2.5 * normal(n)),
        "potassium": 4.2 + 0.3 * normal(n) + 0.4 * kidney,
        "sodium": 139 + 2.5 * normal(n),
        "bicarbonate": 25 + 2 * normal(n) + 3 * copd - 2 * kidney,
        "ph": 7.40 + 0.025 * normal(n),
    }
    return _People(site, age, sex, race, chronic, copd, home_oxygen, kidney, heart_failure, diabetes, dementia, baseline)


def _categorical(rng: np.random.Generator, probabilities: np.ndarray, n: int) -> np.ndarray:
    """n draws from a categorical distribution; probabilities is (k,) or one (n, k) row per draw."""
    cumulative = np.cumsum(np.broadcast_to(probabilities, (n, probabilities.shape[-1])), axis=1)
    cumulative /= cumulative[:, -1:]
    return np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), probabilities.shape[-1] - 1)


@dataclass(frozen=True)
class _Stays:
    """Per-encounter attributes (arrays indexed by encounter, in admission order).

    Times are hours since the Unix epoch (UTC); durations are hours since admission.
    """

    patient: np.ndarray
    ward: np.ndarray  # ward index within the site
    admit: np.ndarray
    length: np.ndarray  # hours from admission to leaving the ward (event or discharge)
    admitted: np.ndarray  # still on the ward at `now`
    data_end: np.ndarray  # last moment with data: discharge, or now
    acuity: np.ndarray  # admission illness (severity units), settling with time constant
    acuity_hours: np.ndarray
    infection: np.ndarray
    temperature_response: np.ndarray  # degC per unit of background severity
    drift_kind: np.ndarray  # index into DRIFT_KINDS
    drift_temperature: np.ndarray  # degC per unit of deterioration severity
    response: dict[str, np.ndarray]  # per-encounter strength of each physiological response
    episode_start: np.ndarray  # (n, 3) transient abnormal episodes, hours since admission
    episode_hours: np.ndarray
    episode_size: np.ndarray
    event_type: np.ndarray  # "", "icu_transfer", "death", "rapid_response"
    event_hours: np.ndarray  # hours since admission (nan: no event)
    icu_after_rapid_response: np.ndarray  # hours since admission of a later ICU transfer (nan: none)
    drift_hours: np.ndarray
    drift_size: np.ndarray
    drift_power: np.ndarray
    recovery_hours: np.ndarray

    def take(self, index: np.ndarray) -> _Stays:
        fields = {k: v[index] for k, v in self.__dict__.items() if k != "response"}
        return _Stays(**fields, response={k: v[index] for k, v in self.response.items()})

    @property
    def n(self) -> int:
        return len(self.patient)


def _stays(
    n: int, people: _People, now_hours: float, admitted_fraction: float, rng: np.random.Generator, rng_course: np.random.Generator
) -> _Stays:
    """n ward stays: who, where, when, how long, and the course of each illness."""
    # Most patients have one stay in the window; about one in seven comes back (1 + Poisson(0.17) stays).
    stays_per_patient = 1 + rng.poisson(0.17, len(people.age))
    patient = rng.permutation(np.repeat(np.arange(len(people.age)), stays_per_patient)[:n])
    age, chronic = people.age[patient], people.chronic[patient]
    ward_weights = np.column_stack([
        np.full(n, 1.0), np.full(n, 1.0), 0.3 + 3 * people.copd[patient], 0.3 + 2.5 * people.heart_failure[patient],
        0.2 + 2.0 * (age >= 78), np.full(n, 0.6),
    ])
    ward = _categorical(rng, ward_weights, n)
    planned = np.clip(np.exp(np.log(78) + 0.8 * rng.standard_normal(n) + 0.35 * chronic), 3, 720)
    acuity = 0.45 * rng.beta(2, 5, n) + 0.1 * chronic
    acuity_hours = rng.uniform(12, 36, n)
    infection = rng.random(n) < 0.35

    # Deterioration: an exact share of encounters, more likely when old, chronically or acutely ill.
    n_events = round(DETERIORATION_RATE * n)
    risk = np.exp(1.1 * chronic + 0.02 * (age - 65) + 2.2 * acuity)
    deteriorates = np.zeros(n, dtype=bool)
    deteriorates[rng.choice(n, size=n_events, replace=False, p=risk / risk.sum())] = True
    u = rng.random(n)
    event_type = np.where(~deteriorates, "", np.where(u < 0.15, "death", np.where(u < 0.6, "icu_transfer", "rapid_response")))
    event_hours = np.where(deteriorates, np.clip(np.exp(np.log(40) + 0.9 * rng.standard_normal(n)), 2, 600), np.nan)
    rapid = event_type == "rapid_response"
    then_icu = rapid & (rng.random(n) < 0.3)
    icu_after = np.where(then_icu, event_hours + rng.uniform(1, 10, n), np.nan)
    little_warning = rng.random(n) < 0.15
    drift_hours = np.where(little_warning, rng.uniform(0.5, 3, n), rng.uniform(6, 24, n))
    drift_size = np.where(little_warning, rng.uniform(0.3, 0.6, n), rng.uniform(0.7, 1.3, n))
    drift_power = rng.uniform(0.8, 1.5, n)
    recovery_hours = rng.uniform(4, 16, n)
    planned = np.where(rapid & ~then_icu, np.clip(np.maximum(planned, event_hours + rng.uniform(24, 120, n)), 3, 720), planned)
    length = np.where(np.isin(event_type, ("death", "icu_transfer")), event_hours, np.where(then_icu, icu_after, planned))

    # Transient abnormal episodes that recover on their own (up to three per stay).
    n_episodes = np.minimum(rng.poisson(length / 24 * (0.1 + 0.25 * chronic)), 3)
    episode_start = rng.uniform(0, 1, (n, 3)) * length[:, None]
    episode_hours = rng.uniform(3, 12, (n, 3))
    episode_size = rng.uniform(0.25, 0.65, (n, 3)) * (np.arange(3)[None, :] < n_episodes[:, None])

    # Who is still on the ward at `now` (length-biased, as a census is); the others left before it.
    admitted = np.zeros(n, dtype=bool)
    n_admitted = round(admitted_fraction * n)
    if n_admitted:
        admitted[rng.choice(n, size=n_admitted, replace=False, p=length / length.sum())] = True
    window = WINDOW_DAYS * 24.0
    admit = np.where(
        admitted,
        now_hours - rng.uniform(0.001, 1, n) * length,
        now_hours - window + rng.uniform(0, 1, n) * (window - length),
    )
    admit = np.round(admit * 60) / 60  # whole minutes
    data_end = np.where(admitted, now_hours, admit + length)

    response = {k: np.exp(0.3 * rng_course.standard_normal(n)) for k in ("heart_rate", "resp_rate", "pressure", "spo2", "avpu", "labs")}
    septic_fever = np.where(rng_course.random(n) < 0.12, -1.2, 1.7) * response["labs"]
    temperature_response = np.where(infection, septic_fever, rng_course.uniform(-0.2, 0.5, n))
    drift_kind = _categorical(rng_course, np.array(DRIFT_KIND_MIX), n)
    drift_temperature = np.choose(drift_kind, [rng_course.uniform(0, 1.2, n), septic_fever, rng_course.uniform(-0.3, 0.3, n)])
    stays = _Stays(
        patient=patient, ward=ward, admit=admit, length=length, admitted=admitted, data_end=data_end, acuity=acuity,
        acuity_hours=acuity_hours, infection=infection, temperature_response=temperature_response, drift_kind=drift_kind,
        drift_temperature=drift_temperature, response=response,
        episode_start=episode_start, episode_hours=episode_hours, episode_size=episode_size, event_type=event_type,
        event_hours=event_hours, icu_after_rapid_response=icu_after, drift_hours=drift_hours, drift_size=drift_size,
        drift_power=drift_power, recovery_hours=recovery_hours,
    )
    return stays.take(np.argsort(admit, kind="stable"))


def _separate_overlapping_stays(people: _People, stays: _Stays) -> tuple[_People, _Stays]:
    """Give a stay that overlaps an earlier stay of the same patient to a new patient.

    The new patient copies the original's attributes (the illness course was drawn for them),
    so nothing else changes; only the readmission link is dropped.
    """
    end = np.where(stays.admitted, np.inf, stays.admit + stays.length)
    frame = pl.DataFrame({"row": np.arange(stays.n), "patient": stays.patient, "admit": stays.admit, "end": end})
    earlier = frame.sort("patient", "admit", "row").with_columns(
        pl.col("end").cum_max().shift(1).over("patient").alias("earlier_end")
    )
    moved = earlier.filter(pl.col("admit") < pl.col("earlier_end"))["row"].sort().to_numpy()
    if len(moved) == 0:
        return people, stays
    n_people = len(people.age)
    new_patient = stays.patient.copy()
    new_patient[moved] = n_people + np.arange(len(moved))
    people = people.take(np.r_[np.arange(n_people), stays.patient[moved]])
    return people, _Stays(**{**stays.__dict__, "patient": new_patient})


def _illness(stays: _Stays, encounter: np.ndarray, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latent severity at `hours` since admission, in two parts: (background, deterioration).

    Background is the admission illness settling and transient episodes that recover;
    deterioration is the drift towards the event (and, after a rapid response, recovery or
    persistence until ICU). Severity 0 is well; about 1 is a patient who needs intensive care.
    """
    background = stays.acuity[encounter] * np.exp(-np.maximum(hours, 0) / stays.acuity_hours[encounter])
    for k in range(stays.episode_start.shape[1]):
        phase = (hours - stays.episode_start[encounter, k]) / stays.episode_hours[encounter, k]
        inside = (phase > 0) & (phase < 1)
        background = background + np.where(inside, stays.episode_size[encounter, k] * np.sin(np.pi * np.clip(phase, 0, 1)), 0)
    event = stays.event_hours[encounter]
    has_event = ~np.isnan(event)
    event = np.where(has_event, event, np.inf)
    size, drift = stays.drift_size[encounter], stays.drift_hours[encounter]
    ramp = np.clip((hours - (event - drift)) / drift, 0, 1) ** stays.drift_power[encounter]
    after = hours > event
    still_ill = ~np.isnan(stays.icu_after_rapid_response[encounter])
    recovery = np.where(still_ill, 1.0, np.exp(-np.maximum(hours - event, 0) / stays.recovery_hours[encounter]))
    return background, np.where(has_event, size * np.where(after, recovery, ramp), 0)


def _severity(stays: _Stays, encounter: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Total latent severity at `hours` since admission (see _illness)."""
    background, deterioration = _illness(stays, encounter, hours)
    return background + deterioration


def _effect(name: str, stays: _Stays, encounter: np.ndarray, background: np.ndarray, deterioration: np.ndarray) -> np.ndarray:
    """Change in a variable from both parts of the severity, by the kind of deterioration (see EFFECTS)."""
    generic, by_kind = EFFECTS[name]
    return generic * background + np.array(by_kind)[stays.drift_kind[encounter]] * deterioration


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, position): for owners with counts[i] items each, who owns each item and its index."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(int(counts.sum())) - np.repeat(starts, counts)


# ------------------------------------------------------------------ vitals


@dataclass(frozen=True)
class _Grid:
    """Every hour of every stay (after the admission observations, its first slot).

    Arrays are aligned, stay after stay in admission order. Random draws for the vitals are
    made for every slot, rounds or not, so that which slots become rounds never shifts the
    random numbers of other patients.
    """

    encounter: np.ndarray
    time: np.ndarray  # hours since epoch, jittered as it would be charted, whole minutes
    slot: np.ndarray  # the clock hour (hours since epoch) of the slot
    first: np.ndarray  # the admission observations
    background: np.ndarray
    deterioration: np.ndarray

    @property
    def severity(self) -> np.ndarray:
        return self.background + self.deterioration

    def __len__(self) -> int:
        return len(self.encounter)


def _hourly_grid(stays: _Stays, rng: np.random.Generator) -> _Grid:
    """Admission observations 6-36 min after admission, then every clock hour up to the end of the data."""
    first_slot = np.ceil(stays.admit + 0.75)
    last_slot = np.floor(stays.data_end)
    n_slots = 1 + np.maximum(last_slot - first_slot + 1, 0).astype(np.int64)
    encounter, position = _expand(n_slots)
    first = position == 0
    admission_time = stays.admit + rng.uniform(0.1, 0.6, stays.n)
    slot = first_slot[encounter] + position - 1
    jitter = rng.integers(0, 41, len(encounter)) / 60
    time = np.round(np.where(first, admission_time[encounter], slot + jitter) * 60) / 60
    background, deterioration = _illness(stays, encounter, time - stays.admit[encounter])
    return _Grid(encounter, time, slot, first, background, deterioration)


@dataclass(frozen=True)
class _Oximetry:
    """True SpO2 on room air along the grid, and what the oximeter would display."""

    true_on_air: np.ndarray
    device_noise: np.ndarray
    bias_draw: np.ndarray
    affected: np.ndarray  # the planted bias applies to this slot's patient

    def displayed(self, true_spo2: np.ndarray, at: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The reading: true + device noise, overestimated for the affected group (see module docstring), at most 100."""
        shortfall = np.maximum(94 - true_spo2, 0)
        overestimate = PULSE_OX_BIAS_OFFSET + PULSE_OX_BIAS_SLOPE * shortfall + (0.5 + 0.15 * shortfall) * self.bias_draw[at]
        bias = np.where(self.affected[at], overestimate, 0)
        return np.minimum(true_spo2 + bias + self.device_noise[at], 100)


def _oximetry(
    grid: _Grid, stays: _Stays, people: _People, *, pulse_ox_bias: bool, rng: np.random.Generator, rng_oximetry: np.random.Generator
) -> _Oximetry:
    """SpO2 on room air along the grid: baseline + response to severity + wander (true, at most 100)."""
    patient = stays.patient[grid.encounter]
    effect = _effect("spo2", stays, grid.encounter, grid.background, grid.deterioration)
    true_on_air = np.minimum(
        people.baseline["spo2"][patient] + stays.response["spo2"][grid.encounter] * effect + _autocorrelated(rng, grid.first, 1.0),
        100,
    )
    return _Oximetry(
        true_on_air=true_on_air,
        device_noise=0.7 * rng.standard_normal(len(grid)),
        bias_draw=rng_oximetry.standard_normal(len(grid)),
        affected=people.black[patient] & pulse_ox_bias,
    )


def _ward_rounds(grid: _Grid, stays: _Stays, people: _People, oximetry: _Oximetry, rng: np.random.Generator) -> np.ndarray:
    """Which slots are rounds: the admission observations, then the ward's clock every 4, 2 or 1 h.

    The interval follows how ill the patient *looks* (as NEWS2 escalation does): their
    severity, chronic illness, and the displayed rather than the true SpO2. Rounds are
    missed now and then, more at night.
    """
    n = len(grid)
    seen_hypoxia = np.maximum(95 - oximetry.displayed(oximetry.true_on_air), 0)
    true_hypoxia = np.maximum(95 - oximetry.true_on_air, 0)
    looks_ill = (
        grid.severity + 0.25 * people.chronic[stays.patient[grid.encounter]] + HIDDEN_HYPOXAEMIA_WEIGHT * (seen_hypoxia - true_hypoxia)
        + 0.08 * rng.standard_normal(n)
    )
    every = np.where(looks_ill > 0.55, 1, np.where(looks_ill > 0.3, 2, 4))
    clock_hour = np.mod(grid.slot, 24).astype(np.int64)
    on_clock = np.mod(clock_hour + stays.ward[grid.encounter], every) == 0
    night = clock_hour < 6
    missed = rng.random(n) < np.where(night, 0.15, 0.07)
    return (grid.first | (on_clock & ~missed)) & (grid.time <= stays.data_end[grid.encounter])


def _autocorrelated(rng: np.random.Generator, first: np.ndarray, sd: float, *, phi: float = 0.85) -> np.ndarray:
    """An AR(1) series per stay along the hourly grid, stationary with standard deviation sd."""
    alpha = 1 - phi
    innovation = rng.standard_normal(len(first)) * np.where(first, sd, sd * math.sqrt(1 - phi * phi) / alpha)
    frame = pl.DataFrame({"stay": np.cumsum(first), "x": innovation})
    return frame.select(pl.col("x").ewm_mean(alpha=alpha, adjust=False).over("stay"))["x"].to_numpy()


def _previous(values: np.ndarray, first: np.ndarray, lags: int, fill: float) -> list[np.ndarray]:
    """values shifted by 1..lags slots within each stay (fill before the stay starts)."""
    out = []
    stay = np.cumsum(first)
    n = len(values)
    for lag in range(1, lags + 1):
        shifted = np.full(n, fill, dtype=np.float64)
        if lag < n:
            same_stay = stay[lag:] == stay[:-lag]
            shifted[lag:] = np.where(same_stay, values[:-lag], fill)
        out.append(shifted)
    return out


@dataclass(frozen=True)
class _Measurements:
    """Rows of observations with values in the canonical unit."""

    variable: str
    encounter: np.ndarray
    time: np.ndarray  # hours since epoch
    value: np.ndarray
    source: str


def _vital_signs(
    grid: _Grid, is_round: np.ndarray, oximetry: _Oximetry, stays: _Stays, people: _People, rng: np.random.Generator
) -> list[_Measurements]:
    """Vital signs at every round: baseline + response to severity + wander + daily rhythm + noise.

    Oxygen is started at a round whose displayed SpO2 is below target (88 % with COPD, 92 %
    otherwise), at a flow that grows with the shortfall, and kept on until six hours after
    the last low reading; it raises the true SpO2.
    """
    n = len(grid)
    first = grid.first
    wander = {
        "heart_rate": _autocorrelated(rng, first, 6.0),
        "resp_rate": _autocorrelated(rng, first, 1.5),
        "pressure": _autocorrelated(rng, first, 9.0),
        "temperature": _autocorrelated(rng, first, 0.25),
    }
    noise = {k: rng.standard_normal(n) for k in ("heart_rate", "resp_rate", "sbp", "dbp", "temperature", "avpu")}
    uniform = {k: rng.random(n) for k in ("even_count", "dementia", *VITALS, "room_air")}

    patient = stays.patient[grid.encounter]
    target = np.where(people.copd[patient], 88.0, 92.0)
    shortfall_seen = np.where(is_round, np.maximum(target - oximetry.displayed(oximetry.true_on_air), 0), 0)
    worst = np.maximum.reduce([shortfall_seen, *_previous(shortfall_seen, first, 6, 0.0)])
    home_oxygen = people.home_oxygen[patient]
    grid_on_oxygen = (worst > 0) | home_oxygen
    grid_flow = np.where(grid_on_oxygen, np.clip(np.round(1 + 0.8 * worst), np.where(home_oxygen, 2, 1), 15), 0)

    # From here on, only the rounds.
    at = np.flatnonzero(is_round)
    e, p = grid.encounter[at], patient[at]
    background, deterioration = grid.background[at], grid.deterioration[at]
    s = background + deterioration
    base = {k: v[p] for k, v in people.baseline.items() if k in VITALS}
    response = {k: v[e] for k, v in stays.response.items()}
    noise = {k: v[at] for k, v in noise.items()}
    uniform = {k: v[at] for k, v in uniform.items()}
    clock = np.mod(grid.time[at], 24)

    def effect(name: str) -> np.ndarray:
        return _effect(name, stays, e, background, deterioration)

    def rhythm(peak_hour: float) -> np.ndarray:
        return np.cos(2 * np.pi * (clock - peak_hour) / 24)

    heart_rate = base["heart_rate"] + response["heart_rate"] * effect("heart_rate") + wander["heart_rate"][at] + 3 * rhythm(15) + 2.5 * noise["heart_rate"]
    resp_rate = base["resp_rate"] + response["resp_rate"] * effect("resp_rate") + wander["resp_rate"][at] + 2.0 * noise["resp_rate"]
    # A third of respiratory rates are counted over 30 s and doubled: even numbers.
    resp_rate = np.where(uniform["even_count"] < 0.33, 2 * np.round(resp_rate / 2), np.round(resp_rate))
    pressure = wander["pressure"][at]
    sbp = base["sbp"] + response["pressure"] * effect("sbp") + pressure + 4 * rhythm(14) + 5 * noise["sbp"]
    dbp = np.minimum(base["dbp"] + 0.5 * response["pressure"] * effect("sbp") + 0.5 * pressure + 4 * noise["dbp"], sbp - 15)
    temperature = (
        base["temperature"] + stays.temperature_response[e] * background + stays.drift_temperature[e] * deterioration
        + wander["temperature"][at] + 0.2 * rhythm(18) + 0.12 * noise["temperature"]
    )
    on_oxygen, flow = grid_on_oxygen[at], grid_flow[at]
    true_spo2 = np.minimum(oximetry.true_on_air[at] + np.where(on_oxygen, np.minimum(1.0 + 1.2 * flow, 8), 0), 100)
    spo2 = np.round(oximetry.displayed(true_spo2, at))
    dementia_today = people.dementia[p] & (uniform["dementia"] < 0.4)
    confusion = s * response["avpu"] + 0.08 * noise["avpu"] + np.where(dementia_today, 0.8, 0)
    avpu = np.searchsorted(np.array([0.78, 0.95, 1.1, 1.25]), confusion).astype(np.float64)

    chance = {"heart_rate": 0.98, "resp_rate": 0.93, "sbp": 0.97, "temperature": 0.85, "spo2": 0.97, "avpu": 0.88, "o2_flow": 0.95}
    taken = {k: uniform[k] < c for k, c in chance.items()}
    taken["dbp"] = taken["sbp"]  # blood pressure is one measurement
    # Flow is charted while on oxygen; "0" (room air) is charted now and then.
    taken["o2_flow"] = np.where(on_oxygen, taken["o2_flow"], uniform["room_air"] < 0.2)
    values = {
        "heart_rate": heart_rate, "resp_rate": resp_rate, "sbp": sbp, "dbp": dbp, "temperature": temperature,
        "spo2": spo2, "avpu": avpu, "o2_flow": flow,
    }
    time = grid.time[at]
    out = []
    for variable in VITALS:
        keep = taken[variable]
        value = values[variable][keep]
        if variable in PHYSIOLOGICAL_LIMITS:
            value = np.clip(value, *PHYSIOLOGICAL_LIMITS[variable])
        out.append(_Measurements(variable, e[keep], time[keep], value, "ward-obs"))
    return out


# ------------------------------------------------------------------ labs


def _lab_results(stays: _Stays, people: _People, rng: np.random.Generator) -> list[_Measurements]:
    """Blood tests: admission bloods (often in the ED), most mornings, and ~6-hourly when ill."""
    n = stays.n
    # Admission bloods: 90 % of stays, mostly drawn in the emergency department before admission.
    has_admission = rng.random(n) < 0.9
    in_ed = rng.random(n) < 0.8
    admission_time = stays.admit + np.where(in_ed, -rng.uniform(0.3, 4, n), rng.uniform(0.2, 2, n))
    times = [admission_time[has_admission]]
    owners = [np.flatnonzero(has_admission)]
    kinds = [np.zeros(int(has_admission.sum()), dtype=np.int8)]
    # Morning bloods around 06:00 on days after admission.
    first_morning = np.ceil((stays.admit + 3 - 6) / 24) * 24 + 6
    n_mornings = np.maximum(np.floor((stays.data_end - 1.5 - first_morning) / 24) + 1, 0).astype(np.int64)
    owner, day = _expand(n_mornings)
    morning = first_morning[owner] + 24 * day + rng.uniform(-1.0, 1.5, len(owner))
    times.append(morning)
    owners.append(owner)
    kinds.append(np.ones(len(owner), dtype=np.int8))
    # Extra bloods every ~6 h (03, 09, 15, 21h) while ill.
    first_slot = np.ceil(stays.admit + 1)
    n_slots = np.maximum(np.floor(stays.data_end - 0.5) - first_slot + 1, 0).astype(np.int64)
    owner, position = _expand(n_slots)
    slot = first_slot[owner] + position
    candidate = np.mod(slot, 6) == 3
    owner, slot = owner[candidate], slot[candidate]
    ill = _severity(stays, owner, slot - stays.admit[owner]) > 0.45
    drawn = ill & (rng.random(len(owner)) < 0.6)
    times.append(slot[drawn] + rng.uniform(0, 0.7, int(drawn.sum())))
    owners.append(owner[drawn])
    kinds.append(np.full(int(drawn.sum()), 2, dtype=np.int8))

    time = np.round(np.concatenate(times) * 60) / 60
    encounter = np.concatenate(owners)
    kind = np.concatenate(kinds)
    keep = (time <= stays.data_end[encounter]) & (time >= stays.admit[encounter] - 23)
    # Two draws in the same minute would repeat the key; keep the first.
    draws = pl.DataFrame({"e": encounter[keep], "t": time[keep], "k": kind[keep]}).unique(["e", "t"], keep="first", maintain_order=True)
    encounter, time, kind = draws["e"].to_numpy(), draws["t"].to_numpy(), draws["k"].to_numpy()
    m = len(encounter)
    background, deterioration = _illness(stays, encounter, time - stays.admit[encounter])
    s = background + deterioration
    sick = s > 0.4
    admission = kind == 0
    panel_taken = {
        "metabolic": rng.random(m) < 0.92,
        "blood_count": rng.random(m) < 0.9,
        "liver": rng.random(m) < np.where(admission, 0.8, 0.4),
        "lactate": rng.random(m) < np.where(sick, 0.75, np.where(admission, 0.35, 0.06)),
        "gas": rng.random(m) < np.where(s > 0.5, 0.4, np.where(admission, 0.1, 0.02)),
    }
    p = stays.patient[encounter]
    base = {k: v[p] for k, v in people.baseline.items()}
    r = stays.response["labs"][encounter]
    normal = rng.standard_normal
    days = np.maximum(time - stays.admit[encounter], 0) / 24
    infection = stays.infection[encounter]
    sepsis = stays.drift_kind[encounter] == DRIFT_KINDS.index("sepsis")
    values = {
        "creatinine": base["creatinine"] * (1 + 0.7 * r * s) * np.exp(0.05 * normal(m)),
        "urea": base["urea"] + 5 * r * s + 0.4 * normal(m),
        "potassium": base["potassium"] + 0.5 * r * s + 0.2 * normal(m),
        "sodium": base["sodium"] + 1.5 * normal(m) - 2 * s * normal(m),
        "bicarbonate": base["bicarbonate"] - 7 * r * s + 1.2 * normal(m),
        "glucose": base["glucose"] + 2.5 * s + 0.6 * normal(m) * (1 + people.diabetes[p]),
        "wbc": base["wbc"] * (1 + r * (np.where(infection, 1.2, 0.4) * background + np.where(sepsis, 1.2, 0.4) * deterioration)) * np.exp(0.1 * normal(m)),
        "platelets": base["platelets"] * (1 - 0.35 * np.minimum(s, 1.5)) * np.exp(0.06 * normal(m)),
        "haemoglobin": base["haemoglobin"] - 6 * s - 0.8 * days + 3 * normal(m),
        "bilirubin": base["bilirubin"] * (1 + 0.8 * r * s) * np.exp(0.1 * normal(m)),
        "lactate": base["lactate"] + r * _effect("lactate", stays, encounter, background, deterioration) * np.sqrt(s) + 0.25 * normal(m),
        "ph": base["ph"] - 0.1 * r * s + 0.02 * normal(m),
    }
    out = []
    for panel, variables in LAB_PANELS.items():
        for variable in variables:
            keep = panel_taken[panel] & (rng.random(m) < 0.97)
            value = np.clip(values[variable][keep], *PHYSIOLOGICAL_LIMITS[variable])
            source = "blood-gas" if panel == "gas" else "lab-lis"
            out.append(_Measurements(variable, encounter[keep], time[keep], value, source))
    return out


# ------------------------------------------------------------------ tables


def _iso_text(hours: np.ndarray) -> pl.Series:
    """Hours since the epoch -> ISO 8601 UTC text to the minute, with a Z ("2026-01-15T04:15:00Z")."""
    minutes = np.round(np.asarray(hours, dtype=np.float64) * 60).astype(np.int64)
    return (
        pl.Series(minutes * 60_000_000, dtype=pl.Int64)
        .cast(pl.Datetime("us", "UTC"))
        .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def _encounter_ids(n: int, *, first: int = 0) -> pl.Series:
    """E0000001, E0000002, ... in admission order (n of them from the `first`-th, counting from 0)."""
    return pl.Series([f"E{i + 1:07d}" for i in range(first, first + n)], dtype=pl.String)


def _patient_ids(n: int, rng: np.random.Generator) -> pl.Series:
    """Pseudonyms in a shuffled order, so that an id says nothing about when the patient came."""
    return pl.Series([f"P{k:07d}" for k in rng.permutation(n) + 1], dtype=pl.String)


def _patients_table(people: _People, stays: _Stays, sites: tuple[str, ...], ids: pl.Series) -> pl.DataFrame:
    """patient_id, birth_year, age (at first admission), sex, race_ethnicity, site: one row per patient with a stay."""
    has_stay = np.zeros(len(people.age), dtype=bool)
    has_stay[stays.patient] = True
    first_admit = np.full(len(people.age), np.inf)
    np.minimum.at(first_admit, stays.patient, stays.admit)
    index = np.flatnonzero(has_stay)
    admit_year = 1970 + first_admit[index] / (24 * 365.2425)
    age = np.round(people.age[index], 1)
    birth_year = np.floor(admit_year - people.age[index]).astype(np.int64)
    return pl.DataFrame({
        "patient_id": ids.gather(index),
        "birth_year": pl.Series(birth_year).cast(pl.String),
        "age": pl.Series(age).cast(pl.String),
        "sex": pl.Series(people.sex[index].tolist(), dtype=pl.String),
        "race_ethnicity": pl.Series(people.race[index].tolist(), dtype=pl.String),
        "site": pl.Series(np.array(sites, dtype=object)[people.site[index]].tolist(), dtype=pl.String),
    })


def _encounters_table(stays: _Stays, people: _People, sites: tuple[str, ...], patient_ids: pl.Series) -> pl.DataFrame:
    """encounter_id, patient_id, admit_time, discharge_time (empty while admitted), ward, site."""
    site_names = np.array(sites, dtype=object)[people.site[stays.patient]]
    ward_names = [f"{s}-{WARDS[w]}" for s, w in zip(site_names, stays.ward)]
    return pl.DataFrame({
        "encounter_id": _encounter_ids(stays.n),
        "patient_id": patient_ids.gather(stays.patient),
        "admit_time": _iso_text(stays.admit),
        "discharge_time": _iso_text(stays.admit + stays.length),
        "ward": pl.Series(ward_names, dtype=pl.String),
        "site": pl.Series(site_names.tolist(), dtype=pl.String),
        "admitted": stays.admitted,
    }).with_columns(pl.when(pl.col("admitted")).then(None).otherwise(pl.col("discharge_time")).alias("discharge_time")).drop("admitted")


def _outcomes_table(stays: _Stays, now_hours: float) -> pl.DataFrame:
    """encounter_id, event_time, event_type: events up to `now` (ICU/death at the end of the stay)."""
    first = ~np.isnan(stays.event_hours)
    later = ~np.isnan(stays.icu_after_rapid_response)
    encounter = np.r_[np.flatnonzero(first), np.flatnonzero(later)]
    event_type = np.r_[stays.event_type[first], np.full(int(later.sum()), "icu_transfer")]
    event_time = np.r_[stays.admit[first] + stays.event_hours[first], stays.admit[later] + stays.icu_after_rapid_response[later]]
    event_time = np.round(event_time * 60) / 60
    known = event_time <= now_hours
    order = np.lexsort((event_time[known], encounter[known]))
    encounter, event_type, event_time = encounter[known][order], event_type[known][order], event_time[known][order]
    return pl.DataFrame({
        "encounter_id": _encounter_ids(stays.n).gather(encounter),
        "event_time": _iso_text(event_time),
        "event_type": pl.Series(event_type.tolist(), dtype=pl.String),
    })


def _source_unit_choices(catalog: Catalog, variable: str) -> list[tuple[str | None, float, float, int]]:
    """(unit as sent, scale, offset, decimals) for each feed: source = (canonical - offset) / scale."""
    choices = []
    for feed in FEED_UNITS:
        sent = feed[variable]
        definition = catalog[variable]
        unit = definition.unit if sent is None else catalog.canonical_unit(sent)
        if unit == definition.unit:
            scale, offset = 1.0, 0.0
        else:
            conversion = definition.conversions[unit]
            scale, offset = conversion.scale, conversion.offset
        decimals = SOURCE_DECIMALS.get((variable, unit), definition.decimals)
        choices.append((sent, scale, offset, decimals))
    return choices


def _observations_table(
    measurements: list[_Measurements], stays: _Stays, people: _People, catalog: Catalog, *, salt: int, first_encounter: int = 0
) -> pl.DataFrame:
    """encounter_id, charttime, variable, value, unit, source: values as sent by each site's feed, by encounter and time.

    `stays` are the cohort's stays from the `first_encounter`-th on (a block of them).
    Which rows come in the other feed's units is a hash of the row's encounter (its place in
    the cohort), time and variable (and `salt`), so it does not depend on which other rows exist.
    """
    site_parity = (people.site[stays.patient] % 2).astype(np.int64)
    parts, encounters, minutes = [], [], []
    for index, m in enumerate(measurements):
        minute = np.round(m.time * 60).astype(np.int64)
        feed = site_parity[m.encounter]
        other = _uniform_hash(m.encounter + first_encounter, minute, index, salt) < OTHER_FEED_SHARE
        feed = np.where(other, 1 - feed, feed)
        choices = _source_unit_choices(catalog, m.variable)
        scale, offset, decimals = (np.array([c[i] for c in choices])[feed] for i in (1, 2, 3))
        if m.variable == "avpu":
            value = pl.Series(AVPU_LETTERS[m.value.astype(np.int64)].tolist(), dtype=pl.String)
        else:
            value = _decimal_text((m.value - offset) / scale, decimals)
        parts.append(pl.DataFrame({
            "variable": pl.repeat(m.variable, len(feed), dtype=pl.String, eager=True),
            "value": value,
            "unit": pl.Series([c[0] for c in choices], dtype=pl.String).gather(feed),
            "source": pl.repeat(m.source, len(feed), dtype=pl.String, eager=True),
        }))
        encounters.append(m.encounter.astype(np.int64))
        minutes.append(minute)
    encounter, minute = np.concatenate(encounters), np.concatenate(minutes)
    order = np.lexsort((minute, encounter))
    encounter, minute = encounter[order], minute[order]
    unique_minutes, which = np.unique(minute, return_inverse=True)
    charttime = _iso_text(unique_minutes / 60).gather(which)
    body = pl.concat(parts)[order]
    return body.select(
        _encounter_ids(stays.n, first=first_encounter).gather(encounter).alias("encounter_id"),
        charttime.alias("charttime"),
        pl.all(),
    )


def _uniform_hash(encounter: np.ndarray, minute: np.ndarray, variable: int, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) that depends only on its arguments (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = (
            encounter.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            + minute.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
            + np.uint64((variable * 0x94D049BB133111EB + salt) % 2**64)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def _decimal_text(values: np.ndarray, decimals: np.ndarray) -> pl.Series:
    """Numbers as plain decimal text with the given decimals per value ("98.6", "72")."""
    factor = 10.0 ** decimals
    rounded = pl.Series(np.round(values * factor) / factor)
    whole = decimals == 0
    if whole.all():
        return rounded.cast(pl.Int64).cast(pl.String)
    text = rounded.cast(pl.String)
    if whole.any():
        text = text.zip_with(pl.Series(~whole), rounded.cast(pl.Int64).cast(pl.String))
    return text


# ------------------------------------------------------------------ malformed rows


def _garbled_times(rng: np.random.Generator, n: int) -> pl.Series:
    """Times that cannot be parsed: month 13-19, day 32-45, hour 25-99."""
    month, day, hour = rng.integers(13, 20, n), rng.integers(32, 46, n), rng.integers(25, 100, n)
    return pl.Series([f"2026-{a}-{b}T{c}:00" for a, b, c in zip(month, day, hour)], dtype=pl.String)


def _insert_after(frame: pl.DataFrame, bad: pl.DataFrame, after_row: np.ndarray) -> pl.DataFrame:
    """frame with each bad row placed right after the row it was copied from."""
    order = np.r_[np.arange(frame.height, dtype=np.float64), after_row + 0.5]
    combined = pl.concat([frame, bad.select(frame.columns)])
    return combined[np.argsort(order, kind="stable")]


def _count(rate: float, height: int) -> int:
    return min(height, math.ceil(rate * height)) if height else 0


def _malformed_observations(frame: pl.DataFrame, rate: float, catalog: Catalog, rng: np.random.Generator) -> pl.DataFrame:
    n_bad = round(rate * frame.height)
    if n_bad == 0:
        return frame
    source_row = np.sort(rng.choice(frame.height, size=n_bad, replace=False))
    kind = rng.integers(0, 6, n_bad)  # bad unit, out of range, unparseable value, garbled time, unknown variable, duplicate
    bad = frame[source_row]
    variable = bad["variable"].to_list()
    unit = bad["unit"].to_list()
    value = bad["value"].to_list()
    charttime = bad["charttime"].to_list()
    garbled = _garbled_times(rng, n_bad).to_list()
    wrong_units = ["mmHg", "mg/dL", "kPa", "g/L", "Cel", "/min", "%", "mmol/L", "10*9/L", "ng/mL"]
    unknown_names = ["heart_rte", "HR2", "bp_sys_x", "lactic_acid", "99999-9", "temp_core", "sats"]
    pick = rng.integers(0, 1_000_000, n_bad)
    factor = rng.uniform(2, 5, n_bad)
    for i in range(n_bad):  # a loop over the few malformed rows only
        definition = catalog[variable[i]]
        if kind[i] == 0:
            valid = {definition.unit, *definition.conversions}
            options = [u for u in wrong_units if catalog.canonical_unit(u) not in valid]
            unit[i] = options[pick[i] % len(options)]
        elif kind[i] == 1:
            high = definition.plausible_max * factor[i]
            value[i] = str(round(high)) if definition.name != "avpu" else str(5 + pick[i] % 5)
            unit[i] = None if definition.name == "avpu" else definition.unit
        elif kind[i] == 2:
            value[i] = ["12..5", "n/a", "9O", "--", "1,2,3", "high"][pick[i] % 6]
        elif kind[i] == 3:
            charttime[i] = garbled[i]
        elif kind[i] == 4:
            variable[i] = unknown_names[pick[i] % len(unknown_names)]
    bad = bad.with_columns(
        pl.Series("variable", variable, dtype=pl.String),
        pl.Series("unit", unit, dtype=pl.String),
        pl.Series("value", value, dtype=pl.String),
        pl.Series("charttime", charttime, dtype=pl.String),
    )
    return _insert_after(frame, bad, source_row)


def _corrupted_copies(
    frame: pl.DataFrame, rate: float, rng: np.random.Generator, corruptions: list[pl.Expr | None]
) -> pl.DataFrame:
    """Copies of random rows, each with one of `corruptions` applied (None: an exact copy), placed after their original.

    A corruption may refer to `_kind` (which corruption the row gets) and `_garbled` (an unparseable time).
    """
    n_bad = _count(rate, frame.height)
    if n_bad == 0:
        return frame
    rows = np.sort(rng.choice(frame.height, size=n_bad, replace=False))
    bad = frame[rows].with_columns(
        pl.Series("_kind", rng.integers(0, len(corruptions), n_bad)), _garbled_times(rng, n_bad).alias("_garbled")
    )
    bad = bad.with_columns([c for c in corruptions if c is not None])
    return _insert_after(frame, bad, rows)


def _corrupt(kind: int, column: str, value: pl.Expr) -> pl.Expr:
    return pl.when(pl.col("_kind") == kind).then(value).otherwise(pl.col(column)).alias(column)


def _malformed_patients(frame: pl.DataFrame, rate: float, rng: np.random.Generator) -> pl.DataFrame:
    return _corrupted_copies(frame, rate, rng, [
        _corrupt(0, "sex", pl.lit("X")),  # not an allowed value
        _corrupt(1, "birth_year", pl.lit("1789")),  # out of range
        _corrupt(2, "age", pl.lit("seventy")),  # not a number
    ])


def _malformed_encounters(frame: pl.DataFrame, rate: float, rng: np.random.Generator) -> pl.DataFrame:
    return _corrupted_copies(frame, rate, rng, [
        _corrupt(0, "admit_time", pl.col("_garbled")),  # unparseable time
        _corrupt(1, "discharge_time", pl.lit("2000-01-01T00:00:00Z")),  # discharge before admission
        _corrupt(2, "ward", pl.lit(None, dtype=pl.String)),  # required column empty
    ])


def _malformed_outcomes(frame: pl.DataFrame, rate: float, rng: np.random.Generator) -> pl.DataFrame:
    return _corrupted_copies(frame, rate, rng, [
        _corrupt(0, "event_type", pl.lit("deteriorated")),  # not an allowed event type
        _corrupt(1, "encounter_id", pl.lit("E9999999")),  # an encounter nobody sent
        None,  # an exact duplicate of the event
    ])
