"""Outcome labels on the hourly grid: 1 when the first event falls in (t, t + H], rows from
the event on dropped, 0 when observed through the horizon without it, null when censored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from riskcast.contracts import UTC_DATETIME
from riskcast.errors import LabelError
from riskcast.labels import challenge_labels, first_events, make_labels, outcome_types
from riskcast.lake import LAKE_SCHEMAS

ADMIT = datetime(2024, 1, 10, 8, tzinfo=timezone.utc)


def hour(h: int) -> datetime:
    """ADMIT + h hours."""
    return ADMIT + timedelta(hours=h)


def grid(encounter_id: str, hours: range) -> pl.DataFrame:
    return pl.DataFrame(
        {"encounter_id": [encounter_id] * len(hours), "time": [hour(h) for h in hours]},
        schema={"encounter_id": pl.String, "time": UTC_DATETIME},
    )


def stays(*rows: tuple[str, datetime | None]) -> pl.DataFrame:
    """(encounter_id, discharge_time) rows, all admitted at ADMIT."""
    return pl.DataFrame(
        [(e, "P1", ADMIT, discharge, "ward-1", "site-a") for e, discharge in rows],
        schema=LAKE_SCHEMAS["encounters"],
        orient="row",
    )


def events(*rows: tuple[str, datetime, str]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=LAKE_SCHEMAS["outcomes"], orient="row")


NO_EVENTS = events()


def labels_by_hour(frame: pl.DataFrame) -> dict[int, int | None]:
    return {int((t - ADMIT).total_seconds() // 3600): label for t, label in frame.select("time", "label").rows()}


def test_label_is_1_when_the_event_falls_within_the_horizon_including_its_end():
    labels = make_labels(
        grid("E1", range(0, 10)),
        events(("E1", hour(9), "icu_transfer")),
        stays(("E1", hour(9))),
        outcome="icu_transfer",
        horizon_hours=4,
    )
    # t + 4 h >= 9 h from t = 5 h on; t = 5 h has the event exactly at the horizon's end.
    assert labels_by_hour(labels) == {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1}


def test_rows_at_and_after_the_first_event_are_dropped():
    labels = make_labels(
        grid("E1", range(0, 12)),
        events(("E1", hour(5), "rapid_response"), ("E1", hour(8), "rapid_response")),
        stays(("E1", hour(11))),
        outcome="rapid_response",
        horizon_hours=2,
    )
    assert labels["time"].max() == hour(4)
    assert labels["event_time"].unique().to_list() == [hour(5)]


def test_rows_after_the_event_can_be_kept_labelled_1():
    labels = make_labels(
        grid("E1", range(0, 8)),
        events(("E1", hour(5), "sepsis")),
        stays(("E1", hour(7))),
        outcome="sepsis",
        horizon_hours=2,
        keep_after_event=True,
    )
    assert labels_by_hour(labels) == {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}


def test_label_is_0_when_discharged_without_the_event():
    labels = make_labels(grid("E1", range(0, 6)), NO_EVENTS, stays(("E1", hour(5))), horizon_hours=12)
    assert labels["label"].to_list() == [0] * 6
    assert labels["event_time"].null_count() == 6


def test_other_event_types_do_not_count():
    labels = make_labels(
        grid("E1", range(0, 4)),
        events(("E1", hour(2), "sepsis")),
        stays(("E1", hour(3))),
        outcome="death",
        horizon_hours=6,
    )
    assert labels["label"].to_list() == [0, 0, 0, 0]


def test_still_admitted_patient_is_censored_when_the_horizon_passes_as_of():
    as_of = hour(10)
    labels = make_labels(grid("E1", range(0, 11)), NO_EVENTS, stays(("E1", None)), horizon_hours=4, as_of=as_of)
    # Observed through t + 4 h only while t + 4 h <= 10 h.
    assert labels_by_hour(labels) == {h: (0 if h <= 6 else None) for h in range(0, 11)}


def test_still_admitted_patient_without_as_of_is_censored_throughout():
    labels = make_labels(grid("E1", range(0, 3)), NO_EVENTS, stays(("E1", None)), horizon_hours=4)
    assert labels["label"].to_list() == [None, None, None]


def test_an_event_beyond_the_horizon_gives_0_even_while_admitted():
    labels = make_labels(
        grid("E1", range(0, 3)), events(("E1", hour(20), "death")), stays(("E1", None)), outcome="death", horizon_hours=4
    )
    assert labels["label"].to_list() == [0, 0, 0]


def test_deterioration_is_the_first_of_icu_death_rapid_response_and_arrest():
    outcomes = events(
        ("E1", hour(6), "cardiac_arrest"),
        ("E1", hour(9), "icu_transfer"),
        ("E2", hour(3), "sepsis"),
        ("E3", hour(4), "rapid_response"),
    )
    labels = make_labels(
        pl.concat([grid("E1", range(0, 9)), grid("E2", range(0, 9)), grid("E3", range(0, 9))]),
        outcomes,
        stays(("E1", hour(9)), ("E2", hour(9)), ("E3", hour(9))),
        outcome="deterioration",
        horizon_hours=2,
    )
    by_encounter = {e: labels.filter(pl.col("encounter_id") == e) for e in ("E1", "E2", "E3")}
    assert labels_by_hour(by_encounter["E1"]) == {0: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1}
    assert by_encounter["E2"]["label"].to_list() == [0] * 9  # sepsis is not deterioration
    assert labels_by_hour(by_encounter["E3"]) == {0: 0, 1: 0, 2: 1, 3: 1}


def test_outcome_types_expand_the_composite():
    assert outcome_types("deterioration") == ["icu_transfer", "death", "rapid_response", "cardiac_arrest"]
    assert outcome_types("sepsis") == ["sepsis"]


def test_unknown_outcome_is_a_label_error_listing_the_choices():
    with pytest.raises(
        LabelError,
        match=r"^unknown outcome 'falls'; choose one of deterioration, icu_transfer, death, "
        r"rapid_response, cardiac_arrest, sepsis$",
    ):
        make_labels(grid("E1", range(0, 2)), NO_EVENTS, stays(("E1", None)), outcome="falls")


def test_horizon_must_be_positive():
    with pytest.raises(LabelError, match="horizon_hours must be positive, got 0"):
        make_labels(grid("E1", range(0, 2)), NO_EVENTS, stays(("E1", None)), horizon_hours=0)


def test_fractional_horizon():
    labels = make_labels(
        grid("E1", range(0, 3)),
        events(("E1", hour(2) + timedelta(minutes=30), "death")),
        stays(("E1", hour(3))),
        outcome="death",
        horizon_hours=0.5,
    )
    assert labels["label"].to_list() == [0, 0, 1]


def test_first_events_takes_the_earliest_of_each_encounter():
    first = first_events(
        events(("E1", hour(8), "death"), ("E1", hour(3), "icu_transfer"), ("E2", hour(1), "sepsis")),
        outcome="deterioration",
    ).collect()
    assert first.rows() == [("E1", hour(3))]


def test_every_grid_row_before_the_event_gets_exactly_one_label():
    labels = make_labels(
        grid("E1", range(0, 20)),
        events(("E1", hour(12), "death"), ("E1", hour(12), "icu_transfer")),
        stays(("E1", hour(19))),
        horizon_hours=6,
    )
    assert labels["time"].to_list() == [hour(h) for h in range(0, 12)]
    assert labels["label"].dtype == pl.Int8


def test_challenge_sepsis_label_is_1_from_six_hours_before_onset():
    labels = challenge_labels(
        pl.concat([grid("E1", range(0, 12)), grid("E2", range(0, 3))]),
        events(("E1", hour(9), "sepsis"), ("E2", hour(1), "death")),
    ).sort("encounter_id", "time")
    e1 = labels.filter(pl.col("encounter_id") == "E1")["sepsis_label"].to_list()
    assert e1 == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert labels.filter(pl.col("encounter_id") == "E2")["sepsis_label"].to_list() == [0, 0, 0]


def test_labels_keep_the_grid_order():
    shuffled = pl.concat([grid("E2", range(0, 30)), grid("E1", range(0, 30))]).sample(fraction=1.0, shuffle=True, seed=3)
    labels = make_labels(shuffled, events(("E1", hour(40), "death")), stays(("E1", None), ("E2", hour(29))), horizon_hours=2)
    assert labels.select("encounter_id", "time").rows() == shuffled.rows()
    challenge = challenge_labels(shuffled, NO_EVENTS)
    assert challenge.select("encounter_id", "time").rows() == shuffled.rows()
