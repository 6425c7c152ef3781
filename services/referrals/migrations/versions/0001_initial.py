"""initial

Revision ID: 0001
Revises:
Create Date: 2026-11-27 08:09:52.930154

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
        "referral_asks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("client_prospect_id", sa.String(length=32), nullable=False),
        sa.Column("journey_id", sa.String(length=200), nullable=False),
        sa.Column("client_name", sa.String(length=400), nullable=False),
        sa.Column("rep_id", sa.String(length=32), nullable=True),
        sa.Column("cadence_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id"),
        sa.UniqueConstraint("token"),
    )
    with op.batch_alter_table("referral_asks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_referral_asks_client_prospect_id"), ["client_prospect_id"], unique=False
        )

    op.create_table(
        "referrals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ask_id", sa.String(length=32), nullable=False),
        sa.Column("referrer_prospect_id", sa.String(length=32), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=False),
        sa.Column("last_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("company", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("prospect_id", sa.String(length=32), nullable=True),
        sa.Column("intake_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ask_id"],
            ["referral_asks.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_ask_id"), ["ask_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_referrals_referrer_prospect_id"), ["referrer_prospect_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_referrals_status"), ["status"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_status"))
        batch_op.drop_index(batch_op.f("ix_referrals_referrer_prospect_id"))
        batch_op.drop_index(batch_op.f("ix_referrals_ask_id"))

    op.drop_table("referrals")
    with op.batch_alter_table("referral_asks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_asks_client_prospect_id"))

    op.drop_table("referral_asks")
