"""riskcast.admission: who is in hospital at an hour, on small encounter tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from riskcast.admission import admitted_at
from riskcast.lake import LAKE_SCHEMAS

AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _encounters(stays: dict[str, tuple[datetime, datetime | None]]) -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "encounter_id": list(stays),
            "patient_id": [f"P-{name}" for name in stays],
            "admit_time": [admit for admit, _ in stays.values()],
            "discharge_time": [discharge for _, discharge in stays.values()],
            "ward": ["ward-1"] * len(stays),
            "site": ["north"] * len(stays),
        },
        schema=LAKE_SCHEMAS["encounters"],
    ).lazy()


def _admitted(stays: dict[str, tuple[datetime, datetime | None]]) -> list[str]:
    return sorted(admitted_at(_encounters(stays), at=AT).collect()["encounter_id"])


def test_an_encounter_not_yet_discharged_is_admitted() -> None:
    assert _admitted({"open": (AT - 5 * HOUR, None)}) == ["open"]


def test_an_encounter_discharged_later_is_still_admitted_now() -> None:
    assert _admitted({"later": (AT - 5 * HOUR, AT + HOUR)}) == ["later"]


def test_a_patient_discharged_exactly_at_the_hour_has_left() -> None:
    assert _admitted({"left": (AT - 5 * HOUR, AT), "gone": (AT - 5 * HOUR, AT - HOUR)}) == []


def test_an_admission_at_the_hour_counts_and_a_later_one_does_not() -> None:
    assert _admitted({"now": (AT, None), "future": (AT + HOUR, None)}) == ["now"]
