"""prospecting: stage changes queue for the funnel's aggregates instead of adding to them in
their own transaction (funnel_queue.py: no row that every change writes)

Revision ID: 0014
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0004"  # the aggregates came with 0004
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "funnel_pending",
        sa.Column(
            "stage_history_id",
            sa.String(32),
            sa.ForeignKey("stage_history.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("funnel_pending")
