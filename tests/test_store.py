"""The store: migrations, idempotent writes, database-enforced uniqueness, UTC times.

Every test that takes `db_url` runs on a SQLite file and, when a server answers at
127.0.0.1:5432/test (users postgres or root, trust auth; or RISKCAST_TEST_POSTGRES_URL),
on PostgreSQL in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, Table, create_engine, delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import NullPool

from riskcast.errors import StoreError
from riskcast.store import (
    connect,
    current_revision,
    encounter_scores,
    fail_unfinished_runs,
    finish_run,
    head_revision,
    latest_scored_hour,
    latest_scores,
    metadata,
    open_store,
    read_weekly_performance,
    replace_weekly_performance,
    scores_at_hour,
    session_factory,
    start_run,
    write_quarantine,
    write_scores,
    write_session,
)
from riskcast.store.records import LATEST_SCORES_SCHEMA
from riskcast.store.tables import Alert, alerts, drivers, models, quarantine, runs, score_revisions, scores

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
# --- frames ------------------------------------------------------------------------------


def hourly_scores(hours: list[datetime], *, encounters: tuple[str, ...] = ("E1", "E2"), ward: str = "W1") -> pl.DataFrame:
    """One scored row per encounter per hour; risk grows with the hour so rows differ."""
    rows = [
        {
            "encounter_id": encounter,
            "patient_id": f"P-{encounter}",
            "ward": ward,
            "site": "S1",
            "scored_at": hour,
            "risk": 0.1 + 0.01 * index,
            "status": "scored",
            "missing": None,
        }
        for index, hour in enumerate(hours)
        for encounter in encounters
    ]
    return pl.DataFrame(rows, schema_overrides={"scored_at": pl.Datetime("us", "UTC"), "missing": pl.String})


def two_drivers_each(scores_frame: pl.DataFrame) -> pl.DataFrame:
    """Rank 1 and 2 drivers for every score; the text names the encounter to check linkage."""
    return scores_frame.select("encounter_id", "scored_at").join(pl.DataFrame({"rank": [1, 2]}), how="cross").with_columns(
        variable=pl.lit("heart_rate"),
        feature=pl.lit("heart_rate_last"),
        text=pl.format("heart rate high ({})", pl.col("encounter_id")),
        contribution=pl.lit(0.3),
        value=pl.lit(128.0),
    )


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def add_model(engine: Engine, version: str, *, champion: bool) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(models).values(
                version=version,
                engine="xgboost",
                device="cpu",
                created_at=NOW,
                is_champion=champion,
                status="champion" if champion else "challenger",
                path=f"models/{version}",
                metrics={"auroc": 0.8},
                threshold=0.3,
            )
        )


def raise_alert(connection: Connection, encounter_id: str, raised_for: datetime) -> None:
    connection.execute(
        insert(alerts).values(
            encounter_id=encounter_id,
            patient_id=f"P-{encounter_id}",
            ward="W1",
            kind="risk",
            state="new",
            raised_at=NOW,
            raised_for=raised_for,
            risk=0.6,
            model_version="v1",
            episode=1,
            updated_at=NOW,
        )
    )


# --- schema and migrations ---------------------------------------------------------------


def test_migrations_create_the_schema_and_it_matches_the_metadata(store: Engine) -> None:
    assert current_revision(store) == head_revision()
    assert set(inspect(store).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    with store.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_open_store_again_keeps_data_and_changes_nothing(db_url: str) -> None:
    first = open_store(db_url)
    run_id = start_run(first, "ingest", now=NOW)
    first.dispose()

    again = open_store(db_url)
    assert current_revision(again) == head_revision()
    assert count(again, runs) == 1
    with again.connect() as connection:
        assert connection.execute(select(runs.c.kind).where(runs.c.id == run_id)).scalar_one() == "ingest"
    again.dispose()


def test_two_callers_opening_a_fresh_store_at_once_both_succeed(db_url: str) -> None:
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def open_at_the_same_time() -> None:
        barrier.wait()
        try:
            engine = open_store(db_url)
            outcomes.append(current_revision(engine))
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes.append(exc)

    threads = [threading.Thread(target=open_at_the_same_time) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == [head_revision(), head_revision()]


def test_connect_creates_the_folder_of_a_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "does" / "not" / "exist" / "riskcast.db"
    engine = open_store(f"sqlite:///{database}")
    engine.dispose()
    assert database.exists()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'riskcast.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_unreachable_database_raises_store_error_naming_the_url() -> None:
    with pytest.raises(StoreError, match=r"cannot reach the database postgresql://nobody@127\.0\.0\.1:1/x.*RISKCAST_DB_URL"):
        connect("postgresql://nobody@127.0.0.1:1/x")


def test_password_is_masked_in_the_store_error() -> None:
    with pytest.raises(StoreError) as raised:
        connect("postgresql://nobody:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(raised.value)


def test_database_from_a_newer_riskcast_is_refused(db_url: str) -> None:
    engine = open_store(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"revision '9999_from_the_future', which this riskcast does not know"):
        open_store(db_url)


# --- runs ----------------------------------------------------------------------------------


def test_finish_run_records_status_time_and_merges_details(store: Engine) -> None:
    run_id = start_run(store, "score", details={"wards": 3}, model_version="v1", now=NOW)
    finish_run(store, run_id, status="failed", details={"scored": 0}, error="no champion", now=NOW + timedelta(minutes=2))
    with store.connect() as connection:
        run = connection.execute(select(runs).where(runs.c.id == run_id)).one()
    assert (run.status, run.error, run.details) == ("failed", "no champion", {"wards": 3, "scored": 0})
    assert run.finished_at - run.started_at == timedelta(minutes=2)


def test_a_new_run_of_the_same_work_marks_the_ones_a_dead_process_left_running_as_failed(store: Engine) -> None:
    hour = NOW.replace(minute=0)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_here = {"host": socket.gethostname(), "pid": int(gone.stdout)}
    alive_here = {"host": socket.gethostname(), "pid": os.getpid()}
    elsewhere = {"host": "another-host", "pid": 1}

    def started(details: dict, *, when: datetime = NOW, hours_back: int = 0, model: str = "v1") -> int:
        return start_run(store, "score", details=details, scheduled_for=hour - timedelta(hours=hours_back),
                         model_version=model, now=when)

    dead = started(dead_here)
    live = started(alive_here)
    live_long_running = started(alive_here, when=NOW - timedelta(hours=7))
    other_host = started(elsewhere)
    other_host_long_ago = started(elsewhere, when=NOW - timedelta(hours=7))
    other_hour = started(dead_here, hours_back=1)
    other_model = started(dead_here, model="v2")
    new = started(alive_here)
    marked = fail_unfinished_runs(store, "score", scheduled_for=hour, model_version="v1", now=NOW,
                                  error="stopped", except_id=new)
    with store.connect() as connection:
        status = dict(connection.execute(select(runs.c.id, runs.c.status)).all())
    assert marked == 2
    assert status == {dead: "failed", live: "running", live_long_running: "running", other_host: "running",
                      other_host_long_ago: "failed",
                      other_hour: "running", other_model: "running", new: "running"}


def test_finishing_an_unknown_run_names_its_id(store: Engine) -> None:
    with pytest.raises(StoreError, match="runs: no run with id 4242"):
        finish_run(store, 4242, status="succeeded", now=NOW)


# --- times ---------------------------------------------------------------------------------


def test_times_come_back_utc_aware_whatever_zone_they_were_written_in(store: Engine) -> None:
    local_noon = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    run_id = start_run(store, "ingest", now=local_noon)
    with store.connect() as connection:
        started_at = connection.execute(select(runs.c.started_at).where(runs.c.id == run_id)).scalar_one()
    assert started_at.utcoffset() == timedelta(0)
    assert started_at == NOW


def test_naive_times_are_refused(store: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        start_run(store, "ingest", now=datetime(2025, 3, 1, 12, 0))


# --- scores and drivers --------------------------------------------------------------------


def test_write_scores_twice_writes_nothing_new(store: Engine) -> None:
    frame = hourly_scores([NOW - timedelta(hours=1), NOW])
    run_id = start_run(store, "score", now=NOW)
    assert write_scores(store, run_id, "v1", frame, two_drivers_each(frame), now=NOW) == 4
    rerun_id = start_run(store, "score", now=NOW)
    assert write_scores(store, rerun_id, "v1", frame, two_drivers_each(frame), now=NOW) == 0
    assert (count(store, scores), count(store, drivers)) == (4, 8)


def test_a_new_hour_or_a_new_model_version_is_written_with_its_drivers(store: Engine) -> None:
    run_id = start_run(store, "score", now=NOW)
    first = hourly_scores([NOW - timedelta(hours=1)])
    write_scores(store, run_id, "v1", first, two_drivers_each(first), now=NOW)
    both_hours = hourly_scores([NOW - timedelta(hours=1), NOW])
    assert write_scores(store, run_id, "v1", both_hours, two_drivers_each(both_hours), now=NOW) == 2
    assert write_scores(store, run_id, "v2", both_hours, two_drivers_each(both_hours), now=NOW) == 4
    assert (count(store, scores), count(store, drivers)) == (8, 16)


def test_late_observations_revise_the_hours_score_and_its_drivers_in_place(store: Engine) -> None:
    frame = hourly_scores([NOW], encounters=("E1", "E2")).with_columns(observations=pl.lit(10))
    first_run = start_run(store, "score", now=NOW)
    write_scores(store, first_run, "v1", frame, two_drivers_each(frame), now=NOW)
    later = NOW + timedelta(minutes=20)
    # E1 got two late observations for the hour (riskier now); E2 nothing new.
    revised = frame.with_columns(
        observations=pl.when(pl.col("encounter_id") == "E1").then(12).otherwise(10),
        risk=pl.when(pl.col("encounter_id") == "E1").then(0.9).otherwise(pl.col("risk")),
    )
    new_drivers = two_drivers_each(revised).with_columns(text=pl.format("resp rate high ({})", pl.col("encounter_id")))
    second_run = start_run(store, "score", now=later)
    assert write_scores(store, second_run, "v1", revised, new_drivers, now=later) == 1
    with store.connect() as connection:
        rows = {r.encounter_id: r for r in connection.execute(select(scores)).all()}
        texts = connection.execute(
            select(scores.c.encounter_id, drivers.c.text).join(drivers, drivers.c.score_id == scores.c.id)
        ).all()
    assert (count(store, scores), count(store, drivers)) == (2, 4)
    assert (rows["E1"].risk, rows["E1"].observations, rows["E1"].run_id) == (0.9, 12, second_run)
    assert rows["E1"].created_at == later
    assert (rows["E2"].observations, rows["E2"].run_id) == (10, first_run)
    assert sorted(texts) == [("E1", "resp rate high (E1)")] * 2 + [("E2", "heart rate high (E2)")] * 2
    with store.connect() as connection:  # what staff saw before the revision stays on record
        kept = connection.execute(select(score_revisions)).all()
    assert len(kept) == 1 and kept[0].score_id == rows["E1"].id
    assert (kept[0].risk, kept[0].observations, kept[0].run_id, kept[0].created_at, kept[0].revised_at) == (
        0.1, 10, first_run, NOW, later)
    assert [d["text"] for d in kept[0].drivers] == ["heart rate high (E1)"] * 2
    # Fewer observations (a scorer that read the lake before the late batch) never wins.
    stale = revised.with_columns(observations=pl.col("observations") - 1, risk=pl.lit(0.01))
    assert write_scores(store, start_run(store, "score", now=later), "v1", stale, two_drivers_each(stale), now=later) == 0
    assert latest_scores(store, model_version="v1").sort("encounter_id")["risk"].to_list() == [0.9, 0.1]


def test_a_ward_alone_does_not_revise_the_hours_score(store: Engine) -> None:
    """With the same observations, a different ward may come from an older read of the
    encounters as well as a newer one: the first score of the hour stands."""
    frame = hourly_scores([NOW], encounters=("E1",)).with_columns(observations=pl.lit(10))
    write_scores(store, start_run(store, "score", now=NOW), "v1", frame, two_drivers_each(frame), now=NOW)
    moved = frame.with_columns(ward=pl.lit("W2"))
    assert write_scores(store, start_run(store, "score", now=NOW), "v1", moved, two_drivers_each(moved), now=NOW) == 0
    assert latest_scores(store, model_version="v1")["ward"].to_list() == ["W1"]
    assert (count(store, scores), count(store, drivers), count(store, score_revisions)) == (1, 2, 0)


def test_a_score_whose_observation_count_is_unknown_counts_zero(store: Engine) -> None:
    frame = hourly_scores([NOW], encounters=("E1", "E2")).with_columns(
        observations=pl.Series([None, 4], dtype=pl.Int64)
    )
    assert write_scores(store, start_run(store, "score", now=NOW), "v1", frame, two_drivers_each(frame), now=NOW) == 2
    with store.connect() as connection:
        assert dict(connection.execute(select(scores.c.encounter_id, scores.c.observations)).all()) == {"E1": 0, "E2": 4}


def test_each_driver_is_attached_to_the_score_of_its_encounter_and_hour(store: Engine) -> None:
    frame = hourly_scores([NOW - timedelta(hours=1), NOW], encounters=("E1", "E2", "E3"))
    write_scores(store, start_run(store, "score", now=NOW), "v1", frame, two_drivers_each(frame), now=NOW)
    with store.connect() as connection:
        pairs = connection.execute(
            select(scores.c.encounter_id, scores.c.scored_at, drivers.c.text, drivers.c.rank).join(
                drivers, drivers.c.score_id == scores.c.id
            )
        ).all()
    assert len(pairs) == 12
    assert all(driver_text == f"heart rate high ({encounter})" for encounter, _, driver_text, _ in pairs)
    assert sorted({(e, t) for e, t, _, _ in pairs}) == sorted(
        (e, h) for e in ("E1", "E2", "E3") for h in (NOW - timedelta(hours=1), NOW)
    )


def test_insufficient_data_scores_keep_a_null_risk_and_the_missing_vitals(store: Engine) -> None:
    frame = hourly_scores([NOW]).with_columns(
        risk=pl.lit(float("nan")), status=pl.lit("insufficient_data"), missing=pl.lit("resp_rate,spo2")
    )
    write_scores(store, start_run(store, "score", now=NOW), "v1", frame, two_drivers_each(frame).clear(), now=NOW)
    latest = latest_scores(store)
    assert latest["risk"].null_count() == 2
    assert latest["missing"].to_list() == ["resp_rate,spo2", "resp_rate,spo2"]


def test_deleting_a_score_deletes_its_drivers(store: Engine) -> None:
    frame = hourly_scores([NOW], encounters=("E1",))
    write_scores(store, start_run(store, "score", now=NOW), "v1", frame, two_drivers_each(frame), now=NOW)
    with store.begin() as connection:
        connection.execute(delete(scores))
    assert count(store, drivers) == 0


def test_latest_scores_gives_the_champions_latest_hour_per_encounter(store: Engine) -> None:
    add_model(store, "v1", champion=False)
    add_model(store, "v2", champion=True)
    run_id = start_run(store, "score", now=NOW)
    hours = [NOW - timedelta(hours=2), NOW - timedelta(hours=1)]
    for version in ("v1", "v2"):
        frame = hourly_scores(hours)
        write_scores(store, run_id, version, frame, two_drivers_each(frame), now=NOW)
    challenger_only = hourly_scores([NOW])
    write_scores(store, run_id, "v1", challenger_only, two_drivers_each(challenger_only), now=NOW)

    latest = latest_scores(store)
    assert latest.select("encounter_id", "model_version", "scored_at").rows() == [
        ("E1", "v2", NOW - timedelta(hours=1)),
        ("E2", "v2", NOW - timedelta(hours=1)),
    ]
    assert latest.schema["scored_at"] == pl.Datetime("us", "UTC")
    assert latest_scores(store, model_version="v1")["scored_at"].to_list() == [NOW, NOW]
    assert latest_scores(store, at=NOW - timedelta(hours=2))["scored_at"].to_list() == [NOW - timedelta(hours=2)] * 2
    assert latest_scores(store, ward="W9").height == 0


def test_a_patient_who_moved_ward_is_listed_only_on_the_new_ward(store: Engine) -> None:
    run_id = start_run(store, "score", now=NOW)
    on_w1 = hourly_scores([NOW - timedelta(hours=1)], encounters=("E1",), ward="W1")
    on_w2 = hourly_scores([NOW], encounters=("E1",), ward="W2")
    for frame in (on_w1, on_w2):
        write_scores(store, run_id, "v1", frame, two_drivers_each(frame), now=NOW)
    assert latest_scores(store, ward="W1").height == 0
    assert latest_scores(store, ward="W2")["encounter_id"].to_list() == ["E1"]


def test_repeated_encounter_hours_in_one_scores_frame_are_refused(store: Engine) -> None:
    frame = pl.concat([hourly_scores([NOW]), hourly_scores([NOW])])
    with pytest.raises(ValueError, match=r"2 repeated \(encounter_id, scored_at\)"):
        write_scores(store, start_run(store, "score", now=NOW), "v1", frame, two_drivers_each(frame).clear(), now=NOW)


# --- alerts and models ---------------------------------------------------------------------


def test_database_rejects_a_second_alert_for_the_same_encounter_kind_and_hour(store: Engine) -> None:
    with store.begin() as connection:
        raise_alert(connection, "E1", NOW)
    with pytest.raises(IntegrityError), store.begin() as connection:
        raise_alert(connection, "E1", NOW)
    with store.begin() as connection:
        raise_alert(connection, "E1", NOW + timedelta(hours=1))
    assert count(store, alerts) == 2


def test_concurrent_alert_updates_are_caught_by_the_version_counter(store: Engine) -> None:
    with store.begin() as connection:
        raise_alert(connection, "E1", NOW)
    make_session = session_factory(store)
    with make_session() as nurse:
        seen_by_nurse = nurse.scalars(select(Alert)).one()
        nurse.commit()  # the page is on screen; no transaction is held meanwhile
        with write_session(store) as physician:
            physician.scalars(select(Alert)).one().state = "escalated"
        seen_by_nurse.state = "acknowledged"
        with pytest.raises(StaleDataError):
            nurse.commit()
    with store.connect() as connection:
        assert connection.execute(select(alerts.c.state, alerts.c.version_counter)).one() == ("escalated", 2)


def test_only_one_model_can_be_champion(store: Engine) -> None:
    add_model(store, "v1", champion=True)
    with pytest.raises(IntegrityError, match="uq_models_one_champion|UNIQUE|unique"):
        add_model(store, "v2", champion=True)
    with store.begin() as connection:
        connection.execute(update(models).where(models.c.version == "v1").values(is_champion=False))
    add_model(store, "v2", champion=True)


# --- quarantine ----------------------------------------------------------------------------


def quarantined_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "table": ["observations", "observations", "encounters"],
            "source_file": ["obs.csv", "obs.csv", "enc.csv"],
            "source_line": [3, 9, 2],
            "rule": ["implausible_value", "unknown_unit", "missing_required"],
            "detail": ["temperature 70 Cel outside 25..45", "unit 'mmHg' not valid for temperature", "ward is empty"],
            "record": ['{"value":"70"}', '{"unit":"mmHg"}', '{"ward":null}'],
        }
    )


def test_write_quarantine_twice_for_the_same_batch_writes_nothing_new(store: Engine) -> None:
    assert write_quarantine(store, "batch-1", quarantined_rows(), now=NOW) == 3
    assert write_quarantine(store, "batch-1", quarantined_rows(), now=NOW) == 0
    assert write_quarantine(store, "batch-2", quarantined_rows().head(1), now=NOW) == 1
    with store.connect() as connection:
        by_batch = dict(
            connection.execute(select(quarantine.c.batch_id, func.count()).group_by(quarantine.c.batch_id)).all()
        )
    assert by_batch == {"batch-1": 3, "batch-2": 1}


def test_quarantine_rows_keep_their_table_line_rule_and_record(store: Engine) -> None:
    write_quarantine(store, "batch-1", quarantined_rows(), now=NOW)
    with store.connect() as connection:
        row = connection.execute(select(quarantine).where(quarantine.c.source_line == 9)).one()
    assert (row.table_name, row.source_file, row.rule, row.record) == (
        "observations",
        "obs.csv",
        "unknown_unit",
        '{"unit":"mmHg"}',
    )
    assert row.created_at == NOW


# --- weekly performance -------------------------------------------------------------------


def weeks_frame(*statuses: str) -> pl.DataFrame:
    """One week a status, from Monday 24 Feb 2025; a number only where it was measured."""
    measured = [status == "measured" for status in statuses]
    return pl.DataFrame(
        {
            "week_start": [NOW.replace(day=24, month=2, hour=0) + timedelta(weeks=i) for i in range(len(statuses))],
            **{name: [10 * (i + 1) for i in range(len(statuses))]
               for name in ("n_scored", "n_insufficient", "n_labelled", "n_pending", "n_positive", "n_patients")},
            **{name: [0.8 if m else None for m in measured]
               for name in ("auroc", "auroc_low", "auroc_high", "auprc", "auprc_low", "auprc_high")},
            "status": list(statuses),
        },
        schema_overrides={"week_start": pl.Datetime("us", "UTC")},
    )  # fmt: skip


def test_a_versions_weekly_performance_is_replaced_whole_and_read_back_oldest_first(store: Engine) -> None:
    assert replace_weekly_performance(store, "v1", weeks_frame("measured", "outcomes_pending"), computed_at=NOW) == 2
    replace_weekly_performance(store, "v2", weeks_frame("no_events_yet"), computed_at=NOW)
    later = NOW + timedelta(days=1)
    assert replace_weekly_performance(store, "v1", weeks_frame("measured"), computed_at=later) == 1
    v1 = read_weekly_performance(store, "v1")
    assert v1.select("status", "auroc", "computed_at").rows() == [("measured", 0.8, later)]
    assert read_weekly_performance(store, "v2")["status"].to_list() == ["no_events_yet"]  # another version untouched
    assert replace_weekly_performance(store, "v2", weeks_frame(), computed_at=later) == 0
    assert read_weekly_performance(store, "v2").height == 0


def test_a_weekly_performance_status_the_page_cannot_show_is_refused(store: Engine) -> None:
    with pytest.raises(ValueError, match=r"unknown status\(es\) \['great'\]"):
        replace_weekly_performance(store, "v1", weeks_frame("great"), computed_at=NOW)


def test_the_latest_scored_hour_and_its_scores_are_of_one_version_and_the_wards_asked(store: Engine) -> None:
    hours = [NOW - timedelta(hours=1), NOW]
    run_id = start_run(store, "score", now=NOW)
    write_scores(store, run_id, "v1", hourly_scores(hours), two_drivers_each(hourly_scores(hours)), now=NOW)
    w2 = hourly_scores(hours, encounters=("E3",), ward="W2")
    write_scores(store, run_id, "v1", w2, two_drivers_each(w2), now=NOW)
    assert latest_scored_hour(store, model_version="v1") == NOW
    assert latest_scored_hour(store, model_version="v2") is None
    everyone = scores_at_hour(store, model_version="v1", scored_at=NOW)
    assert everyone.select("ward", "encounter_id").rows() == [("W1", "E1"), ("W1", "E2"), ("W2", "E3")]
    assert set(everyone["scored_at"].to_list()) == {NOW} and everyone.columns == list(LATEST_SCORES_SCHEMA)
    assert scores_at_hour(store, model_version="v1", scored_at=NOW, wards=["W2"])["encounter_id"].to_list() == ["E3"]


def test_an_encounters_scores_are_oldest_first_and_newest_keeps_the_last_ones(store: Engine) -> None:
    hours = [NOW - timedelta(hours=2), NOW - timedelta(hours=1), NOW]
    run_id = start_run(store, "score", now=NOW)
    frame = hourly_scores(hours)
    write_scores(store, run_id, "v1", frame, two_drivers_each(frame), now=NOW)
    assert encounter_scores(store, "E1", model_version="v1")["scored_at"].to_list() == hours
    assert encounter_scores(store, "E1", model_version="v1", newest=2)["scored_at"].to_list() == hours[1:]
    assert encounter_scores(store, "E1", model_version="v1", since=hours[2])["scored_at"].to_list() == hours[2:]
    assert encounter_scores(store, "E1", model_version="v2").height == 0
