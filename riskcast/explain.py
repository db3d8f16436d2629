"""SHAP contributions -> the few clinical variables that drive each score, in words.

A tree model's SHAP contributions (XGBoost ``pred_contribs=True``, LightGBM
``pred_contrib=True``, or a ``RiskModel.contributions``) come as one column per model
feature plus, optionally, a last column for the bias (the expected margin). Everything here
is on the **margin scale: log-odds of the event, before calibration**. A row's
contributions plus its bias sum to the raw margin, so a driver shown as ``(+0.09)`` added
0.09 log-odds to that patient's score; contributions are not probabilities and do not add
up on the probability scale.

A clinical variable feeds many features (``resp_rate_last``, ``resp_rate_slope_6h``,
``resp_rate_mean_6h`` ...). People think in variables, so contributions are first summed
per variable (`group_contributions`); the sum keeps the total, so grouped rows still add
up to the margin. The variable of a feature is read from its name with the catalogue
(`variable_of`): a catalogue name plus one of the feature suffixes, ``news2`` and its
components, and otherwise the feature itself (``age``, ``sex_male``,
``hours_since_admission``, ``shock_index``).

`top_drivers` then picks, per row, the k variables that push the score up the most and
says each one in words a ward nurse reads at a glance, e.g.
``Respiratory rate 28 /min, rising over 6 h (+0.09)``. When the feature that carries most
of a variable's push is about *how often* it was measured (``{v}_hours_since``,
``{v}_count_24h``) the words say so honestly -- ``Not measured for 14 h: heart rate`` --
rather than quoting a value the model did not lean on.

Pure functions on arrays and frames: no model, no I/O, no clock. Values never go to logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from riskcast.catalog import Catalog, Variable, load_catalog
from riskcast.errors import ModelError
from riskcast.features.families import SUFFIXES, suffixes_of

BIAS = "bias"
NEWS2 = "news2"

#: Suffixes that features/ appends to a catalogue variable name (riskcast.features.families).
FEATURE_SUFFIXES = SUFFIXES
#: Features about the measurement process (when and how often), not the patient's value.
MEASUREMENT_PROCESS_SUFFIXES = suffixes_of("process", "missingness")

DIRECTIONS = ("risk_up", "risk_down", "both")

#: A 6 h change (slope_6h x 6 h) counts as rising or falling when it exceeds this fraction
#: of the smaller of |last value| and the variable's plausible span (so a temperature of
#: 38 degC needs 1 degC, not 1.9), and at least one display step (10**-decimals).
TREND_FRACTION = 0.05
TREND_HOURS = 6.0

#: UCUM (the catalogue's canonical units) -> how a unit is printed for people.
UNIT_DISPLAY = {
    "/min": "/min",
    "Cel": "°C",
    "[degF]": "°F",
    "%": "%",
    "mm[Hg]": "mmHg",
    "L/min": "L/min",
    "mmol/L": "mmol/L",
    "umol/L": "µmol/L",
    "ug/L": "µg/L",
    "ng/mL": "ng/mL",
    "mg/dL": "mg/dL",
    "g/dL": "g/dL",
    "g/L": "g/L",
    "meq/L": "mEq/L",
    "10*9/L": "×10⁹/L",
    "10*3/uL": "×10³/µL",
    "U/L": "U/L",
    "s": "s",
    "1": "",
    "{score}": "",
    "[pH]": "",
}

#: Words for the model features that are not catalogue variables.
_OTHER_LABELS = {
    "age": ("Age", 0),
    "hours_since_admission": ("Hours since admission", 0),
    "shock_index": ("Shock index", 2),
}

DRIVERS_SCHEMA = {
    "rank": pl.Int32,
    "variable": pl.String,
    "feature": pl.String,
    "text": pl.String,
    "contribution": pl.Float64,
    "value": pl.Float64,
}


@dataclass(frozen=True)
class Driver:
    """One variable that moved one score, said for people.

    rank: 1 for the strongest driver of the row.
    variable: the clinical variable (catalogue name) or the feature itself (``age``).
    feature: the single model feature that carried most of the variable's push.
    text: the words, ending in the contribution, e.g. ``Lactate 3.4 mmol/L (+0.04)``.
    contribution: the variable's summed SHAP contribution, margin (log-odds) scale.
    value: the number the text shows (last value in the canonical unit, hours since the
        last measurement, NEWS2 total, age ...); None when there is none.
    """

    rank: int
    variable: str
    feature: str
    text: str
    contribution: float
    value: float | None


# ----------------------------------------------------------------------------- grouping


def variable_of(feature: str, *, catalog: Catalog | None = None) -> str:
    """The clinical variable a model feature belongs to.

    ``resp_rate_slope_6h`` -> ``resp_rate``; ``news2`` and ``news2_*`` -> ``news2``;
    a name that is not a catalogue variable plus a known suffix is its own variable
    (``age``, ``sex_male``, ``hours_since_admission``, ``shock_index``).
    """
    catalog = catalog or load_catalog()
    if feature == NEWS2 or feature.startswith(NEWS2 + "_"):
        return NEWS2
    for suffix in FEATURE_SUFFIXES:
        if feature.endswith(suffix):
            stem = feature[: -len(suffix)]
            if stem in catalog.variables:
                return stem
    return feature


@dataclass(frozen=True)
class _Grouping:
    variables: list[str]  # in order of first appearance in feature_names
    group_of_feature: np.ndarray  # (p,) index into variables
    column_order: np.ndarray  # (p,) feature columns sorted by group, stable
    group_starts: np.ndarray  # (g,) start of each group in column_order
    features_of_group: list[np.ndarray]  # feature column indices per group


def _grouping(feature_names: Sequence[str], catalog: Catalog) -> _Grouping:
    index: dict[str, int] = {}
    group_of_feature = np.empty(len(feature_names), dtype=np.intp)
    for j, feature in enumerate(feature_names):
        group_of_feature[j] = index.setdefault(variable_of(feature, catalog=catalog), len(index))
    column_order = np.argsort(group_of_feature, kind="stable")
    sorted_groups = group_of_feature[column_order]
    group_starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    features_of_group = np.split(column_order, group_starts[1:])
    return _Grouping(list(index), group_of_feature, column_order, group_starts, features_of_group)


def _split_bias(
    contributions: np.ndarray, feature_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, p) feature contributions as float64, and the (n,) bias column if there was one."""
    matrix = np.asarray(contributions)
    n_features = len(feature_names)
    if n_features == 0:
        raise ModelError("explain: feature_names is empty; contributions need one name per feature column")
    if len(set(feature_names)) != n_features:
        seen: set[str] = set()
        duplicates = sorted({f for f in feature_names if f in seen or seen.add(f)})
        raise ModelError(
            f"explain: feature_names has {len(duplicates)} duplicate(s): {', '.join(duplicates[:5])}"
        )
    if matrix.ndim != 2:
        raise ModelError(
            f"explain: contributions must be a 2-d array (rows x features[+bias]), got shape {matrix.shape}"
        )
    if matrix.shape[1] == n_features:
        return matrix.astype(np.float64, copy=False), None
    if matrix.shape[1] == n_features + 1:
        matrix = matrix.astype(np.float64, copy=False)
        return matrix[:, :n_features], matrix[:, n_features]
    raise ModelError(
        f"explain: contributions have {matrix.shape[1]} columns but there are {n_features} feature names "
        f"(expected {n_features}, or {n_features + 1} with the bias last)"
    )


