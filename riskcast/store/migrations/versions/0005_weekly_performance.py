"""The Model page's weekly performance is computed by the nightly job and stored
(`weekly_performance`: one row per model version and calendar week), so the page reads it
instead of running a patient bootstrap on every click.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Frozen, like 0001 to 0004. The table starts empty: the page says the numbers are computed by
the nightly job until its first run.
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = sa.DateTime(timezone=True)
# 64-bit ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for an autoincrementing rowid.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATUSES = ("measured", "no_events_yet", "outcomes_pending", "no_non_events")


def upgrade() -> None:
    op.create_table(
        "weekly_performance",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("week_start", UTC, nullable=False),
        sa.Column("computed_at", UTC, nullable=False),
        sa.Column("n_scored", sa.Integer(), nullable=False),
        sa.Column("n_insufficient", sa.Integer(), nullable=False),
        sa.Column("n_labelled", sa.Integer(), nullable=False),
        sa.Column("n_pending", sa.Integer(), nullable=False),
        sa.Column("n_positive", sa.Integer(), nullable=False),
        sa.Column("n_patients", sa.Integer(), nullable=False),
        sa.Column("auroc", sa.Float(), nullable=True),
        sa.Column("auroc_low", sa.Float(), nullable=True),
        sa.Column("auroc_high", sa.Float(), nullable=True),
        sa.Column("auprc", sa.Float(), nullable=True),
        sa.Column("auprc_low", sa.Float(), nullable=True),
        sa.Column("auprc_high", sa.Float(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name=op.f("ck_weekly_performance_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weekly_performance")),
        sa.UniqueConstraint("model_version", "week_start", name=op.f("uq_weekly_performance_model_version_week_start")),
    )


def downgrade() -> None:
    op.drop_table("weekly_performance")
