"""inbox_events: a `bulk` flag for the rows one act stores by the thousand (a cadence's pause,
one per journey), and the relay's due index by lane, so that a claim takes a prospect's reply
or opt-out before them, through the index, however many are due

Revision ID: 0030_inbox_bulk_lane
Revises: 0028_inbox_prospect_index
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_index_online

revision: str = "0030_inbox_bulk_lane"
down_revision: str | Sequence[str] | None = "0028_inbox_prospect_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LANE_INDEX = ["delivery", "bulk", "next_attempt_at", "id"]


def upgrade() -> None:
    # a constant default: PostgreSQL adds the column without rewriting the table. Rows stored
    # before count as the others (a bulk operation pending across the upgrade drains first)
    op.add_column(
        "inbox_events", sa.Column("bulk", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    create_index_online("ix_inbox_events_due_lane", "inbox_events", LANE_INDEX)
    _drop_index_online("ix_inbox_events_due")


def downgrade() -> None:
    create_index_online("ix_inbox_events_due", "inbox_events", ["delivery", "next_attempt_at"])
    _drop_index_online("ix_inbox_events_due_lane")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_column("bulk")


def _drop_index_online(name: str) -> None:
    """On PostgreSQL outside the migration's transaction: a plain DROP INDEX would hold the
    table's exclusive lock, blocking the running release's webhooks, until every migration of
    the service has run."""
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(name, table_name="inbox_events")
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name="inbox_events", postgresql_concurrently=True)
