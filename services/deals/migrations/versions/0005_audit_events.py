"""the audit log; deal history names who made each change; the event outbox

Revision ID: 0005_audit_events
Revises: 0002_deals_v2, 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.audit import create_audit_table

revision: str = "0005_audit_events"
down_revision: str | Sequence[str] | None = ("0002_deals_v2", "0003")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_audit_table(op)
    with op.batch_alter_table("deal_history") as batch:
        batch.add_column(sa.Column("actor", sa.String(120), nullable=False, server_default=""))
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("event_id", sa.String(40), nullable=False, unique=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("event_outbox")
    with op.batch_alter_table("deal_history") as batch:
        batch.drop_column("actor")
    op.drop_table("audit_log")
