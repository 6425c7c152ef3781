"""prospecting: stage changes queue for the funnel's aggregates instead of adding to them in
their own transaction (funnel_queue.py: no row that every change writes)

Revision ID: 0014
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

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
    # an earlier release counts in the write path and never reads the queue: what waits in it
    # goes into the counters first (imported here: the roll-up's own cells and upserts)
    from services.prospecting import funnel

    conn = op.get_bind()
    pending = sa.table("funnel_pending", sa.column("stage_history_id", sa.String))
    history = sa.table(
        "stage_history",
        sa.column("id", sa.String),
        sa.column("from_stage", sa.String),
        sa.column("to_stage", sa.String),
        sa.column("cause", sa.String),
        sa.column("at", UTCDateTime()),
        sa.column("cadence_id", sa.String),
        sa.column("rep_id", sa.String),
        sa.column("source", sa.String),
        sa.column("seconds_in_stage", sa.Float),
    )
    queued = conn.execute(
        sa.select(history).where(history.c.id.in_(sa.select(pending.c.stage_history_id)))
    ).mappings()
    counted = funnel.accumulate(dict(row) for row in queued)
    for statement, rows in funnel.upsert_rows(conn.dialect.name, *counted):
        for start in range(0, len(rows), 1000):
            conn.execute(statement, rows[start : start + 1000])
    op.drop_table("funnel_pending")
