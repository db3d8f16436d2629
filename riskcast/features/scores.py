"""Bedside early-warning scores (NEWS2, qSOFA, SIRS, shock index) as polars expressions.

Every expression reads only the feature matrix's last-value columns (``{variable}_last``,
canonical catalogue units: breaths/min, %, mmHg, beats/min, degrees Celsius, L/min, FiO2 as
a fraction, ACVPU codes 0=A 1=C 2=V 3=P 4=U, 10^9/L) of the same row, so the scores are
point-in-time exactly when the last-value columns are. They are the baseline the model has
to beat and, in the matrix, features of their own.

Apply them in one query::

    frame = with_missing_columns(frame).with_columns(early_warning_scores())

``with_missing_columns`` first adds any input column the frame lacks as Float64 nulls (a
site that never records GCS or PaCO2 still gets scores; those inputs count as missing).

NEWS2 follows the Royal College of Physicians 2017 chart. The chart's bands are written at
its recording resolution (whole numbers; 0.1 degC for temperature), but our values are
floats (averaged device readings, unit conversions), so each band here runs from just
above the previous band's top up to and including its own top as printed on the chart:
respiratory rate 8.5 scores like 9-11, 11.5 like 12-20, 20.5 like 21-24; temperature 36.05
like 36.1-38.0. Values within ``CUT_POINT_TOLERANCE`` above a top count as on it, so the
float noise of a unit conversion (100.4 degF -> 38.00000000000001 degC) does not move a
value into the next band.

Missing values: a NEWS2 sub-score column is null when its input is missing (null or NaN);
the total counts it as 0, the usual convention, and ``news2_missing`` counts the missing
measured components (0-6), so a total computed from little or nothing is visibly
incomplete. The air-or-oxygen component is never missing: with no oxygen flow and no FiO2
above room air on record the patient is taken to be on air, as the chart does by default.
qSOFA and SIRS count a criterion with a missing input as not met, and are null only when
every input they read is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import polars as pl

CUT_POINT_TOLERANCE = 1e-6
"""Values this far above a band's top still fall in the band (absorbs float noise)."""

ROOM_AIR_FIO2 = 0.21
"""Inspired oxygen fraction of room air; a higher FiO2 means supplemental oxygen."""

