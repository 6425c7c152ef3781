"""a rep notification counts its claims, so that a retry knows an earlier attempt went unrecorded

Revision ID: 0019_notification_claims
Revises: 0009_rep_inbox (which made the table)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_notification_claims"
down_revision: str | Sequence[str] | None = "0009_rep_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claims", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("task_notifications", schema=None) as batch_op:
        batch_op.drop_column("claims")
