"""A thin helper API over the store's tables: runs, quarantine, scores.

Each function takes an Engine or a Connection first. With an Engine it opens its own
write transaction (committed on return); with a Connection it works inside the caller's
transaction, so several helpers can commit together. `now` is always passed in: the
store never reads the clock. Every time is UTC-aware.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, delete, exists, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from riskcast.errors import StoreError
from riskcast.processes import process_exists
from riskcast.store.binding import reading, writing
from riskcast.store.tables import drivers, models, quarantine, runs, score_revisions, scores

QUARANTINE_COLUMNS = ("table", "source_file", "source_line", "rule", "detail", "record")
SCORE_COLUMNS = ("encounter_id", "patient_id", "ward", "site", "scored_at", "risk", "status", "missing")
_REVISED_COLUMNS = ("run_id", "ward", "site", "risk", "status", "missing", "observations", "created_at")
"""What a score revised by late observations replaces; its key and patient stay."""
_IDS_PER_STATEMENT = 10_000
"""Bound parameters per IN list (SQLite allows 32,766 in one statement)."""
DRIVER_COLUMNS = ("encounter_id", "scored_at", "rank", "variable", "feature", "text", "contribution", "value")
FINISHED_RUN_STATUSES = ("succeeded", "failed")

UTC_DATETIME = pl.Datetime("us", "UTC")
LATEST_SCORES_SCHEMA: dict[str, pl.DataType] = {
    "score_id": pl.Int64(),
    "run_id": pl.Int64(),
    "model_version": pl.String(),
    "encounter_id": pl.String(),
    "patient_id": pl.String(),
    "ward": pl.String(),
    "site": pl.String(),
    "scored_at": UTC_DATETIME,
    "risk": pl.Float64(),
    "status": pl.String(),
    "missing": pl.String(),
    "created_at": UTC_DATETIME,
}


def _dialect_insert(connection: Connection, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the connection's backend."""
    name = connection.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise StoreError(f"the store supports SQLite and PostgreSQL, not {name!r}")


def _require_columns(frame: pl.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame lacks column(s) {missing}; expected {list(columns)}")


def _as_utc(frame: pl.DataFrame, column: str, name: str) -> pl.Expr:
    """`column` as Datetime('us', 'UTC'); naive or non-datetime columns are refused."""
    dtype = frame.schema[column]
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
        raise ValueError(f"{name}.{column} must be a time-zone-aware Datetime (UTC), got {dtype}")
    return pl.col(column).dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def start_run(
    bind: Engine | Connection,
    kind: str,
    *,
    details: dict[str, Any] | None = None,
    scheduled_for: datetime | None = None,
    model_version: str | None = None,
    now: datetime,
) -> int:
    """Record that a run of `kind` (ingest, score, train, ...) started at `now`; its id."""
    with writing(bind) as connection:
        result = connection.execute(
            insert(runs).values(
                kind=kind,
                started_at=now,
                status="running",
                scheduled_for=scheduled_for,
                model_version=model_version,
                details=details or {},
            )
        )
        return int(result.inserted_primary_key[0])


def finish_run(
    bind: Engine | Connection,
    run_id: int,
    *,
    status: str,
    details: dict[str, Any] | None = None,
    error: str | None = None,
    now: datetime,
) -> None:
    """Mark run `run_id` succeeded or failed at `now`; `details` are merged into the run's."""
    if status not in FINISHED_RUN_STATUSES:
        raise ValueError(f"finish_run status must be one of {list(FINISHED_RUN_STATUSES)}, got {status!r}")
    with writing(bind) as connection:
        current = connection.execute(select(runs.c.details).where(runs.c.id == run_id)).one_or_none()
        if current is None:
            raise StoreError(f"runs: no run with id {run_id}")
        merged = {**(current.details or {}), **(details or {})}
        connection.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(finished_at=now, status=status, details=merged, error=error)
        )


RUN_PRESUMED_DEAD_AFTER = timedelta(hours=6)
"""A run still "running" this long after it started is taken to have died, wherever it ran."""