# NEWS2 bands as (top of band, inclusive; score), in increasing order; the last top is inf.
RESP_RATE_BANDS: tuple[tuple[float, int], ...] = ((8, 3), (11, 1), (20, 0), (24, 2), (math.inf, 3))
SPO2_SCALE1_BANDS: tuple[tuple[float, int], ...] = ((91, 3), (93, 2), (95, 1), (math.inf, 0))
# Scale 2 scores the same on air and on oxygen up to 92 %; above it, only oxygen scores.
SPO2_SCALE2_ON_AIR_BANDS: tuple[tuple[float, int], ...] = ((83, 3), (85, 2), (87, 1), (math.inf, 0))
SPO2_SCALE2_ON_OXYGEN_BANDS: tuple[tuple[float, int], ...] = (
    (83, 3), (85, 2), (87, 1), (92, 0), (94, 1), (96, 2), (math.inf, 3),
)  # fmt: skip
SBP_BANDS: tuple[tuple[float, int], ...] = ((90, 3), (100, 2), (110, 1), (219, 0), (math.inf, 3))
HEART_RATE_BANDS: tuple[tuple[float, int], ...] = (
    (40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (math.inf, 3),
)  # fmt: skip
TEMPERATURE_BANDS: tuple[tuple[float, int], ...] = (
    (35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (math.inf, 2),
)  # fmt: skip
OXYGEN_SCORE = 2
CONSCIOUSNESS_SCORE = 3

# The catalogue variables the scores read, each through its `{variable}_last` column.
_INPUT_VARIABLES = (
    "resp_rate",
    "spo2",
    "o2_flow",
    "fio2",
    "sbp",
    "heart_rate",
    "avpu",
    "gcs",
    "temperature",
    "paco2",
    "wbc",
)

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def required_columns() -> tuple[str, ...]:
    """The ``{variable}_last`` columns the score expressions read."""
    return tuple(f"{variable}_last" for variable in _INPUT_VARIABLES)


def with_missing_columns(frame: FrameT) -> FrameT:
    """Return ``frame`` with every absent input column of the scores added as Float64 null.

    Columns already present are left as they are. Works on eager and lazy frames alike and
    returns the same kind it was given.
    """
    present = set(frame.collect_schema().names())
    absent = [name for name in required_columns() if name not in present]
    if not absent:
        return frame
    return frame.with_columns([pl.lit(None, dtype=pl.Float64).alias(name) for name in absent])


def _last(variable: str) -> pl.Expr:
    """The last value of ``variable`` as Float64, with NaN read as missing.

    (polars orders NaN above every number, so an unconverted NaN would score as extreme.)
    """
    return pl.col(f"{variable}_last").cast(pl.Float64).fill_nan(None)


def _banded(value: pl.Expr, bands: Sequence[tuple[float, int]]) -> pl.Expr:
    """Score ``value`` by the first band whose top it does not exceed; null stays null."""
    chain = pl.when(value.is_null()).then(pl.lit(None, dtype=pl.Int8))
    for top, score in bands:
        chain = chain.when(value <= top + CUT_POINT_TOLERANCE).then(pl.lit(score, dtype=pl.Int8))
    return chain.otherwise(pl.lit(None, dtype=pl.Int8))


def on_oxygen() -> pl.Expr:
    """True when oxygen flow is above 0 L/min or FiO2 above room air; missing counts as air."""
    flowing = _last("o2_flow") > CUT_POINT_TOLERANCE
    enriched = _last("fio2") > ROOM_AIR_FIO2 + CUT_POINT_TOLERANCE
    return (flowing | enriched).fill_null(False)


def news2_resp_rate() -> pl.Expr:
    """NEWS2 respiration rate score (breaths/min): <=8:3, 9-11:1, 12-20:0, 21-24:2, >=25:3."""
    return _banded(_last("resp_rate"), RESP_RATE_BANDS).alias("news2_resp_rate")


def news2_spo2() -> pl.Expr:
    """NEWS2 SpO2 scale 1 score (%): <=91:3, 92-93:2, 94-95:1, >=96:0."""
    return _banded(_last("spo2"), SPO2_SCALE1_BANDS).alias("news2_spo2")


def news2_spo2_scale2() -> pl.Expr:
    """NEWS2 SpO2 scale 2 score (%), for hypercapnic respiratory failure.

    <=83:3, 84-85:2, 86-87:1, 88-92:0, and above 92: 0 on air; on oxygen 93-94:1,
    95-96:2, >=97:3. Which scale applies is a clinical decision the data does not record,
    so both are kept and the total uses scale 1.
    """
    spo2 = _last("spo2")
    return (
        pl.when(on_oxygen())
        .then(_banded(spo2, SPO2_SCALE2_ON_OXYGEN_BANDS))
        .otherwise(_banded(spo2, SPO2_SCALE2_ON_AIR_BANDS))
        .alias("news2_spo2_scale2")
    )


def news2_air_or_oxygen() -> pl.Expr:
    """NEWS2 air-or-oxygen score: 2 on supplemental oxygen, 0 on air (see ``on_oxygen``)."""
    return (
        pl.when(on_oxygen())
        .then(pl.lit(OXYGEN_SCORE, dtype=pl.Int8))
        .otherwise(pl.lit(0, dtype=pl.Int8))
        .alias("news2_air_or_oxygen")
    )


def news2_sbp() -> pl.Expr:
    """NEWS2 systolic BP score (mmHg): <=90:3, 91-100:2, 101-110:1, 111-219:0, >=220:3."""
    return _banded(_last("sbp"), SBP_BANDS).alias("news2_sbp")


def news2_heart_rate() -> pl.Expr:
    """NEWS2 pulse score (beats/min): <=40:3, 41-50:1, 51-90:0, 91-110:1, 111-130:2, >=131:3."""
    return _banded(_last("heart_rate"), HEART_RATE_BANDS).alias("news2_heart_rate")


def news2_consciousness() -> pl.Expr:
    """NEWS2 consciousness score: Alert 0; Confusion, Voice, Pain or Unresponsive 3.

    Reads the ACVPU code (0=A, 1=C, 2=V, 3=P, 4=U); only when it is missing does it fall back
    to GCS, scoring 3 below 15. The chart scores *new* confusion; whether confusion is new
    is not in the data, so any recorded confusion scores.
    """
    avpu = _last("avpu")
    gcs = _last("gcs")
    not_alert = pl.when(avpu.is_not_null()).then(avpu > CUT_POINT_TOLERANCE).otherwise(gcs < 15)
    return (
        pl.when(not_alert.is_null())
        .then(pl.lit(None, dtype=pl.Int8))
        .when(not_alert)
        .then(pl.lit(CONSCIOUSNESS_SCORE, dtype=pl.Int8))
        .otherwise(pl.lit(0, dtype=pl.Int8))
        .alias("news2_consciousness")
    )


def news2_temperature() -> pl.Expr:
    """NEWS2 temperature score (degC): <=35.0:3, 35.1-36.0:1, 36.1-38.0:0, 38.1-39.0:1, >=39.1:2."""
    return _banded(_last("temperature"), TEMPERATURE_BANDS).alias("news2_temperature")


def _news2_measured_components() -> list[pl.Expr]:
    """The six sub-scores that can be missing, with SpO2 on scale 1."""
    return [
        news2_resp_rate(),
        news2_spo2(),
        news2_sbp(),
        news2_heart_rate(),
        news2_consciousness(),
        news2_temperature(),
    ]


def news2_total() -> pl.Expr:
    """NEWS2 total (0-20, SpO2 scale 1): the sub-scores summed, a missing one counting 0."""
    parts = [*_news2_measured_components(), news2_air_or_oxygen()]
    return pl.sum_horizontal([part.fill_null(0) for part in parts]).cast(pl.Int8).alias("news2")


def news2_missing() -> pl.Expr:
    """How many of the six measured NEWS2 components have no value (0-6)."""
    missing = [part.is_null() for part in _news2_measured_components()]
    return pl.sum_horizontal(missing).cast(pl.Int8).alias("news2_missing")


def news2_expressions() -> list[pl.Expr]:
    """The NEWS2 total, every sub-score (both SpO2 scales) and the missing-component count."""
    return [
        news2_total(),
        news2_resp_rate(),
        news2_spo2(),
        news2_spo2_scale2(),
        news2_air_or_oxygen(),
        news2_sbp(),
        news2_heart_rate(),
        news2_consciousness(),
        news2_temperature(),
        news2_missing(),
    ]


def _count_met(criteria: Sequence[pl.Expr], inputs: Sequence[pl.Expr]) -> pl.Expr:
    """Number of criteria met (missing = not met); null when every input is missing."""
    met = pl.sum_horizontal([criterion.fill_null(False).cast(pl.Int8) for criterion in criteria])
    nothing_recorded = pl.all_horizontal([value.is_null() for value in inputs])
    return pl.when(nothing_recorded).then(pl.lit(None, dtype=pl.Int8)).otherwise(met.cast(pl.Int8))


def qsofa_expression() -> pl.Expr:
    """qSOFA (Sepsis-3, 0-3): respiratory rate >= 22/min, systolic BP <= 100 mmHg, altered
    mentation (ACVPU other than Alert, or GCS < 15)."""
    resp_rate, sbp, avpu, gcs = _last("resp_rate"), _last("sbp"), _last("avpu"), _last("gcs")
    criteria = [
        resp_rate >= 22 - CUT_POINT_TOLERANCE,
        sbp <= 100 + CUT_POINT_TOLERANCE,
        (avpu > CUT_POINT_TOLERANCE) | (gcs < 15),
    ]
    return _count_met(criteria, [resp_rate, sbp, avpu, gcs]).alias("qsofa")


def sirs_expression() -> pl.Expr:
    """SIRS criteria met (0-4): temperature > 38 or < 36 degC; heart rate > 90/min;
    respiratory rate > 20/min or PaCO2 < 32 mmHg; white cells > 12 or < 4 x10^9/L.

    Immature band forms (> 10 %) are not in the catalogue, so the white-cell criterion
    reads the count alone.
    """
    temperature, heart_rate = _last("temperature"), _last("heart_rate")
    resp_rate, paco2, wbc = _last("resp_rate"), _last("paco2"), _last("wbc")
    criteria = [
        (temperature > 38 + CUT_POINT_TOLERANCE) | (temperature < 36 - CUT_POINT_TOLERANCE),
        heart_rate > 90 + CUT_POINT_TOLERANCE,
        (resp_rate > 20 + CUT_POINT_TOLERANCE) | (paco2 < 32 - CUT_POINT_TOLERANCE),
        (wbc > 12 + CUT_POINT_TOLERANCE) | (wbc < 4 - CUT_POINT_TOLERANCE),
    ]
    return _count_met(criteria, [temperature, heart_rate, resp_rate, paco2, wbc]).alias("sirs")


def shock_index_expression() -> pl.Expr:
    """Shock index: heart rate (beats/min) / systolic BP (mmHg); null when either is missing
    or the systolic pressure is not above 0."""
    heart_rate, sbp = _last("heart_rate"), _last("sbp")
    return (
        pl.when(sbp > 0)
        .then(heart_rate / sbp)
        .otherwise(pl.lit(None, dtype=pl.Float64))
        .alias("shock_index")
    )


def early_warning_scores() -> list[pl.Expr]:
    """Every score this module defines, ready for one ``with_columns`` call."""
    return [*news2_expressions(), qsofa_expression(), sirs_expression(), shock_index_expression()]
