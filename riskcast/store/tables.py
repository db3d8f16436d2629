"""The store's tables, as SQLAlchemy 2 typed declarative classes.

Every time column is `UTCDateTime` (timezone-aware UTC in Python, `timestamptz` on
PostgreSQL). Closed vocabularies (statuses, states, roles) are enforced by CHECK
constraints built from the tuples below, so a typo in code fails at the database, not in
a report a week later. Constraint and index names follow `NAMING_CONVENTION` so that
migrations name them the same way on every backend.

The schema is created and changed only by the Alembic migrations in
`riskcast/store/migrations/versions`; a test checks that the migrated schema matches
these classes. After editing this file, add a migration.

Use the classes with the ORM (the alert state machine does, for optimistic locking on
`alerts.version_counter`) or their tables with Core (`Score.__table__`, or the
module-level aliases such as `scores`) for bulk work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from riskcast.score_status import ScoreStatus
from riskcast.store.types import BigId, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("running", "succeeded", "failed")
MODEL_STATUSES = ("champion", "challenger", "retired")
SCORE_STATUSES = tuple(status.value for status in ScoreStatus)
ALERT_KINDS = ("risk", "stale_data", "system")
ALERT_STATES = ("new", "acknowledged", "snoozed", "escalated", "resolved")
ALERT_ACTIONS = ("raised", "acknowledged", "snoozed", "escalated", "resolved", "re_alerted", "reopened", "moved")
AUDIT_VERDICTS = ("pass", "warn", "fail")
USER_ROLES = ("nurse", "physician", "data_scientist", "admin")
AUTH_EVENTS = ("signed_in", "sign_in_failed", "sign_in_throttled", "signed_out", "sessions_revoked")
PERFORMANCE_STATUSES = ("measured", "no_events_yet", "outcomes_pending", "no_non_events")


def _one_of(column: str, values: tuple[str, ...], *, nullable: bool = False) -> CheckConstraint:
    """CHECK that `column` holds one of `values`; named `ck_<table>_<column>`."""
    allowed = ", ".join(f"'{v}'" for v in values)
    condition = f"{column} IN ({allowed})"
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return CheckConstraint(condition, name=column)


class Base(DeclarativeBase):
    """Declarative base; `Base.metadata` is the schema migrations are compared against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        str: String(),
        float: Float(),
    }


class Run(Base):
    """One execution of a pipeline step (ingest, score, train, evaluate, audit, a job)."""

    __tablename__ = "runs"
    __table_args__ = (
        _one_of("status", RUN_STATUSES),
        Index(None, "kind", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str]
    scheduled_for: Mapped[datetime | None]
    model_version: Mapped[str | None]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class ModelRecord(Base):
    """A trained model version in the registry; at most one row has is_champion true."""

    __tablename__ = "models"
    __table_args__ = (
        _one_of("status", MODEL_STATUSES),
        # At most one champion, enforced by the database. Promotion must clear the old
        # champion before setting the new one (two statements, one transaction).
        Index(
            "uq_models_one_champion",
            "is_champion",
            unique=True,
            sqlite_where=text("is_champion"),
            postgresql_where=text("is_champion"),
        ),
    )

    version: Mapped[str] = mapped_column(String, primary_key=True)
    engine: Mapped[str]
    device: Mapped[str]
    created_at: Mapped[datetime]
    is_champion: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str]
    path: Mapped[str]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fairness: Mapped[dict[str, Any] | None]
    threshold: Mapped[float]
    promoted_at: Mapped[datetime | None]
    promoted_by: Mapped[str | None]
    promotion_reason: Mapped[str | None] = mapped_column(Text)


class Score(Base):
    """The risk one model version gave one encounter for one clock hour.

    `scored_at` is the hour t the score describes (features use data charted at or before
    t), not the wall-clock time of the run; that is `created_at`. One row per model
    version, encounter and hour (UNIQUE): scoring the hour again with the same data writes
    nothing, and scoring it again after late observations arrived (`observations`, the
    number charted at or before t, grew) revises the row in place, with the revising run's
    `run_id` and `created_at`. `risk` is null when `status` is ScoreStatus.INSUFFICIENT_DATA;
    `missing` then names the essential vitals that were stale or absent.
    """

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("model_version", "encounter_id", "scored_at"),
        _one_of("status", SCORE_STATUSES),
        Index(None, "encounter_id", "scored_at"),
        Index(None, "ward", "scored_at"),
        Index(None, "run_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    model_version: Mapped[str]
    encounter_id: Mapped[str]
    patient_id: Mapped[str]
    ward: Mapped[str | None]
    site: Mapped[str | None]
    scored_at: Mapped[datetime]
    risk: Mapped[float | None]
    status: Mapped[str]
    missing: Mapped[str | None] = mapped_column(Text)
    observations: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime]


