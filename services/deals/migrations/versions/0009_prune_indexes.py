"""deals: an index for the event outbox's retention prune (delivered rows older than a week),
which otherwise read the whole table every hour

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_index_online

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the status first: the prune wants the delivered rows among the old
    create_index_online(
        "ix_event_outbox_status_created_at", "event_outbox", ["status", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_event_outbox_status_created_at", table_name="event_outbox")
