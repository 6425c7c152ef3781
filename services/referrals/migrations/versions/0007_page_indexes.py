"""referral asks and referrals: indexes in page order (created_at, id), and a rep's asks, for the
lists' pages and the analytics' window, which otherwise read and sorted the whole tables

Revision ID: 0007_page_indexes
Revises: 0005_erased_people
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_index_online

revision: str = "0007_page_indexes"
down_revision: str | Sequence[str] | None = "0005_erased_people"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_referral_asks_page": ("referral_asks", ["created_at", "id"]),
    "ix_referral_asks_rep_page": ("referral_asks", ["rep_id", "created_at", "id"]),
    "ix_referrals_page": ("referrals", ["created_at", "id"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        create_index_online(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
