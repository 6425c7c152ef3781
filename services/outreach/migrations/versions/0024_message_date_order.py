"""messages.month_first: how the prospect writes numeric dates, kept when an email is sent

A zone taken by default (a United States number spanning several zones) said nothing of it, so
an out-of-office's "back 03/04" was read day first.

Revision ID: 0024_message_date_order
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_message_date_order"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("month_first", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("month_first")
