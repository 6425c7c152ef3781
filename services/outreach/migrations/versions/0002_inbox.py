"""inbox delivery state, rejected items, webhook tokens

The inbox row becomes the outbox of the journey signal an event causes (durable ingestion);
authenticated items that cannot be understood are kept aside; single-use tokens of signed
requests are remembered so a captured one cannot be replayed with another body.

Revision ID: 0002_inbox
Revises: 0001
Create Date: 2026-11-27 08:32:18.150079

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002_inbox"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rejected_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "webhook_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "token"),
    )
    op.create_index("ix_webhook_tokens_created_at", "webhook_tokens", ["created_at"])
    with op.batch_alter_table("inbox_events") as batch_op:
        batch_op.add_column(sa.Column("workflow_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("signal_name", sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column("signal_payload", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("delivery", sa.String(length=20), server_default="none", nullable=False)
        )
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_error", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_inbox_events_due", ["delivery", "next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("inbox_events") as batch_op:
        batch_op.drop_index("ix_inbox_events_due")
        for column in (
            "delivered_at",
            "next_attempt_at",
            "last_error",
            "attempts",
            "delivery",
            "signal_payload",
            "signal_name",
            "workflow_id",
        ):
            batch_op.drop_column(column)
    op.drop_index("ix_webhook_tokens_created_at", table_name="webhook_tokens")
    op.drop_table("webhook_tokens")
    op.drop_table("rejected_items")
