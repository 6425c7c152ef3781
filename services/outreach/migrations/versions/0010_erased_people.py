"""erased people: keyed digests of the email and phone of people erased on request

Revision ID: 0010
Revises: 0001
Create Date: 2026-11-27 11:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erased_people",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("erasure_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "digest"),
    )
    op.create_index("ix_erased_people_erasure_id", "erased_people", ["erasure_id"])


def downgrade() -> None:
    op.drop_index("ix_erased_people_erasure_id", table_name="erased_people")
    op.drop_table("erased_people")