class DriverRecord(Base):
    """One of a score's top contributions (SHAP), in the words shown to staff."""

    __tablename__ = "drivers"
    __table_args__ = (Index(None, "score_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    score_id: Mapped[int] = mapped_column(BigId, ForeignKey("scores.id", ondelete="CASCADE"))
    rank: Mapped[int]
    variable: Mapped[str]
    feature: Mapped[str]
    text: Mapped[str] = mapped_column(Text)
    contribution: Mapped[float]
    value: Mapped[float | None]


class ScoreRevision(Base):
    """A score as it stood before late observations (or a transfer) revised it in place: what
    staff saw then, kept for audit. `drivers` are its top drivers then (rank, variable, text,
    contribution), `revised_at` when the revision replaced it."""

    __tablename__ = "score_revisions"
    __table_args__ = (Index(None, "score_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    score_id: Mapped[int] = mapped_column(BigId, ForeignKey("scores.id", ondelete="CASCADE"))
    run_id: Mapped[int]
    ward: Mapped[str | None]
    risk: Mapped[float | None]
    status: Mapped[str]
    missing: Mapped[str | None] = mapped_column(Text)
    observations: Mapped[int]
    created_at: Mapped[datetime]
    revised_at: Mapped[datetime]
    drivers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class QuarantineRow(Base):
    """An input row held back by a contract rule, with the rule, detail and raw record."""

    __tablename__ = "quarantine"
    __table_args__ = (Index(None, "batch_id"), Index(None, "rule"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[str]
    table_name: Mapped[str]
    source_file: Mapped[str | None]
    source_line: Mapped[int | None]
    rule: Mapped[str]
    detail: Mapped[str | None] = mapped_column(Text)
    record: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class Alert(Base):
    """An alert on one encounter; its state changes through the alert state machine only.

    `raised_for` is the scored hour that raised it; UNIQUE(encounter_id, kind, raised_for)
    makes rescoring idempotent. `version_counter` is SQLAlchemy's version_id_col: an ORM
    update of a row someone else changed since it was read raises StaleDataError.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("encounter_id", "kind", "raised_for"),
        _one_of("kind", ALERT_KINDS),
        _one_of("state", ALERT_STATES),
        Index(None, "ward", "state"),
        Index(None, "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    encounter_id: Mapped[str]
    patient_id: Mapped[str]
    ward: Mapped[str | None]
    kind: Mapped[str]
    state: Mapped[str]
    raised_at: Mapped[datetime]
    raised_for: Mapped[datetime]
    risk: Mapped[float | None]
    model_version: Mapped[str | None]
    episode: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime]
    snoozed_until: Mapped[datetime | None]
    version_counter: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version_counter}


class AlertEvent(Base):
    """One transition of an alert: who did what, when, and why (and, from the command line,
    from which operating-system account).

    Append-only: code inserts rows and never updates or deletes them (the audit trail).
    `from_state` is null for the event that raised the alert.
    """

    __tablename__ = "alert_events"
    __table_args__ = (
        _one_of("action", ALERT_ACTIONS),
        Index(None, "alert_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    at: Mapped[datetime]
    actor: Mapped[str]
    role: Mapped[str | None]
    action: Mapped[str]
    from_state: Mapped[str | None]
    to_state: Mapped[str]
    reason: Mapped[str | None] = mapped_column(Text)
    os_user: Mapped[str | None]
    """The operating-system account that ran the `riskcast` command; null on the dashboard."""


class Audit(Base):
    """A fairness audit of one model version and its verdict."""

    __tablename__ = "audits"
    __table_args__ = (
        _one_of("verdict", AUDIT_VERDICTS),
        Index(None, "model_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version: Mapped[str]
    run_id: Mapped[int | None]
    created_at: Mapped[datetime]
    verdict: Mapped[str]
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_path: Mapped[str | None]


class WeeklyPerformance(Base):
    """AUROC and AUPRC of the scores one model version gave in one calendar week (Monday 00:00
    UTC), against the outcomes known when the nightly job computed them (`computed_at`), with
    patient-bootstrap intervals: what the Model page shows, so that it does not bootstrap on
    every click. One row per version and week; each nightly computation replaces the version's
    rows. The metrics are null unless `status` is "measured" (riskcast.read_models.model_report
    says what each status means).
    """

    __tablename__ = "weekly_performance"
    __table_args__ = (
        UniqueConstraint("model_version", "week_start"),
        _one_of("status", PERFORMANCE_STATUSES),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_version: Mapped[str]
    week_start: Mapped[datetime]
    computed_at: Mapped[datetime]
    n_scored: Mapped[int]
    n_insufficient: Mapped[int]
    n_labelled: Mapped[int]
    n_pending: Mapped[int]
    n_positive: Mapped[int]
    n_patients: Mapped[int]
    auroc: Mapped[float | None]
    auroc_low: Mapped[float | None]
    auroc_high: Mapped[float | None]
    auprc: Mapped[float | None]
    auprc_low: Mapped[float | None]
    auprc_high: Mapped[float | None]
    status: Mapped[str]


class User(Base):
    """A dashboard user; `wards` lists the wards they may see (JSON list of names)."""

    __tablename__ = "users"
    __table_args__ = (_one_of("role", USER_ROLES),)

    username: Mapped[str] = mapped_column(String, primary_key=True)
    password_hash: Mapped[str]
    role: Mapped[str]
    wards: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class DashboardSession(Base):
    """A signed-in browser. Its cookie holds a random token; the store keeps only the token's
    SHA-256 (`id`), so reading this table signs nobody in. A session ends at `expires_at`,
    when `last_active_at` is older than the idle timeout, or when `revoked_at` is set (sign-out,
    a password change, the user disabled)."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (Index(None, "username"), Index(None, "expires_at"))

    id: Mapped[str] = mapped_column(String, primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    last_active_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    address: Mapped[str | None]


class AuthEvent(Base):
    """One sign-in event: who (the name typed, when it is a valid user name), from which
    address, what happened. Append-only, like alert_events; sign-in throttling counts the
    failures here."""

    __tablename__ = "auth_events"
    __table_args__ = (
        _one_of("event", AUTH_EVENTS),
        Index(None, "username", "at"),
        Index(None, "address", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime]
    event: Mapped[str]
    username: Mapped[str | None]
    address: Mapped[str | None]
    detail: Mapped[str | None] = mapped_column(Text)


class JobRun(Base):
    """One scheduled firing of a job; UNIQUE(job, scheduled_for) stops double runs."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "scheduled_for"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str]
    scheduled_for: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str]
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class JobLock(Base):
    """A lease on a job: `holder` may run it until `expires_at`."""

    __tablename__ = "job_locks"

    job: Mapped[str] = mapped_column(String, primary_key=True)
    holder: Mapped[str]
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


metadata: MetaData = Base.metadata

runs: Table = Run.__table__  # type: ignore[assignment]
models: Table = ModelRecord.__table__  # type: ignore[assignment]
scores: Table = Score.__table__  # type: ignore[assignment]
drivers: Table = DriverRecord.__table__  # type: ignore[assignment]
score_revisions: Table = ScoreRevision.__table__  # type: ignore[assignment]
quarantine: Table = QuarantineRow.__table__  # type: ignore[assignment]
alerts: Table = Alert.__table__  # type: ignore[assignment]
alert_events: Table = AlertEvent.__table__  # type: ignore[assignment]
audits: Table = Audit.__table__  # type: ignore[assignment]
weekly_performance: Table = WeeklyPerformance.__table__  # type: ignore[assignment]
users: Table = User.__table__  # type: ignore[assignment]
dashboard_sessions: Table = DashboardSession.__table__  # type: ignore[assignment]
auth_events: Table = AuthEvent.__table__  # type: ignore[assignment]
job_runs: Table = JobRun.__table__  # type: ignore[assignment]
job_locks: Table = JobLock.__table__  # type: ignore[assignment]
