"""meeting revisions and states, decision deadline, deal history

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-27 10:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meetings") as batch:
        batch.add_column(
            sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("cancel_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deals") as batch:
        batch.add_column(
            sa.Column("decision_deadline", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "deal_history",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.Column("from_stage", sa.String(length=20), nullable=True),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["deals.id"],
            name=op.f("fk_deal_history_deal_id_deals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_history")),
        sa.UniqueConstraint("key", name=op.f("uq_deal_history_key")),
    )
    op.create_index(op.f("ix_deal_history_deal_id"), "deal_history", ["deal_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deal_history_deal_id"), table_name="deal_history")
    op.drop_table("deal_history")
    with op.batch_alter_table("deals") as batch:
        batch.drop_column("decision_deadline")
    with op.batch_alter_table("meetings") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("cancel_reason")
        batch.drop_column("revision")
