"""riskcast.explain: SHAP contributions grouped per clinical variable and said in words."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from riskcast.errors import ModelError
from riskcast.explain import (
    BIAS,
    Driver,
    drivers_frame,
    global_importance,
    group_contributions,
    top_drivers,
    variable_of,
)


def one_row(contributions: dict[str, float]) -> tuple[np.ndarray, list[str]]:
    """A (1, p) contribution matrix and its feature names, from a name -> value dict."""
    return np.array([list(contributions.values())]), list(contributions)


def only_driver(contributions: dict[str, float], features: dict[str, float | None]) -> Driver:
    matrix, names = one_row(contributions)
    frame = pl.DataFrame(
        {name: [value] for name, value in features.items()}, schema=dict.fromkeys(features, pl.Float64)
    )
    (drivers,) = top_drivers(matrix, frame, names, k=1)
    (driver,) = drivers
    return driver


# ----------------------------------------------------------------------------- grouping


def test_variable_of_strips_feature_suffixes_using_catalogue_names() -> None:
    assert variable_of("resp_rate_slope_6h") == "resp_rate"
    assert variable_of("bilirubin_direct_last") == "bilirubin_direct"
    assert variable_of("bilirubin_last") == "bilirubin"
    assert variable_of("heart_rate_hours_since") == "heart_rate"
    assert variable_of("news2") == "news2"
    assert variable_of("news2_spo2_scale2") == "news2"
    assert variable_of("hours_since_admission") == "hours_since_admission"
    assert variable_of("age") == "age"
    assert variable_of("unknown_thing_last") == "unknown_thing_last"


def test_features_of_one_variable_are_summed_into_one_column() -> None:
    names = ["resp_rate_last", "age", "resp_rate_slope_6h", "news2", "resp_rate_mean_6h", "news2_spo2"]
    contributions = np.array([[0.10, 0.03, 0.02, 0.05, -0.01, 0.20], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])

    grouped, variables = group_contributions(contributions, names)

    assert variables == ["resp_rate", "age", "news2"]
    np.testing.assert_allclose(grouped, [[0.11, 0.03, 0.25], [9.0, 2.0, 10.0]])


def test_grouped_rows_with_bias_still_sum_to_the_margin() -> None:
    rng = np.random.default_rng(1)
    names = [
        "heart_rate_last", "heart_rate_max_24h", "lactate_last", "lactate_hours_since", "age", "sex_male"
    ]
    contributions = rng.normal(size=(50, len(names) + 1))

    grouped, variables = group_contributions(contributions, names)

    assert variables == ["heart_rate", "lactate", "age", "sex_male", BIAS]
    np.testing.assert_array_equal(grouped[:, -1], contributions[:, -1])
    np.testing.assert_allclose(grouped.sum(axis=1), contributions.sum(axis=1), atol=1e-12)


def test_contributions_that_do_not_match_the_feature_names_are_refused() -> None:
    with pytest.raises(ModelError, match="contributions have 4 columns but there are 2 feature names"):
        group_contributions(np.zeros((3, 4)), ["age", "sex_male"])


# ----------------------------------------------------------------------------- ranking


def test_top_drivers_are_the_largest_positive_variables_in_order() -> None:
    names = ["resp_rate_last", "resp_rate_slope_6h", "heart_rate_last", "lactate_last", "age", "news2"]
    contributions = np.array(
        [
            [0.05, 0.04, 0.30, -0.50, 0.10, 0.02, -1.0],  # resp 0.09, hr 0.30, lactate -0.5, age 0.10
            [-0.20, 0.00, -0.10, -0.05, -0.01, 0.01, -1.0],  # only news2 pushes up
        ]
    )
    features = pl.DataFrame({name: [1.0, 1.0] for name in names})

    first, second = top_drivers(contributions, features, names, k=3)

    assert [d.variable for d in first] == ["heart_rate", "age", "resp_rate"]
    assert [d.rank for d in first] == [1, 2, 3]
    assert first[2].contribution == pytest.approx(0.09)
    assert [d.variable for d in second] == ["news2"]


def test_direction_both_ranks_by_absolute_contribution() -> None:
    names = ["lactate_last", "heart_rate_last", "age"]
    contributions = np.array([[-0.50, 0.30, 0.10]])
    features = pl.DataFrame({name: [1.0] for name in names})

    (drivers,) = top_drivers(contributions, features, names, k=2, direction="both")

    assert [(d.variable, d.contribution) for d in drivers] == [("lactate", -0.50), ("heart_rate", 0.30)]


def test_min_abs_drops_drivers_too_small_to_mention() -> None:
    names = ["heart_rate_last", "age"]
    contributions = np.array([[0.30, 0.004]])
    features = pl.DataFrame({name: [1.0] for name in names})

    (drivers,) = top_drivers(contributions, features, names, k=3, min_abs=0.01)

    assert [d.variable for d in drivers] == ["heart_rate"]


def test_an_unknown_direction_is_refused_by_name() -> None:
    with pytest.raises(ModelError, match="direction must be one of risk_up, risk_down, both; got 'up'"):
        top_drivers(np.zeros((1, 1)), pl.DataFrame({"age": [1.0]}), ["age"], direction="up")


def test_features_with_other_rows_than_contributions_are_refused() -> None:
    with pytest.raises(ModelError, match="features has 2 rows but contributions have 1"):
        top_drivers(np.zeros((1, 1)), pl.DataFrame({"age": [1.0, 2.0]}), ["age"])


# ----------------------------------------------------------------------------- words


def test_a_rising_respiratory_rate_is_said_with_unit_and_trend() -> None:
    driver = only_driver(
        {"resp_rate_last": 0.06, "resp_rate_slope_6h": 0.03},
        {"resp_rate_last": 28.0, "resp_rate_slope_6h": 1.5},  # +9 /min over 6 h
    )

    assert driver.text == "Respiratory rate 28 /min, rising over 6 h (+0.09)"
    assert driver.variable == "resp_rate"
    assert driver.feature == "resp_rate_last"
    assert driver.value == 28.0


def test_a_falling_spo2_is_said_as_falling() -> None:
    driver = only_driver(
        {"spo2_last": 0.03, "spo2_slope_6h": 0.02},
        {"spo2_last": 91.0, "spo2_slope_6h": -1.0},  # -6 % over 6 h
    )

    assert driver.text == "Oxygen saturation (SpO2) 91 %, falling over 6 h (+0.05)"


def test_without_a_slope_column_the_words_have_no_trend() -> None:
    driver = only_driver({"spo2_last": 0.05, "spo2_min_6h": 0.0}, {"spo2_last": 91.0})

    assert driver.text == "Oxygen saturation (SpO2) 91 % (+0.05)"


def test_a_small_slope_reads_steady_and_celsius_reads_as_degrees() -> None:
    driver = only_driver(
        {"temperature_last": 0.04, "temperature_slope_6h": 0.0},
        {"temperature_last": 38.4, "temperature_slope_6h": 0.05},  # +0.3 degC over 6 h
    )

    assert driver.text == "Temperature 38.4 °C, steady over 6 h (+0.04)"


def test_a_lab_uses_the_catalogue_decimals_and_unit() -> None:
    driver = only_driver({"lactate_last": 0.04}, {"lactate_last": 3.44})

    assert driver.text == "Lactate 3.4 mmol/L (+0.04)"


def test_a_variable_driven_by_time_since_measured_says_not_measured_for() -> None:
    driver = only_driver(
        {"heart_rate_last": -0.01, "heart_rate_hours_since": 0.03},
        {"heart_rate_last": 88.0, "heart_rate_hours_since": 14.2},
    )

    assert driver.text == "Not measured for 14 h: heart rate (+0.02)"
    assert driver.feature == "heart_rate_hours_since"
    assert driver.value == pytest.approx(14.2)


def test_a_null_last_value_says_not_measured_and_does_not_crash() -> None:
    driver = only_driver({"lactate_last": 0.04}, {"lactate_last": None})

    assert driver.text == "Lactate not measured (+0.04)"
    assert driver.value is None


def test_news2_is_said_as_its_total() -> None:
    driver = only_driver(
        {"news2": 0.08, "news2_resp_rate": 0.04, "news2_missing": 0.0},
        {"news2": 7.0, "news2_resp_rate": 3.0, "news2_missing": 0.0},
    )

    assert driver.text == "NEWS2 7 (+0.12)"
    assert driver.variable == "news2"


def test_age_and_hours_since_admission_are_said_plainly() -> None:
    assert only_driver({"age": 0.03}, {"age": 84.0}).text == "Age 84 (+0.03)"
    assert only_driver({"hours_since_admission": 0.01}, {"hours_since_admission": 3.0}).text == (
        "Hours since admission 3 (+0.01)"
    )


def test_ordinal_variables_are_said_with_their_code_letters() -> None:
    driver = only_driver({"avpu_last": 0.2}, {"avpu_last": 2.0})

    assert driver.text == "Consciousness (ACVPU) V (+0.20)"


# ----------------------------------------------------------------------------- frames


def test_drivers_frame_repeats_keys_once_per_driver() -> None:
    names = ["heart_rate_last", "age", "lactate_last"]
    contributions = np.array([[0.3, 0.1, 0.2], [-0.1, -0.1, -0.1], [0.0, 0.5, -0.2]])
    features = pl.DataFrame(
        {"heart_rate_last": [120.0, 80.0, 70.0], "age": [70.0, 50.0, 90.0], "lactate_last": [4.0, None, 1.0]}
    )
    keys = pl.DataFrame({"encounter_id": ["a", "b", "c"], "time": [1, 2, 3]})

    frame = drivers_frame(keys, top_drivers(contributions, features, names, k=2))

    assert frame.columns == [
        "encounter_id", "time", "rank", "variable", "feature", "text", "contribution", "value"
    ]
    assert frame.height == 3  # two for a, none for b, one for c
    assert frame["encounter_id"].to_list() == ["a", "a", "c"]
    assert frame["variable"].to_list() == ["heart_rate", "lactate", "age"]
    assert frame["rank"].to_list() == [1, 2, 1]


def test_global_importance_sorts_variables_then_features_by_mean_absolute_contribution() -> None:
    names = ["resp_rate_last", "resp_rate_slope_6h", "age", "heart_rate_last"]
    contributions = np.array([[0.4, -0.1, 0.25, 0.01, 0.0], [-0.4, 0.1, -0.25, 0.03, 0.0]])

    importance = global_importance(contributions, names)

    variables = importance.filter(pl.col("level") == "variable")
    features = importance.filter(pl.col("level") == "feature")
    assert variables["name"].to_list() == ["resp_rate", "age", "heart_rate"]
    assert variables["mean_abs_contribution"].to_list() == pytest.approx([0.3, 0.25, 0.02])
    assert features["name"].to_list() == ["resp_rate_last", "age", "resp_rate_slope_6h", "heart_rate_last"]
    assert features["rank"].to_list() == [1, 2, 3, 4]
    assert features["variable"].to_list() == ["resp_rate", "age", "resp_rate", "heart_rate"]
    assert importance["level"].to_list()[:3] == ["variable"] * 3


# ----------------------------------------------------------------------------- a real model


def test_grouped_xgboost_contributions_sum_to_the_margin_and_name_the_driver() -> None:
    xgboost = pytest.importorskip("xgboost")
    rng = np.random.default_rng(7)
    n = 500
    resp_rate = rng.normal(18, 4, n)
    names = ["resp_rate_last", "resp_rate_slope_6h", "heart_rate_last", "age"]
    X = np.column_stack([resp_rate, rng.normal(0, 0.5, n), rng.normal(85, 15, n), rng.uniform(20, 95, n)])
    y = (resp_rate + rng.normal(0, 2, n) > 22).astype(float)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 2},
        xgboost.DMatrix(X, label=y, feature_names=names),
        num_boost_round=30,
    )
    rows = np.array([[40.0, 0.0, 85.0, 50.0], [16.0, 0.0, 80.0, 40.0]])
    matrix = xgboost.DMatrix(rows, feature_names=names)
    contributions = booster.predict(matrix, pred_contribs=True)
    margin = booster.predict(matrix, output_margin=True)

    grouped, variables = group_contributions(contributions, names)
    features = pl.DataFrame(rows, schema=names, orient="row")
    drivers = top_drivers(contributions, features, names, k=1)

    assert variables == ["resp_rate", "heart_rate", "age", BIAS]
    np.testing.assert_allclose(grouped.sum(axis=1), margin, atol=1e-4)
    assert drivers[0][0].variable == "resp_rate"
    assert drivers[0][0].text.startswith("Respiratory rate 40 /min, steady over 6 h (+")
