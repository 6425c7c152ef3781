"""the ids of erased prospects: an event about one relayed after the erasure is dropped

Revision ID: 0023_erased_prospects
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_erased_prospects"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erased_prospects",
        sa.Column("prospect_id", sa.String(64), primary_key=True),
        sa.Column("erasure_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erased_prospects")
