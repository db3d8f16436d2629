"""Alert events record the operating-system account that acted through the `riskcast` command
(`os_user`), beside the dashboard user and role; null for the dashboard and for riskcast.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Frozen, like 0001 to 0003. Events written before it have no os_user.
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("alert_events") as batch:
        batch.add_column(sa.Column("os_user", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_events") as batch:
        batch.drop_column("os_user")
