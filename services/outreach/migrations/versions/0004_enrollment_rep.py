"""enrollments remember the prospect's rep and company (pause a rep's or a company's journeys)

Revision ID: 0004_enrollment_rep
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_enrollment_rep"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rep_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_enrollments_rep_id"), ["rep_id"], unique=False)
        batch_op.add_column(
            sa.Column("company_key", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.create_index(
            batch_op.f("ix_enrollments_company_key"), ["company_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollments_company_key"))
        batch_op.drop_column("company_key")
        batch_op.drop_index(batch_op.f("ix_enrollments_rep_id"))
        batch_op.drop_column("rep_id")