def run_holder() -> dict[str, Any]:
    """Who runs this process's runs, for run details: host and pid (see fail_unfinished_runs)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _is_dead(details: dict[str, Any] | None, started_at: datetime, now: datetime) -> bool:
    """On this host the run's pid answers alone; for another (or an unknown) host, the age."""
    details = details or {}
    if details.get("host") == socket.gethostname() and isinstance(details.get("pid"), int):
        if details["pid"] == os.getpid():
            return False
        return not process_exists(details["pid"])
    return started_at < now - RUN_PRESUMED_DEAD_AFTER


def fail_unfinished_runs(
    bind: Engine | Connection,
    kind: str,
    *,
    scheduled_for: datetime,
    model_version: str | None,
    now: datetime,
    error: str,
    except_id: int | None = None,
) -> int:
    """Mark runs of `kind` for `scheduled_for` (and `model_version`) left "running" by a
    process that is gone (same host, its pid no longer exists; or started more than
    RUN_PRESUMED_DEAD_AFTER ago) as failed with `error`. A live run is left alone. Returns how
    many were marked."""
    with writing(bind) as connection:
        candidates = connection.execute(
            select(runs.c.id, runs.c.details, runs.c.started_at).where(
                runs.c.kind == kind,
                runs.c.status == "running",
                runs.c.scheduled_for == scheduled_for,
                runs.c.model_version == model_version if model_version is not None else runs.c.model_version.is_(None),
                runs.c.id != (except_id if except_id is not None else -1),
            )
        ).all()
        dead = [row.id for row in candidates if _is_dead(row.details, row.started_at, now)]
        if dead:
            connection.execute(
                update(runs).where(runs.c.id.in_(dead), runs.c.status == "running")
                .values(status="failed", finished_at=now, error=error)
            )  # fmt: skip
        return len(dead)


def write_quarantine(bind: Engine | Connection, batch_id: str, frame: pl.DataFrame, *, now: datetime) -> int:
    """Store the quarantined rows of ingest batch `batch_id`; the number of rows written.

    `frame` has the columns of riskcast.contracts' quarantine frame: table, source_file,
    source_line, rule, detail, record. Idempotent per batch: when any row of `batch_id`
    is already stored, nothing is written and 0 is returned (concurrent writers of the
    same batch are serialised by the write lock on SQLite, an advisory lock on PostgreSQL).
    """
    _require_columns(frame, QUARANTINE_COLUMNS, "quarantine")
    if frame.height == 0:
        return 0
    rows = (
        frame.select(
            pl.lit(batch_id).alias("batch_id"),
            pl.col("table").cast(pl.String).alias("table_name"),
            pl.col("source_file").cast(pl.String),
            pl.col("source_line").cast(pl.Int64),
            pl.col("rule").cast(pl.String),
            pl.col("detail").cast(pl.String),
            pl.col("record").cast(pl.String),
        )
        .with_columns(created_at=pl.lit(now, dtype=UTC_DATETIME))
        .to_dicts()
    )
    with writing(bind) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"riskcast.quarantine:{batch_id}"}
            )
        already = connection.execute(select(exists().where(quarantine.c.batch_id == batch_id))).scalar()
        if already:
            return 0
        connection.execute(insert(quarantine), rows)
    return len(rows)


QUARANTINE_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "table_name": pl.String(),
    "rule": pl.String(),
    "rows": pl.Int64(),
    "batches": pl.Int64(),
    "last_at": UTC_DATETIME,
}


def quarantine_summary(bind: Engine | Connection) -> pl.DataFrame:
    """The store's quarantined input rows counted per table and rule, with how many batches
    they came in and the latest (columns QUARANTINE_SUMMARY_SCHEMA), most rows first: beside
    write_quarantine, its one writer, the one reader of the quarantine copy."""
    query = (
        select(
            quarantine.c.table_name,
            quarantine.c.rule,
            func.count().label("rows"),
            func.count(func.distinct(quarantine.c.batch_id)).label("batches"),
            func.max(quarantine.c.created_at).label("last_at"),
        )
        .group_by(quarantine.c.table_name, quarantine.c.rule)
        .order_by(func.count().desc(), quarantine.c.table_name, quarantine.c.rule)
    )
    with reading(bind) as connection:
        rows = connection.execute(query).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=QUARANTINE_SUMMARY_SCHEMA, orient="row")


