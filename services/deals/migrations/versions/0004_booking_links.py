"""booking links: reps' availability, booked slots unique per rep (issue 14)

Revision ID: 0004_booking_links
Revises: 0002_deals_v2, 0003
Create Date: 2026-12-03 11:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_booking_links"
down_revision: str | Sequence[str] | None = ("0002_deals_v2", "0003")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOOKED = "status = 'scheduled' AND booked_rep_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("meetings") as batch:
        batch.add_column(sa.Column("booked_rep_id", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_meetings_booked_slot",
        "meetings",
        ["booked_rep_id", "starts_at"],
        unique=True,
        sqlite_where=sa.text(BOOKED),
        postgresql_where=sa.text(BOOKED),
    )
    op.create_table(
        "rep_availability",
        sa.Column("rep_id", sa.String(length=64), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("days", sa.JSON(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.Column("meeting_minutes", sa.Integer(), nullable=False),
        sa.Column("buffer_minutes", sa.Integer(), nullable=False),
        sa.Column("min_notice_minutes", sa.Integer(), nullable=False),
        sa.Column("days_ahead", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rep_id", name=op.f("pk_rep_availability")),
    )


def downgrade() -> None:
    op.drop_table("rep_availability")
    op.drop_index("uq_meetings_booked_slot", table_name="meetings")
    with op.batch_alter_table("meetings") as batch:
        batch.drop_column("booked_rep_id")
