"""deals: an index on deals.created_at for the analytics of the deals opened in a window
(GET /analytics/sources, which referrals' analytics asks too), which otherwise read every deal

Revision ID: 0012
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_index_online

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_online("ix_deals_created_at", "deals", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_deals_created_at", table_name="deals")