def _grouped(features_part: np.ndarray, grouping: _Grouping) -> np.ndarray:
    if features_part.shape[0] == 0:
        return np.zeros((0, len(grouping.variables)))
    return np.add.reduceat(features_part[:, grouping.column_order], grouping.group_starts, axis=1)


def group_contributions(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    *,
    catalog: Catalog | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Sum per-feature SHAP contributions into one column per clinical variable.

    contributions: (n, p) or (n, p + 1) on the margin (log-odds) scale, columns in the
        order of feature_names; with p + 1 columns the last is the bias.
    Returns the (n, g) grouped matrix and its g column names, variables in order of first
    appearance in feature_names. When a bias column came in, it goes out as the last
    column, named ``"bias"``, so every grouped row still sums to the raw margin.
    """
    catalog = catalog or load_catalog()
    features_part, bias = _split_bias(contributions, feature_names)
    grouping = _grouping(feature_names, catalog)
    grouped = _grouped(features_part, grouping)
    if bias is None:
        return grouped, list(grouping.variables)
    return np.column_stack([grouped, bias]), [*grouping.variables, BIAS]


# ----------------------------------------------------------------------------- words


def _format_number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0"


def _lower_first(label: str) -> str:
    """'Heart rate' -> 'heart rate', but 'AST' and 'SpO2' stay as they are."""
    if len(label) > 1 and label[1].isupper():
        return label
    return label[:1].lower() + label[1:]


def _with_unit(number: str, unit: str) -> str:
    display = UNIT_DISPLAY.get(unit, unit)
    return f"{number} {display}" if display else number


def _trend_words(variable: Variable, last: float, slope_per_hour: float) -> str:
    change = slope_per_hour * TREND_HOURS
    span = variable.plausible_max - variable.plausible_min
    threshold = max(TREND_FRACTION * min(abs(last), span), 10.0**-variable.decimals)
    if change > threshold:
        return ", rising over 6 h"
    if change < -threshold:
        return ", falling over 6 h"
    return ", steady over 6 h"


class _Columns:
    """Feature columns as float arrays (null -> NaN), read once and only when needed."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self._frame = frame
        self._cache: dict[str, np.ndarray | None] = {}

    def get(self, name: str) -> np.ndarray | None:
        if name not in self._cache:
            if name in self._frame.columns:
                series = self._frame.get_column(name).cast(pl.Float64, strict=False)
                self._cache[name] = series.to_numpy()
            else:
                self._cache[name] = None
        return self._cache[name]

    def value(self, name: str, row: int) -> float | None:
        column = self.get(name)
        if column is None:
            return None
        value = float(column[row])
        return None if math.isnan(value) else value


# A describer turns (row, driving feature) into (words without the contribution, value).
_Describer = Callable[[int, str], tuple[str, float | None]]


def _catalog_describer(variable: Variable, columns: _Columns) -> _Describer:
    name, label = variable.name, variable.label
    letters = {code: letter for letter, code in variable.codes.items()}

    def describe(row: int, feature: str) -> tuple[str, float | None]:
        if feature == f"{name}_hours_since":
            hours = columns.value(feature, row)
            if hours is None:
                return f"Not measured: {_lower_first(label)}", None
            if round(hours) < 1:
                return f"Measured within the hour: {_lower_first(label)}", hours
            return f"Not measured for {hours:.0f} h: {_lower_first(label)}", hours
        if feature in (f"{name}_count_24h", f"{name}_count_stay"):
            count = columns.value(feature, row)
            span = "in 24 h" if feature.endswith("_24h") else "this stay"
            if not count:
                return f"Not measured {span}: {_lower_first(label)}", count
            times = "once" if round(count) == 1 else f"{count:.0f} times"
            return f"Measured {times} {span}: {_lower_first(label)}", count
        if feature == f"{name}_measured":
            measured = columns.value(feature, row)
            return (f"Measured in the last hour: {_lower_first(label)}" if measured else
                    f"Not measured in the last hour: {_lower_first(label)}"), measured
        if columns.get(f"{name}_last") is None:
            return label, None
        last = columns.value(f"{name}_last", row)
        if last is None:
            return f"{label} not measured", None
        if last in letters:
            words = f"{label} {letters[last]}"
        else:
            words = f"{label} {_with_unit(_format_number(last, variable.decimals), variable.unit)}"
        slope = columns.value(f"{name}_slope_6h", row)
        if slope is not None:
            words += _trend_words(variable, last, slope)
        return words, last

    return describe


def _news2_describer(columns: _Columns) -> _Describer:
    def describe(row: int, feature: str) -> tuple[str, float | None]:
        if feature == "news2_missing":
            missing = columns.value(feature, row)
            if missing:
                components = "component" if round(missing) == 1 else "components"
                return f"NEWS2 incomplete: {missing:.0f} {components} not measured", missing
        total = columns.value(NEWS2, row)
        if total is None:
            return "NEWS2 not available", None
        return f"NEWS2 {total:.0f}", total

    return describe


def _sex_describer(columns: _Columns) -> _Describer:
    def describe(row: int, feature: str) -> tuple[str, float | None]:
        male = columns.value(feature, row)
        if male is None:
            return "Sex not recorded", None
        return ("Male sex" if male >= 0.5 else "Female or other sex"), male

    return describe


def _plain_describer(variable: str, columns: _Columns) -> _Describer:
    label, decimals = _OTHER_LABELS.get(variable, (variable.replace("_", " ").capitalize(), None))

    def describe(row: int, feature: str) -> tuple[str, float | None]:
        value = columns.value(feature, row)
        if value is None:
            return f"{label} not recorded", None
        number = f"{value:.4g}" if decimals is None else _format_number(value, decimals)
        return f"{label} {number}", value

    return describe


def _describer_for(variable: str, catalog: Catalog, columns: _Columns) -> _Describer:
    if variable in catalog.variables:
        return _catalog_describer(catalog.variables[variable], columns)
    if variable == NEWS2:
        return _news2_describer(columns)
    if variable == "sex_male":
        return _sex_describer(columns)
    return _plain_describer(variable, columns)


# ----------------------------------------------------------------------------- drivers


def _ranking_score(grouped: np.ndarray, direction: str) -> np.ndarray:
    if direction == "risk_up":
        return grouped
    if direction == "risk_down":
        return -grouped
    if direction == "both":
        return np.abs(grouped)
    raise ModelError(f"explain: direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")


def top_drivers(
    contributions: np.ndarray,
    features: pl.DataFrame,
    feature_names: Sequence[str],
    *,
    k: int = 3,
    min_abs: float = 0.0,
    direction: str = "risk_up",
    catalog: Catalog | None = None,
) -> list[list[Driver]]:
    """The k variables that moved each row's score the most, with words for people.

    contributions: (n, p) or (n, p + 1) SHAP contributions on the margin (log-odds)
        scale, columns in feature_names order (a last bias column is ignored here).
    features: the n feature rows that were scored, same order; the words read
        ``{v}_last``, ``{v}_slope_6h`` (units per hour), ``{v}_hours_since``,
        ``{v}_count_24h``, ``news2``, ``age`` ... from it when present. A missing
        column only makes the words shorter; a null last value reads "not measured".
    direction: "risk_up" keeps variables with a positive summed contribution, largest
        first (what raised the alarm); "risk_down" the negative ones, most negative first;
        "both" ranks by absolute contribution.
    min_abs: drop drivers whose |contribution| is below this (log-odds).
    Returns one list per row, possibly shorter than k (or empty) when fewer variables
    qualify. Grouping and ranking are vectorised; only the k chosen per row are worded.
    """
    if k < 1:
        raise ModelError(f"explain: k must be at least 1; got {k}")
    if min_abs < 0:
        raise ModelError(f"explain: min_abs must be >= 0 (log-odds); got {min_abs}")
    catalog = catalog or load_catalog()
    features_part, _ = _split_bias(contributions, feature_names)
    n_rows = features_part.shape[0]
    if features.height != n_rows:
        raise ModelError(
            f"explain: features has {features.height} rows but contributions have {n_rows}; "
            "they must be the same rows in the same order"
        )
    grouping = _grouping(feature_names, catalog)
    grouped = _grouped(features_part, grouping)
    score = _ranking_score(grouped, direction)
    n_groups = grouped.shape[1]
    if n_rows == 0:
        return []

    k_kept = min(k, n_groups)
    if k_kept < n_groups:
        candidates = np.argpartition(-score, k_kept - 1, axis=1)[:, :k_kept]
    else:
        candidates = np.broadcast_to(np.arange(n_groups), (n_rows, n_groups))
    order = np.argsort(-np.take_along_axis(score, candidates, axis=1), axis=1, kind="stable")
    chosen = np.take_along_axis(candidates, order, axis=1)  # (n, k_kept) group indices
    chosen_score = np.take_along_axis(score, chosen, axis=1)
    chosen_value = np.take_along_axis(grouped, chosen, axis=1)
    keep = (chosen_score > 0) & (np.abs(chosen_value) >= min_abs)

    # The driving feature of each chosen (row, variable): the member feature pushing
    # hardest in the same direction as the variable's total.
    driving = np.full(chosen.shape, -1, dtype=np.intp)
    for group in np.unique(chosen[keep]):
        members = grouping.features_of_group[group]
        rows, slots = np.nonzero((chosen == group) & keep)
        if members.size == 1:
            driving[rows, slots] = members[0]
            continue
        sign = np.sign(grouped[rows, group])[:, None]
        member_values = features_part[rows[:, None], members[None, :]] * sign
        driving[rows, slots] = members[np.argmax(member_values, axis=1)]

    columns = _Columns(features)
    describers = {
        grouping.variables[g]: _describer_for(grouping.variables[g], catalog, columns)
        for g in np.unique(chosen[keep])
    }
    names = list(feature_names)
    result: list[list[Driver]] = []
    keep_rows = keep.tolist()
    chosen_rows = chosen.tolist()
    value_rows = chosen_value.tolist()
    driving_rows = driving.tolist()
    for row in range(n_rows):
        drivers: list[Driver] = []
        for slot, kept in enumerate(keep_rows[row]):
            if not kept:
                break  # ranked by score, so once one fails the score test the rest do too
            variable = grouping.variables[chosen_rows[row][slot]]
            feature = names[driving_rows[row][slot]]
            contribution = value_rows[row][slot]
            words, value = describers[variable](row, feature)
            drivers.append(
                Driver(
                    rank=len(drivers) + 1,
                    variable=variable,
                    feature=feature,
                    text=f"{words} ({contribution:+.2f})",
                    contribution=contribution,
                    value=value,
                )
            )
        result.append(drivers)
    return result


def drivers_frame(keys: pl.DataFrame, drivers: Sequence[Sequence[Driver]]) -> pl.DataFrame:
    """Drivers as a long frame: one row per (scored row, driver).

    keys: one row per scored row, in the order of `drivers` (e.g. encounter_id, time);
    its columns are repeated on each driver row, followed by rank, variable, feature,
    text, contribution (log-odds) and value. Rows with no drivers contribute no rows.
    """
    if keys.height != len(drivers):
        raise ModelError(
            f"explain: keys has {keys.height} rows but there are driver lists for {len(drivers)} rows"
        )
    clash = sorted(set(keys.columns) & set(DRIVERS_SCHEMA))
    if clash:
        raise ModelError(f"explain: key columns clash with driver columns: {', '.join(clash)}")
    counts = np.fromiter((len(row) for row in drivers), dtype=np.intp, count=len(drivers))
    repeated_keys = keys.gather(np.repeat(np.arange(keys.height), counts))
    flat = [driver for row in drivers for driver in row]
    body = pl.DataFrame(
        {
            "rank": [d.rank for d in flat],
            "variable": [d.variable for d in flat],
            "feature": [d.feature for d in flat],
            "text": [d.text for d in flat],
            "contribution": [d.contribution for d in flat],
            "value": [d.value for d in flat],
        },
        schema=DRIVERS_SCHEMA,
    )
    return pl.concat([repeated_keys, body], how="horizontal")


def global_importance(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    *,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Mean |SHAP| per variable and per feature, for the model card.

    One long frame: level ("variable" rows first, then "feature"), name, variable,
    mean_abs_contribution (mean over rows of |contribution|, log-odds), mean_contribution
    (signed mean), share (of the level's total mean_abs_contribution) and rank (1 = most
    important within its level), sorted by level then rank. A variable's importance is
    the mean |summed contribution|, which can be less than the sum of its features'
    importances when they pull in opposite directions. The bias is left out.
    """
    catalog = catalog or load_catalog()
    features_part, _ = _split_bias(contributions, feature_names)
    if features_part.shape[0] == 0:
        raise ModelError("explain: global_importance needs at least one row of contributions")
    grouping = _grouping(feature_names, catalog)
    grouped = _grouped(features_part, grouping)

    def level(name: str, matrix: np.ndarray, names: list[str], variables: list[str]) -> pl.DataFrame:
        mean_abs = np.abs(matrix).mean(axis=0)
        total = mean_abs.sum()
        return (
            pl.DataFrame(
                {
                    "level": [name] * len(names),
                    "name": names,
                    "variable": variables,
                    "mean_abs_contribution": mean_abs,
                    "mean_contribution": matrix.mean(axis=0),
                    "share": mean_abs / total if total > 0 else np.zeros_like(mean_abs),
                }
            )
            .sort(["mean_abs_contribution", "name"], descending=[True, False])
            .with_row_index("rank", offset=1)
            .with_columns(pl.col("rank").cast(pl.Int32))
        )

    by_variable = level("variable", grouped, grouping.variables, grouping.variables)
    feature_variables = [grouping.variables[g] for g in grouping.group_of_feature]
    by_feature = level("feature", features_part, list(feature_names), feature_variables)
    return pl.concat([by_variable, by_feature]).select(
        "level", "rank", "name", "variable", "mean_abs_contribution", "mean_contribution", "share"
    )
