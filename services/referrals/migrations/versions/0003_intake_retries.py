"""intake retries: attempts, last error and due time of a referral's intake start

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("intake_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("intake_last_error", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("intake_next_attempt_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_referrals_intake_next_attempt_at"), ["intake_next_attempt_at"], unique=False
        )
    # referrals whose intake never started are due at once: the relay starts them
    op.execute(
        "UPDATE referrals SET intake_next_attempt_at = created_at "
        "WHERE intake_started_at IS NULL AND status = 'received'"
    )


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_intake_next_attempt_at"))
        batch_op.drop_column("intake_next_attempt_at")
        batch_op.drop_column("intake_last_error")
        batch_op.drop_column("intake_attempts")
