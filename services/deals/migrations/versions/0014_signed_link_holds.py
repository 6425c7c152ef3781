"""deals: signed_link_holds, what became of a prospect for the booking links signed before
links were stored (revoked or erased: they open nothing; reassigned: they book the new rep)

Revision ID: 0014_signed_link_holds
Revises: 0013_rep_standing
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_signed_link_holds"
down_revision: str | Sequence[str] | None = "0013_rep_standing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signed_link_holds",
        sa.Column("prospect_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rep_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("prospect_id", name=op.f("pk_signed_link_holds")),
    )


def downgrade() -> None:
    op.drop_table("signed_link_holds")