def write_scores(
    bind: Engine | Connection,
    run_id: int,
    model_version: str,
    scores_frame: pl.DataFrame,
    drivers_frame: pl.DataFrame,
    *,
    now: datetime,
) -> int:
    """Store one run's scores and their drivers; the number of scores written (new or revised).

    `scores_frame`: encounter_id, patient_id, ward, site, scored_at (UTC, the hour the score
    describes), risk (null or NaN when insufficient data), status, missing, and optionally
    observations (how many observations charted at or before the hour the score saw; 0
    when absent or null).
    `drivers_frame`: encounter_id, scored_at, rank, variable, feature, text, contribution,
    value; each row attaches to the score with the same (encounter_id, scored_at).

    A score whose (model_version, encounter_id, scored_at) is already stored is skipped,
    with its drivers, unless it saw more observations than the stored one (late data for
    the hour arrived): then the stored score is copied to score_revisions, and it and its
    drivers are replaced by this one (INSERT ... ON CONFLICT DO UPDATE WHERE more
    observations). Rescoring an hour with the same data therefore writes nothing; a scorer
    that read the lake earlier never overwrites a later one. A transfer shows from the next
    hour's score (a ward alone does not say which read is newer). On PostgreSQL, writers of
    one model version take turns (a transaction-level advisory lock), so a revision always
    finds the row it replaces. Everything is written in one transaction.
    """
    _require_columns(scores_frame, SCORE_COLUMNS, "scores")
    _require_columns(drivers_frame, DRIVER_COLUMNS, "drivers")
    if scores_frame.height == 0:
        return 0
    score_rows_frame = scores_frame.select(
        pl.col("encounter_id").cast(pl.String),
        pl.col("patient_id").cast(pl.String),
        pl.col("ward").cast(pl.String),
        pl.col("site").cast(pl.String),
        _as_utc(scores_frame, "scored_at", "scores"),
        pl.col("risk").cast(pl.Float64).fill_nan(None),
        pl.col("status").cast(pl.String),
        pl.col("missing").cast(pl.String),
        (pl.col("observations") if "observations" in scores_frame.columns else pl.lit(0))
        .cast(pl.Int64)
        .fill_null(0)
        .alias("observations"),
    )
    duplicates = score_rows_frame.height - score_rows_frame.select("encounter_id", "scored_at").n_unique()
    if duplicates:
        raise ValueError(f"scores frame has {duplicates} repeated (encounter_id, scored_at) row(s)")
    driver_rows_frame = drivers_frame.select(
        pl.col("encounter_id").cast(pl.String),
        _as_utc(drivers_frame, "scored_at", "drivers"),
        pl.col("rank").cast(pl.Int64),
        pl.col("variable").cast(pl.String),
        pl.col("feature").cast(pl.String),
        pl.col("text").cast(pl.String),
        pl.col("contribution").cast(pl.Float64),
        pl.col("value").cast(pl.Float64).fill_nan(None),
    )
    orphans = driver_rows_frame.join(score_rows_frame, on=["encounter_id", "scored_at"], how="anti").height
    if orphans:
        raise ValueError(f"drivers frame has {orphans} row(s) whose (encounter_id, scored_at) is not in the scores frame")

    # Rows in key order: two scorers of the same hour lock the same rows in the same order
    # (PostgreSQL locks every conflicting row of an upsert), so they cannot deadlock.
    score_rows = score_rows_frame.sort("encounter_id", "scored_at").with_columns(
        run_id=pl.lit(run_id, dtype=pl.Int64),
        model_version=pl.lit(model_version),
        created_at=pl.lit(now, dtype=UTC_DATETIME),
    ).to_dicts()
    with writing(bind) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                               {"key": f"riskcast:scores:{model_version}"})
        _keep_revised(connection, model_version, score_rows_frame, now=now)
        statement = _dialect_insert(connection, scores)
        statement = statement.on_conflict_do_update(
            index_elements=["model_version", "encounter_id", "scored_at"],
            set_={name: statement.excluded[name] for name in _REVISED_COLUMNS},
            where=statement.excluded.observations > scores.c.observations,
        ).returning(scores.c.id, scores.c.encounter_id, scores.c.scored_at)
        written = connection.execute(statement, score_rows).all()
        if not written:
            return 0
        # A revised score's old drivers go; inserted scores have none yet.
        ids = [row[0] for row in written]
        for start in range(0, len(ids), _IDS_PER_STATEMENT):
            connection.execute(delete(drivers).where(drivers.c.score_id.in_(ids[start : start + _IDS_PER_STATEMENT])))
        new_ids = pl.DataFrame(
            [tuple(row) for row in written],
            schema={"score_id": pl.Int64(), "encounter_id": pl.String(), "scored_at": UTC_DATETIME},
            orient="row",
        )
        driver_rows = (
            driver_rows_frame.join(new_ids, on=["encounter_id", "scored_at"], how="inner")
            .drop("encounter_id", "scored_at")
            .to_dicts()
        )
        if driver_rows:
            connection.execute(insert(drivers), driver_rows)
    return len(written)


