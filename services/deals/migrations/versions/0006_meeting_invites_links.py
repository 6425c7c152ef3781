"""meetings: the prospect's invitation's fate; short booking links stored (issue 14)

Revision ID: 0006
Revises: 0004_booking_links, 0005_audit_events
Create Date: 2026-12-03 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = ("0004_booking_links", "0005_audit_events")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meetings") as batch:
        batch.add_column(sa.Column("invite_status", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("invite_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("invite_sequence", sa.Integer(), nullable=True))
    op.create_table(
        "booking_links",
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("prospect_id", sa.String(length=64), nullable=False),
        sa.Column("rep_id", sa.String(length=64), nullable=False),
        sa.Column("journey_key", sa.String(length=128), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_booking_links")),
    )
    op.create_index("ix_booking_links_prospect_id", "booking_links", ["prospect_id"])
    op.create_index("ix_booking_links_journey_rep", "booking_links", ["journey_key", "rep_id"])


def downgrade() -> None:
    op.drop_table("booking_links")
    with op.batch_alter_table("meetings") as batch:
        batch.drop_column("invite_sequence")
        batch.drop_column("invite_detail")
        batch.drop_column("invite_status")
