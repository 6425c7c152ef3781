"""inbox_events: an index on (prospect_id, id) for a prospect's events (their timeline,
GET /inbox-events?prospect_id=), which otherwise read every provider callback ever stored

Revision ID: 0028_inbox_prospect_index
Revises: 0002_inbox
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_index_online

revision: str = "0028_inbox_prospect_index"
down_revision: str | Sequence[str] | None = "0002_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_online("ix_inbox_events_prospect", "inbox_events", ["prospect_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_inbox_events_prospect", table_name="inbox_events")
