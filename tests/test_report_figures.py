"""The report pages' figures (riskcast.dashboards.components.report_figures), without a browser."""

from __future__ import annotations

import polars as pl

from riskcast.dashboards.components.report_figures import discrimination_figure, groups_figure, over_time_figure

OVERALL = pl.DataFrame({"metric": ["sensitivity"], "value": [0.5], "low": [0.4], "high": [0.6]})


def groups(*, suppressed: list[bool]) -> pl.DataFrame:
    n = len(suppressed)
    return pl.DataFrame(
        {
            "group": ["White", "Black", "Asian"][:n],
            "reference": [True, False, False][:n],
            "suppressed": suppressed,
            "sensitivity": [0.6, 0.3, None][:n],
            "sensitivity_low": [0.5, 0.2, None][:n],
            "sensitivity_high": [0.7, 0.4, None][:n],
        },
        schema_overrides={"sensitivity": pl.Float64, "sensitivity_low": pl.Float64, "sensitivity_high": pl.Float64},
    )


def test_a_suppressed_group_is_named_on_the_axis_with_no_bar() -> None:
    figure = groups_figure(groups(suppressed=[False, False, True]), "sensitivity", overall=OVERALL,
                           suppressed_label="suppressed (n<10)")  # fmt: skip
    (bars,) = figure.data
    assert list(bars.x) == ["White (reference)", "Black", "Asian"]
    assert list(bars.y) == [0.6, 0.3, None]
    assert any(a.text == "suppressed" and a.x == "Asian" for a in figure.layout.annotations)


def test_when_every_group_is_suppressed_the_figure_says_so_and_shows_no_number() -> None:
    figure = groups_figure(groups(suppressed=[True, True]), "sensitivity", overall=OVERALL, suppressed_label="suppressed (n<10)")
    assert all(v is None for v in figure.data[0].y)
    assert any("Every group is suppressed (n<10)" in a.text for a in figure.layout.annotations)


def test_figures_without_data_say_why_they_are_blank() -> None:
    texts = [
        discrimination_figure(pl.DataFrame(), prevalence=None).layout.annotations[0].text,
        over_time_figure(pl.DataFrame()).layout.annotations[0].text,
        groups_figure(pl.DataFrame(), "sensitivity", overall=OVERALL, suppressed_label="").layout.annotations[0].text,
    ]
    assert texts == [
        "The evaluation report has no discrimination results.",
        "This version has no scores yet, so there is nothing to follow over time.",
        "No groups for this feature.",
    ]
