"""deals: rep_standing, whether a rep takes meetings as prospecting last said (a deactivated
rep's booking links offer no times and book nothing)

Revision ID: 0013_rep_standing
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_rep_standing"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rep_standing",
        sa.Column("rep_id", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rep_id", name=op.f("pk_rep_standing")),
    )


def downgrade() -> None:
    op.drop_table("rep_standing")
