"""enrollments remember the prospect's email address and phone number (a do-not-contact entry
ends the journeys it covers)

Revision ID: 0008
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("phone", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_enrollments_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_enrollments_phone"), ["phone"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollments_phone"))
        batch_op.drop_index(batch_op.f("ix_enrollments_email"))
        batch_op.drop_column("phone")
        batch_op.drop_column("email")
