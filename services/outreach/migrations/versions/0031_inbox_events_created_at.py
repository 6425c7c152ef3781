"""inbox_events: an index on created_at, for the retention that prunes old delivery reports
(CLOSEFLOW_WEBHOOK_EVENT_RETENTION_DAYS): the table grows by two to four rows per text sent

Revision ID: 0031_inbox_events_created_at
Revises: 0030_inbox_bulk_lane
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_index_online

revision: str = "0031_inbox_events_created_at"
down_revision: str | Sequence[str] | None = "0030_inbox_bulk_lane"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_online("ix_inbox_events_created_at", "inbox_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_events_created_at", table_name="inbox_events")
