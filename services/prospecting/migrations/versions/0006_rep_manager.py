"""a rep's manager

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-27 11:05:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reps") as batch:
        batch.add_column(sa.Column("manager_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key("fk_reps_manager_id_reps", "reps", ["manager_id"], ["id"])
        batch.create_index("ix_reps_manager_id", ["manager_id"])


def downgrade() -> None:
    with op.batch_alter_table("reps") as batch:
        batch.drop_index("ix_reps_manager_id")
        batch.drop_constraint("fk_reps_manager_id_reps", type_="foreignkey")
        batch.drop_column("manager_id")
