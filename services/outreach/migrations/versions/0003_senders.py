"""sender mailboxes, email send slots and the quota lock

Senders rotate round robin under hourly and daily caps; each email ledger row records the
slot it took (sender, From, recipient domain, when), which the caps count. The one row of
send_quota_locks is updated first by every claim, which serialises claims on both databases.

Revision ID: 0003_senders
Revises: 0001
Create Date: 2026-11-27 08:33:00.417996

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003_senders"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    locks = op.create_table(
        "send_quota_locks",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(locks, [{"name": "email", "claims": 0}])
    op.create_table(
        "senders",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("from_address", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("daily_cap", sa.Integer(), nullable=False),
        sa.Column("hourly_cap", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("from_address"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("from_address", sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column("to_domain", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_messages_domain_claimed", ["to_domain", "claimed_at"])
        batch_op.create_index("ix_messages_sender_claimed", ["sender_id", "claimed_at"])


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_sender_claimed")
        batch_op.drop_index("ix_messages_domain_claimed")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("to_domain")
        batch_op.drop_column("from_address")
        batch_op.drop_column("sender_id")
    op.drop_table("senders")
    op.drop_table("send_quota_locks")
