"""Scores record how many observations they saw, so a late-arriving observation can revise
the score of its hour, and score_revisions keeps each score as it stood before a revision;
alert events may say an alert moved with its patient to another ward.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Frozen, like 0001. Rows written before it count 0 observations, so any rescoring of their
hour with data revises them once.
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = sa.DateTime(timezone=True)
# 64-bit ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for an autoincrementing rowid.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIONS_0001 = ("raised", "acknowledged", "snoozed", "escalated", "resolved", "re_alerted", "reopened")
ACTIONS_0002 = ACTIONS_0001 + ("moved",)


def _action_check(actions: tuple[str, ...]) -> str:
    return "action IN (" + ", ".join(f"'{a}'" for a in actions) + ")"


def _alert_events(actions: tuple[str, ...]) -> sa.Table:
    """alert_events as 0001 made it, with `actions` allowed: SQLite rebuilds the table from it."""
    return sa.Table(
        "alert_events",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("from_state", sa.String(), nullable=True),
        sa.Column("to_state", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(_action_check(actions), name="ck_alert_events_action"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_events_alert_id_alerts"),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
        sa.Index("ix_alert_events_alert_id_at", "alert_id", "at"),
    )


def _allow_actions(actions: tuple[str, ...]) -> None:
    if op.get_context().dialect.name == "sqlite":
        with op.batch_alter_table("alert_events", copy_from=_alert_events(actions), recreate="always"):
            pass
    else:
        op.drop_constraint(op.f("ck_alert_events_action"), "alert_events", type_="check")
        op.create_check_constraint(op.f("ck_alert_events_action"), "alert_events", _action_check(actions))


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.add_column(sa.Column("observations", sa.Integer(), server_default="0", nullable=False))
    _allow_actions(ACTIONS_0002)
    op.create_table(
        "score_revisions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("score_id", BIG_ID, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("ward", sa.String(), nullable=True),
        sa.Column("risk", sa.Float(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("missing", sa.Text(), nullable=True),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revised_at", UTC, nullable=False),
        sa.Column("drivers", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["score_id"], ["scores.id"], name=op.f("fk_score_revisions_score_id_scores"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_revisions")),
    )
    op.create_index(op.f("ix_score_revisions_score_id"), "score_revisions", ["score_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_score_revisions_score_id"), table_name="score_revisions")
    op.drop_table("score_revisions")
    op.execute("DELETE FROM alert_events WHERE action = 'moved'")
    _allow_actions(ACTIONS_0001)
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("observations")
