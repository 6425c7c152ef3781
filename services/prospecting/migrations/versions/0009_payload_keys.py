"""the payload keyring: per-prospect data keys of the workflow payload codec (issue 11)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # shared/codec.py `payload_keys`; a shredded prospect keeps a row with wrapped_key NULL
    op.create_table(
        "payload_keys",
        sa.Column("scope", sa.String(length=80), primary_key=True),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("payload_keys")
