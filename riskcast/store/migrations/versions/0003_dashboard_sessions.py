"""Dashboard sessions live in the store, so signing out, a password change or disabling a
user ends them at once, and an idle session ends; auth_events records each sign-in, failure,
throttled attempt, sign-out and revocation (sign-in throttling counts failures there).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Frozen, like 0001. Sessions signed before it lived only in their cookie; they are not
carried over: everyone signs in again once.
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC = sa.DateTime(timezone=True)
# 64-bit ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for an autoincrementing rowid.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
EVENTS = ("signed_in", "sign_in_failed", "sign_in_throttled", "signed_out", "sessions_revoked")


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_active_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.Column("address", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_dashboard_sessions_username_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(op.f("ix_dashboard_sessions_username"), "dashboard_sessions", ["username"])
    op.create_index(op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"])

    op.create_table(
        "auth_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("username", sa.String(), nullable=True),
        sa.Column("address", sa.String(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "event IN (" + ", ".join(f"'{e}'" for e in EVENTS) + ")", name=op.f("ck_auth_events_event")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_events")),
    )
    op.create_index(op.f("ix_auth_events_username_at"), "auth_events", ["username", "at"])
    op.create_index(op.f("ix_auth_events_address_at"), "auth_events", ["address", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_events_address_at"), table_name="auth_events")
    op.drop_index(op.f("ix_auth_events_username_at"), table_name="auth_events")
    op.drop_table("auth_events")
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_index(op.f("ix_dashboard_sessions_username"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