_STORED_SCORE_SCHEMA = {
    "score_id": pl.Int64(), "encounter_id": pl.String(), "scored_at": UTC_DATETIME, "run_id": pl.Int64(),
    "ward": pl.String(), "risk": pl.Float64(), "status": pl.String(), "missing": pl.String(),
    "observations": pl.Int64(), "created_at": UTC_DATETIME,
}  # fmt: skip


def _keep_revised(connection: Connection, model_version: str, frame: pl.DataFrame, *, now: datetime) -> int:
    """Copy the stored scores that `frame` is about to revise (see write_scores), with their
    drivers, into score_revisions: what staff saw stays on record. Returns how many were kept."""
    hours = frame["scored_at"].unique().to_list()
    encounter_ids = frame["encounter_id"].unique().sort().to_list()
    stored: list[tuple[Any, ...]] = []
    for start in range(0, len(encounter_ids), _IDS_PER_STATEMENT):
        query = select(
            scores.c.id, scores.c.encounter_id, scores.c.scored_at, scores.c.run_id, scores.c.ward, scores.c.risk,
            scores.c.status, scores.c.missing, scores.c.observations, scores.c.created_at,
        ).where(
            scores.c.model_version == model_version,
            scores.c.encounter_id.in_(encounter_ids[start : start + _IDS_PER_STATEMENT]),
            scores.c.scored_at.in_(hours),
        )  # fmt: skip
        stored.extend(tuple(row) for row in connection.execute(query).all())
    if not stored:
        return 0
    existing = pl.DataFrame(stored, schema=_STORED_SCORE_SCHEMA, orient="row")
    incoming = frame.select("encounter_id", "scored_at", pl.col("observations").alias("new_observations"))
    revised = existing.join(incoming, on=["encounter_id", "scored_at"], how="inner").filter(
        pl.col("new_observations") > pl.col("observations")  # the upsert's WHERE
    )
    if revised.height == 0:
        return 0
    ids = revised["score_id"].to_list()
    kept_drivers: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        rows = connection.execute(
            select(drivers.c.score_id, drivers.c.rank, drivers.c.variable, drivers.c.text, drivers.c.contribution)
            .where(drivers.c.score_id.in_(ids[start : start + _IDS_PER_STATEMENT]))
            .order_by(drivers.c.score_id, drivers.c.rank)
        ).all()
        for row in rows:
            kept_drivers.setdefault(row.score_id, []).append(
                {"rank": row.rank, "variable": row.variable, "text": row.text, "contribution": row.contribution}
            )
    connection.execute(insert(score_revisions), [
        {"score_id": r["score_id"], "run_id": r["run_id"], "ward": r["ward"], "risk": r["risk"], "status": r["status"],
         "missing": r["missing"], "observations": r["observations"], "created_at": r["created_at"], "revised_at": now,
         "drivers": kept_drivers.get(r["score_id"], [])}
        for r in revised.iter_rows(named=True)
    ])  # fmt: skip
    return revised.height


def latest_scored_hour(bind: Engine | Connection, *, model_version: str) -> datetime | None:
    """The latest hour (UTC) `model_version` scored; None before its first score. The scorer
    scores every encounter admitted at an hour, so the encounters scored at this one are the
    admitted ones (riskcast.admission)."""
    with reading(bind) as connection:
        return connection.execute(
            select(func.max(scores.c.scored_at)).where(scores.c.model_version == model_version)
        ).scalar_one_or_none()


