"""ledger rows know their cadence, A/B variant and whether they were replied to

Revision ID: 0005_ledger_stats
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ledger_stats"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cadence_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("variant", sa.String(length=40), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_messages_cadence_id"), ["cadence_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_cadence_id"))
        batch_op.drop_column("replied_at")
        batch_op.drop_column("variant")
        batch_op.drop_column("cadence_id")
