"""initial

Revision ID: 0001
Revises:
Create Date: 2026-11-27 08:09:52.900375

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "assignment_cursors",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("last_rep_id", sa.String(length=32), nullable=True),
        sa.Column("last_rep_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "reps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.create_index("ix_reps_order", ["created_at", "id"], unique=False)

    op.create_table(
        "prospects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=False),
        sa.Column("last_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("company", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("referrer_prospect_id", sa.String(length=32), nullable=True),
        sa.Column("referral_id", sa.String(length=32), nullable=True),
        sa.Column("rep_id", sa.String(length=32), nullable=True),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rep_id"],
            ["reps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
        sa.UniqueConstraint("phone"),
        sa.UniqueConstraint("referral_id"),
    )
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        batch_op.create_index("ix_prospects_page", ["created_at", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_prospects_referrer_prospect_id"), ["referrer_prospect_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_prospects_rep_id"), ["rep_id"], unique=False)
        batch_op.create_index(
            "ix_prospects_stage_page", ["stage", "created_at", "id"], unique=False
        )

    op.create_table(
        "stage_history",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("prospect_id", sa.String(length=32), nullable=False),
        sa.Column("from_stage", sa.String(length=20), nullable=True),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prospect_id"],
            ["prospects.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("stage_history", schema=None) as batch_op:
        batch_op.create_index("ix_stage_history_prospect", ["prospect_id", "at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("stage_history", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_history_prospect")

    op.drop_table("stage_history")
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        batch_op.drop_index("ix_prospects_stage_page")
        batch_op.drop_index(batch_op.f("ix_prospects_rep_id"))
        batch_op.drop_index(batch_op.f("ix_prospects_referrer_prospect_id"))
        batch_op.drop_index("ix_prospects_page")

    op.drop_table("prospects")
    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.drop_index("ix_reps_order")

    op.drop_table("reps")
    op.drop_table("assignment_cursors")