def scores_at_hour(
    bind: Engine | Connection,
    *,
    model_version: str,
    scored_at: datetime,
    wards: Collection[str] | None = None,
) -> pl.DataFrame:
    """The scores `model_version` gave for hour `scored_at`, one row per encounter (columns:
    LATEST_SCORES_SCHEMA), of encounters scored on `wards` when given; sorted by ward, then
    encounter_id. With latest_scored_hour: who is admitted, and how they are doing."""
    query = select(scores.c.id.label("score_id"), *[scores.c[name] for name in LATEST_SCORES_SCHEMA if name != "score_id"])
    query = query.where(scores.c.model_version == model_version, scores.c.scored_at == scored_at)
    if wards is not None:
        query = query.where(scores.c.ward.in_(sorted(wards)))
    with reading(bind) as connection:
        rows = connection.execute(query.order_by(scores.c.ward, scores.c.encounter_id)).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=LATEST_SCORES_SCHEMA, orient="row")


def encounter_scores(
    bind: Engine | Connection,
    encounter_id: str,
    *,
    model_version: str,
    since: datetime | None = None,
    newest: int | None = None,
) -> pl.DataFrame:
    """The scores `model_version` gave encounter `encounter_id` (columns LATEST_SCORES_SCHEMA),
    oldest first: hours scored at or after `since` when given; only the `newest` latest ones
    when given (the patient page's header needs the last two, its chart every one)."""
    if newest is not None and newest < 0:
        raise ValueError(f"encounter_scores: newest must be >= 0, got {newest}")
    query = select(scores.c.id.label("score_id"), *[scores.c[name] for name in LATEST_SCORES_SCHEMA if name != "score_id"])
    query = query.where(scores.c.model_version == model_version, scores.c.encounter_id == encounter_id)
    if since is not None:
        query = query.where(scores.c.scored_at >= since)
    if newest is not None:
        query = query.order_by(scores.c.scored_at.desc(), scores.c.id.desc()).limit(newest)
    else:
        query = query.order_by(scores.c.scored_at, scores.c.id)
    with reading(bind) as connection:
        rows = connection.execute(query).all()
    if newest is not None:
        rows = rows[::-1]
    return pl.DataFrame([tuple(row) for row in rows], schema=LATEST_SCORES_SCHEMA, orient="row")


def latest_scores(
    bind: Engine | Connection,
    *,
    ward: str | None = None,
    at: datetime | None = None,
    model_version: str | None = None,
) -> pl.DataFrame:
    """The latest score per encounter, one row each (columns: LATEST_SCORES_SCHEMA).

    Scores of `model_version`; when None, of the champion model, or of any model version
    when no champion is registered (then the most recently written score of the latest
    hour wins). `at` keeps scores describing hours at or before `at` (UTC). `ward` keeps
    encounters whose latest score was on that ward (a patient who moved away drops out).
    Sorted by ward, then encounter_id.
    """
    with reading(bind) as connection:
        if model_version is None:
            model_version = connection.execute(
                select(models.c.version).where(models.c.is_champion.is_(True))
            ).scalar_one_or_none()
        position = (
            func.row_number()
            .over(partition_by=scores.c.encounter_id, order_by=(scores.c.scored_at.desc(), scores.c.id.desc()))
            .label("position")
        )
        ranked = select(scores.c.id.label("score_id"), *[c for c in scores.c if c.name != "id"], position)
        if model_version is not None:
            ranked = ranked.where(scores.c.model_version == model_version)
        if at is not None:
            ranked = ranked.where(scores.c.scored_at <= at)
        latest = ranked.subquery()
        query = select(*[latest.c[name] for name in LATEST_SCORES_SCHEMA]).where(latest.c.position == 1)
        if ward is not None:
            query = query.where(latest.c.ward == ward)
        rows = connection.execute(query.order_by(latest.c.ward, latest.c.encounter_id)).all()
    return pl.DataFrame([tuple(row) for row in rows], schema=LATEST_SCORES_SCHEMA, orient="row")
