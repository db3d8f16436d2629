"""Early-warning scores, checked by hand against the RCP 2017 NEWS2 chart and the qSOFA and
SIRS definitions. Inputs are keyword arguments named for the catalogue variable; each test
builds a small feature-matrix frame of `{variable}_last` columns."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskcast.catalog import load_catalog
from riskcast.features.scores import (
    early_warning_scores,
    news2_expressions,
    qsofa_expression,
    required_columns,
    shock_index_expression,
    sirs_expression,
    with_missing_columns,
)

NEWS2_SUBSCORES = (
    "news2_resp_rate",
    "news2_spo2",
    "news2_air_or_oxygen",
    "news2_sbp",
    "news2_heart_rate",
    "news2_consciousness",
    "news2_temperature",
)
MEASURED_SUBSCORES = tuple(name for name in NEWS2_SUBSCORES if name != "news2_air_or_oxygen")
INPUT_VARIABLES = tuple(name.removesuffix("_last") for name in required_columns())


def last_values_frame(rows: list[dict[str, float | None]]) -> pl.DataFrame:
    """A feature-matrix frame with one Float64 `{variable}_last` column per variable named."""
    names = sorted({name for row in rows for name in row})
    return pl.DataFrame(
        [{f"{name}_last": row.get(name) for name in names} for row in rows],
        schema={f"{name}_last": pl.Float64 for name in names},
    )


def scores_of(rows: list[dict[str, float | None]]) -> pl.DataFrame:
    return with_missing_columns(last_values_frame(rows)).with_columns(early_warning_scores())


def score(**last_values: float | None) -> dict[str, object]:
    """Every score for one patient-hour whose last values are the keyword arguments."""
    return scores_of([last_values]).row(0, named=True)


# --- NEWS2: every band edge of every parameter --------------------------------------------


@pytest.mark.parametrize(
    ("resp_rate", "expected"),
    [
        (4, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (40, 3),
        # between the chart's whole numbers: up to and including each band's printed top
        (8.5, 1), (11.5, 0), (20.5, 2), (24.5, 3),
    ],
)  # fmt: skip
def test_news2_resp_rate_bands_follow_the_chart(resp_rate: float, expected: int) -> None:
    assert score(resp_rate=resp_rate)["news2_resp_rate"] == expected


@pytest.mark.parametrize(
    ("spo2", "expected"),
    [(70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0), (91.5, 2), (95.5, 0)],
)
def test_news2_spo2_scale1_bands_follow_the_chart(spo2: float, expected: int) -> None:
    assert score(spo2=spo2)["news2_spo2"] == expected


@pytest.mark.parametrize(
    ("spo2", "o2_flow", "expected"),
    [
        (75, None, 3), (83, None, 3), (84, None, 2), (85, None, 2), (86, None, 1), (87, None, 1),
        (88, None, 0), (92, None, 0), (93, None, 0), (97, None, 0), (100, None, 0),
        (83, 2, 3), (84, 2, 2), (86, 2, 1), (88, 2, 0), (92, 2, 0),
        (93, 2, 1), (94, 2, 1), (95, 2, 2), (96, 2, 2), (97, 2, 3), (100, 2, 3),
        (92.5, 2, 1), (96.5, 2, 3), (92.5, None, 0),
    ],
)  # fmt: skip
def test_news2_spo2_scale2_bands_depend_on_oxygen_above_92(
    spo2: float, o2_flow: float | None, expected: int
) -> None:
    assert score(spo2=spo2, o2_flow=o2_flow)["news2_spo2_scale2"] == expected


@pytest.mark.parametrize(
    ("sbp", "expected"),
    [
        (60, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3),
        (260, 3), (90.5, 2), (110.5, 0), (219.5, 3),
    ],
)  # fmt: skip
def test_news2_sbp_bands_follow_the_chart(sbp: float, expected: int) -> None:
    assert score(sbp=sbp)["news2_sbp"] == expected


@pytest.mark.parametrize(
    ("heart_rate", "expected"),
    [
        (30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
        (130, 2), (131, 3), (180, 3), (40.5, 1), (50.5, 0), (90.5, 1), (130.5, 3),
    ],
)  # fmt: skip
def test_news2_heart_rate_bands_follow_the_chart(heart_rate: float, expected: int) -> None:
    assert score(heart_rate=heart_rate)["news2_heart_rate"] == expected


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        (33.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
        (39.1, 2), (41.0, 2), (35.05, 1), (36.05, 0), (38.05, 1), (39.05, 2),
    ],
)  # fmt: skip
def test_news2_temperature_bands_follow_the_chart(temperature: float, expected: int) -> None:
    assert score(temperature=temperature)["news2_temperature"] == expected


def test_news2_temperature_converted_from_fahrenheit_keeps_its_band() -> None:
    # 100.4 degF is exactly 38.0 degC; the catalogue's conversion gives 38.00000000000001.
    scale, offset = 0.5555555555555556, -17.77777777777778
    converted = 100.4 * scale + offset
    assert converted > 38.0
    assert score(temperature=converted)["news2_temperature"] == 0


@pytest.mark.parametrize(
    ("avpu", "gcs", "expected"),
    [
        (0, None, 0), (1, None, 3), (2, None, 3), (3, None, 3), (4, None, 3),
        (None, 15, 0), (None, 14, 3), (None, 3, 3),
        (0, 13, 0), (2, 15, 3),  # a recorded ACVPU wins over GCS
    ],
)  # fmt: skip
def test_news2_consciousness_scores_anything_but_alert_as_3(
    avpu: float | None, gcs: float | None, expected: int
) -> None:
    assert score(avpu=avpu, gcs=gcs)["news2_consciousness"] == expected


@pytest.mark.parametrize(
    ("o2_flow", "fio2", "expected"),
    [
        (None, None, 0), (0, None, 0), (None, 0.21, 0), (0, 0.21, 0), (21 * 0.01, None, 2),
        (2, None, 2), (0.5, None, 2), (None, 0.28, 2), (0, 0.4, 2), (None, 0.21 + 0.01, 2),
    ],
)  # fmt: skip
def test_news2_air_or_oxygen_scores_2_on_flow_or_fio2_above_room_air(
    o2_flow: float | None, fio2: float | None, expected: int
) -> None:
    assert score(o2_flow=o2_flow, fio2=fio2)["news2_air_or_oxygen"] == expected


def test_news2_fio2_of_21_percent_converted_to_a_fraction_is_air() -> None:
    assert score(fio2=21 * 0.01)["news2_air_or_oxygen"] == 0


# --- NEWS2: whole patients -----------------------------------------------------------------


def test_news2_sums_the_rcp_worked_patient_to_8() -> None:
    result = score(
        resp_rate=24, spo2=93, sbp=105, heart_rate=115, avpu=0, temperature=38.5
    )  # 2 + 2 + air 0 + 1 + 2 + 0 + 1
    assert [result[name] for name in NEWS2_SUBSCORES] == [2, 2, 0, 1, 2, 0, 1]
    assert result["news2"] == 8
    assert result["news2_missing"] == 0


def test_news2_adds_2_for_a_patient_on_oxygen() -> None:
    result = score(
        resp_rate=18, spo2=97, o2_flow=2, sbp=125, heart_rate=80, avpu=0, temperature=37.0
    )
    assert result["news2_air_or_oxygen"] == 2
    assert result["news2_spo2"] == 0
    assert result["news2"] == 2


def test_news2_total_uses_scale1_while_scale2_is_reported_beside_it() -> None:
    result = score(
        resp_rate=22, spo2=97, o2_flow=2, sbp=125, heart_rate=80, avpu=0, temperature=37.0
    )
    assert result["news2_spo2"] == 0
    assert result["news2_spo2_scale2"] == 3
    assert result["news2"] == 2 + 2  # respiration + oxygen, not the scale 2 point


def test_news2_of_a_very_sick_patient_reaches_the_maximum_20() -> None:
    result = score(resp_rate=30, spo2=85, fio2=0.6, sbp=80, heart_rate=140, avpu=4, temperature=34)
    assert result["news2"] == 20


def test_news2_missing_component_is_null_counted_and_scores_0_in_the_total() -> None:
    result = score(resp_rate=24, heart_rate=115, avpu=0)
    assert result["news2_spo2"] is None
    assert result["news2_sbp"] is None
    assert result["news2_temperature"] is None
    assert result["news2"] == 2 + 2
    assert result["news2_missing"] == 3


def test_news2_from_no_vitals_is_0_with_all_six_components_missing() -> None:
    result = score()
    assert result["news2"] == 0
    assert result["news2_missing"] == 6
    assert all(result[name] is None for name in MEASURED_SUBSCORES)
    assert result["news2_air_or_oxygen"] == 0


def test_news2_consciousness_is_missing_only_when_avpu_and_gcs_both_are() -> None:
    assert score(gcs=15)["news2_missing"] == 5
    assert score(avpu=0)["news2_missing"] == 5
    assert score()["news2_consciousness"] is None


def test_news2_reads_nan_as_missing_not_as_extreme() -> None:
    result = score(heart_rate=math.nan, resp_rate=16)
    assert result["news2_heart_rate"] is None
    assert result["news2_missing"] == 5
    assert result["news2"] == 0


def test_nan_inputs_meet_no_criterion_anywhere() -> None:
    # polars orders NaN above every number, so an unread NaN would look like an extreme value.
    result = score(o2_flow=math.nan, fio2=math.nan, heart_rate=math.nan, sbp=100, wbc=math.nan)
    assert result["news2_air_or_oxygen"] == 0
    assert result["sirs"] is None
    assert result["shock_index"] is None


def test_news2_expressions_name_the_documented_columns() -> None:
    names = with_missing_columns(pl.DataFrame()).select(news2_expressions()).columns
    assert names == [
        "news2",
        "news2_resp_rate",
        "news2_spo2",
        "news2_spo2_scale2",
        "news2_air_or_oxygen",
        "news2_sbp",
        "news2_heart_rate",
        "news2_consciousness",
        "news2_temperature",
        "news2_missing",
    ]


# --- qSOFA ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vitals", "expected"),
    [
        ({"resp_rate": 22, "sbp": 100, "avpu": 1}, 3),
        ({"resp_rate": 21, "sbp": 101, "avpu": 0}, 0),
        ({"resp_rate": 22, "sbp": 120, "avpu": 0}, 1),
        ({"resp_rate": 16, "sbp": 100, "avpu": 0}, 1),
        ({"resp_rate": 16, "sbp": 120, "gcs": 14}, 1),
        ({"resp_rate": 16, "sbp": 120, "gcs": 15}, 0),
        ({"resp_rate": 16, "sbp": 120, "avpu": 0, "gcs": 14}, 1),  # either sign of confusion
        ({"resp_rate": 21.5, "sbp": 100.5}, 0),
        ({"resp_rate": 30}, 1),  # missing criteria count as not met
    ],
)
def test_qsofa_counts_sepsis3_criteria(vitals: dict[str, float], expected: int) -> None:
    assert score(**vitals)["qsofa"] == expected


def test_qsofa_is_null_when_nothing_it_reads_was_recorded() -> None:
    assert score(heart_rate=120, temperature=39)["qsofa"] is None


# --- SIRS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"temperature": 38.5, "heart_rate": 95, "resp_rate": 22, "wbc": 13}, 4),
        ({"temperature": 37, "heart_rate": 80, "resp_rate": 16, "wbc": 8}, 0),
        ({"temperature": 38.0, "heart_rate": 90, "resp_rate": 20, "wbc": 12}, 0),
        ({"temperature": 36.0, "heart_rate": 90, "resp_rate": 20, "wbc": 4}, 0),
        ({"temperature": 38.1}, 1),
        ({"temperature": 35.9}, 1),
        ({"heart_rate": 91}, 1),
        ({"resp_rate": 21}, 1),
        ({"resp_rate": 16, "paco2": 31}, 1),
        ({"resp_rate": 16, "paco2": 32}, 0),
        ({"resp_rate": 24, "paco2": 28}, 1),  # one criterion, however it is met
        ({"wbc": 12.1}, 1),
        ({"wbc": 3.9}, 1),
    ],
)
def test_sirs_counts_criteria(values: dict[str, float], expected: int) -> None:
    assert score(**values)["sirs"] == expected


def test_sirs_is_null_when_nothing_it_reads_was_recorded() -> None:
    assert score(sbp=80, spo2=90)["sirs"] is None


# --- shock index ---------------------------------------------------------------------------


def test_shock_index_is_heart_rate_over_systolic_pressure() -> None:
    assert score(heart_rate=120, sbp=100)["shock_index"] == pytest.approx(1.2)


@pytest.mark.parametrize(
    "vitals", [{"heart_rate": 120}, {"sbp": 100}, {"heart_rate": 120, "sbp": 0}, {}]
)
def test_shock_index_is_null_without_both_values_or_with_zero_pressure(
    vitals: dict[str, float],
) -> None:
    assert score(**vitals)["shock_index"] is None


# --- inputs --------------------------------------------------------------------------------


def test_required_columns_are_last_values_of_catalogue_variables() -> None:
    catalogue = load_catalog().variables
    assert all(name.endswith("_last") for name in required_columns())
    assert [name for name in INPUT_VARIABLES if name not in catalogue] == []


def test_with_missing_columns_adds_absent_inputs_as_float_nulls() -> None:
    frame = pl.DataFrame({"encounter_id": ["e1"], "heart_rate_last": [88]})
    completed = with_missing_columns(frame)
    assert completed.schema["heart_rate_last"] == pl.Int64
    assert completed["heart_rate_last"].to_list() == [88]
    for name in required_columns():
        if name != "heart_rate_last":
            assert completed.schema[name] == pl.Float64
            assert completed[name].to_list() == [None]


def test_with_missing_columns_keeps_a_lazy_frame_lazy() -> None:
    completed = with_missing_columns(pl.LazyFrame({"sbp_last": [120.0]}))
    assert isinstance(completed, pl.LazyFrame)
    assert set(required_columns()) <= set(completed.collect_schema().names())


def test_scores_work_on_integer_columns_and_lazily() -> None:
    frame = pl.LazyFrame({"heart_rate_last": [115], "sbp_last": [100], "avpu_last": [2]})
    result = with_missing_columns(frame).with_columns(early_warning_scores()).collect()
    assert result.row(0, named=True)["news2"] == 2 + 2 + 3
    assert result["shock_index"].to_list() == [pytest.approx(1.15)]


def test_each_score_function_returns_one_named_expression() -> None:
    frame = with_missing_columns(pl.DataFrame({"heart_rate_last": [80.0]}))
    for expression, name in [
        (qsofa_expression(), "qsofa"),
        (sirs_expression(), "sirs"),
        (shock_index_expression(), "shock_index"),
    ]:
        assert frame.select(expression).columns == [name]


# --- properties ----------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
optional_finite = st.one_of(st.none(), finite)
vitals_rows = st.lists(
    st.fixed_dictionaries({name: optional_finite for name in INPUT_VARIABLES}),
    min_size=1,
    max_size=20,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=vitals_rows)
def test_news2_is_0_to_20_and_the_sum_of_its_subscores(rows: list[dict[str, float | None]]) -> None:
    result = scores_of(rows)
    subscores = result.select(NEWS2_SUBSCORES)
    assert result["news2"].null_count() == 0
    assert result["news2"].is_between(0, 20).all()
    assert result["news2"].to_list() == subscores.fill_null(0).sum_horizontal().to_list()
    measured_missing = result.select(MEASURED_SUBSCORES).select(
        pl.sum_horizontal(pl.all().is_null())
    )
    assert result["news2_missing"].to_list() == measured_missing.to_series().to_list()
    assert result["qsofa"].drop_nulls().is_between(0, 3).all()
    assert result["sirs"].drop_nulls().is_between(0, 4).all()


def chart_resp_rate(value: int) -> int:
    if value <= 8:
        return 3
    if 9 <= value <= 11:
        return 1
    if 12 <= value <= 20:
        return 0
    if 21 <= value <= 24:
        return 2
    return 3


def chart_spo2_scale1(value: int) -> int:
    if value <= 91:
        return 3
    if 92 <= value <= 93:
        return 2
    if 94 <= value <= 95:
        return 1
    return 0


def chart_spo2_scale2(value: int, *, oxygen: bool) -> int:
    if value <= 83:
        return 3
    if 84 <= value <= 85:
        return 2
    if 86 <= value <= 87:
        return 1
    if value <= 92 or not oxygen:
        return 0
    if 93 <= value <= 94:
        return 1
    if 95 <= value <= 96:
        return 2
    return 3


def chart_sbp(value: int) -> int:
    if value <= 90:
        return 3
    if 91 <= value <= 100:
        return 2
    if 101 <= value <= 110:
        return 1
    if 111 <= value <= 219:
        return 0
    return 3


def chart_heart_rate(value: int) -> int:
    if value <= 40:
        return 3
    if 41 <= value <= 50:
        return 1
    if 51 <= value <= 90:
        return 0
    if 91 <= value <= 110:
        return 1
    if 111 <= value <= 130:
        return 2
    return 3


def chart_temperature(tenths: int) -> int:
    if tenths <= 350:
        return 3
    if 351 <= tenths <= 360:
        return 1
    if 361 <= tenths <= 380:
        return 0
    if 381 <= tenths <= 390:
        return 1
    return 2


chart_rows = st.lists(
    st.fixed_dictionaries(
        {
            "resp_rate": st.integers(2, 60),
            "spo2": st.integers(60, 100),
            "o2_flow": st.sampled_from([0, 1, 4, 15]),
            "sbp": st.integers(50, 260),
            "heart_rate": st.integers(20, 220),
            "avpu": st.integers(0, 4),
            "temperature_tenths": st.integers(300, 430),
        }
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=60, deadline=None)
@given(rows=chart_rows)
def test_news2_matches_the_printed_chart_at_charting_resolution(
    rows: list[dict[str, int]],
) -> None:
    frame_rows = [
        {**{k: v for k, v in row.items() if k != "temperature_tenths"},
         "temperature": row["temperature_tenths"] / 10}
        for row in rows
    ]  # fmt: skip
    result = scores_of(frame_rows)  # type: ignore[arg-type]
    expected = [
        {
            "news2_resp_rate": chart_resp_rate(row["resp_rate"]),
            "news2_spo2": chart_spo2_scale1(row["spo2"]),
            "news2_spo2_scale2": chart_spo2_scale2(row["spo2"], oxygen=row["o2_flow"] > 0),
            "news2_air_or_oxygen": 2 if row["o2_flow"] > 0 else 0,
            "news2_sbp": chart_sbp(row["sbp"]),
            "news2_heart_rate": chart_heart_rate(row["heart_rate"]),
            "news2_consciousness": 0 if row["avpu"] == 0 else 3,
            "news2_temperature": chart_temperature(row["temperature_tenths"]),
        }
        for row in rows
    ]
    assert result.select(list(expected[0])).to_dicts() == expected
