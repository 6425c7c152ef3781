"""ledger rows name the channel a fallback send stands in for, and why (issue 10)

Revision ID: 0014_message_fallbacks
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_message_fallbacks"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fallback_for", sa.String(length=20), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("fallback_reason", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("fallback_reason")
        batch_op.drop_column("fallback_for")
