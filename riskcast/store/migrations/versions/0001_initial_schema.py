"""Initial schema: runs, models, scores, drivers, quarantine, alerts, alert_events,
audits, users, job_runs, job_locks.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: this file describes the schema as first released. Change the schema with a new
migration, never by editing this one. Values and names are literal here on purpose (a
migration must not change when riskcast.store.tables does).
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = sa.DateTime(timezone=True)
# 64-bit ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for an autoincrementing rowid.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("scheduled_for", UTC, nullable=True),
        sa.Column("model_version", sa.String(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name=op.f("ck_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_kind_started_at"), "runs", ["kind", "started_at"])

    op.create_table(
        "models",
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("engine", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("is_champion", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("fairness", sa.JSON(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("promoted_at", UTC, nullable=True),
        sa.Column("promoted_by", sa.String(), nullable=True),
        sa.Column("promotion_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('champion', 'challenger', 'retired')", name=op.f("ck_models_status")),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_models")),
    )
    op.create_index(
        "uq_models_one_champion",
        "models",
        ["is_champion"],
        unique=True,
        sqlite_where=sa.text("is_champion"),
        postgresql_where=sa.text("is_champion"),
    )

    op.create_table(
        "scores",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("encounter_id", sa.String(), nullable=False),
        sa.Column("patient_id", sa.String(), nullable=False),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("site", sa.String(), nullable=True),
        sa.Column("scored_at", UTC, nullable=False),
        sa.Column("risk", sa.Float(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("missing", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.CheckConstraint("status IN ('scored', 'insufficient_data')", name=op.f("ck_scores_status")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_scores_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scores")),
        sa.UniqueConstraint(
            "model_version", "encounter_id", "scored_at", name=op.f("uq_scores_model_version_encounter_id_scored_at")
        ),
    )
    op.create_index(op.f("ix_scores_encounter_id_scored_at"), "scores", ["encounter_id", "scored_at"])
    op.create_index(op.f("ix_scores_ward_scored_at"), "scores", ["ward", "scored_at"])
    op.create_index(op.f("ix_scores_run_id"), "scores", ["run_id"])

    op.create_table(
        "drivers",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("score_id", BIG_ID, nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("variable", sa.String(), nullable=False),
        sa.Column("feature", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("contribution", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["score_id"], ["scores.id"], name=op.f("fk_drivers_score_id_scores"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drivers")),
    )
    op.create_index(op.f("ix_drivers_score_id"), "drivers", ["score_id"])

    op.create_table(
        "quarantine",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("table_name", sa.String(), nullable=False),
        sa.Column("source_file", sa.String(), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_index(op.f("ix_quarantine_batch_id"), "quarantine", ["batch_id"])
    op.create_index(op.f("ix_quarantine_rule"), "quarantine", ["rule"])

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("encounter_id", sa.String(), nullable=False),
        sa.Column("patient_id", sa.String(), nullable=False),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("raised_at", UTC, nullable=False),
        sa.Column("raised_for", UTC, nullable=False),
        sa.Column("risk", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(), nullable=True),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("snoozed_until", UTC, nullable=True),
        sa.Column("version_counter", sa.Integer(), nullable=False),
        sa.CheckConstraint("kind IN ('risk', 'stale_data', 'system')", name=op.f("ck_alerts_kind")),
        sa.CheckConstraint(
            "state IN ('new', 'acknowledged', 'snoozed', 'escalated', 'resolved')", name=op.f("ck_alerts_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("encounter_id", "kind", "raised_for", name=op.f("uq_alerts_encounter_id_kind_raised_for")),
    )
    op.create_index(op.f("ix_alerts_ward_state"), "alerts", ["ward", "state"])
    op.create_index(op.f("ix_alerts_state"), "alerts", ["state"])

    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("from_state", sa.String(), nullable=True),
        sa.Column("to_state", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "action IN ('raised', 'acknowledged', 'snoozed', 'escalated', 'resolved', 're_alerted', 'reopened')",
            name=op.f("ck_alert_events_action"),
        ),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_alert_events_alert_id_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    op.create_index(op.f("ix_alert_events_alert_id_at"), "alert_events", ["alert_id", "at"])

    op.create_table(
        "audits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("report_path", sa.String(), nullable=True),
        sa.CheckConstraint("verdict IN ('pass', 'warn', 'fail')", name=op.f("ck_audits_verdict")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audits")),
    )
    op.create_index(op.f("ix_audits_model_version"), "audits", ["model_version"])

    op.create_table(
        "users",
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("wards", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("role IN ('nurse', 'physician', 'data_scientist', 'admin')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )

    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("scheduled_for", UTC, nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint("job", "scheduled_for", name=op.f("uq_job_runs_job_scheduled_for")),
    )

    op.create_table(
        "job_locks",
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("acquired_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_job_locks")),
    )


def downgrade() -> None:
    for table in (
        "job_locks",
        "job_runs",
        "users",
        "audits",
        "alert_events",
        "alerts",
        "quarantine",
        "drivers",
        "scores",
        "models",
        "runs",
    ):
        op.drop_table(table)
