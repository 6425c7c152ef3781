"""indexes for the retention prunes: without them each hourly pass read the whole table to find
the rows older than the retention; and each event deleted read every delivery, twice (to see
that none names it any more, and PostgreSQL's check of the deliveries' foreign key)

Revision ID: 0022_prune_indexes
Revises: 0002_inbox, 0016_event_subscriptions
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_index_online

revision: str = "0022_prune_indexes"
# rejected_items comes with 0002, the event tables with 0016: both must exist first
down_revision: str | Sequence[str] | None = ("0002_inbox", "0016_event_subscriptions")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the deliveries' status first: the prune wants the finished ones among the old
INDEXES = (
    ("ix_event_deliveries_status_created_at", "event_deliveries", ["status", "created_at"]),
    ("ix_event_deliveries_event_id", "event_deliveries", ["event_id"]),
    ("ix_webhook_events_created_at", "webhook_events", ["created_at"]),
    ("ix_rejected_items_created_at", "rejected_items", ["created_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        create_index_online(name, table, columns)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
