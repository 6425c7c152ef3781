"""referrals: a referral whose intake found the referrer themselves (the client named their own
address) is refused, `self_referral`, with no prospect: before, it stayed `prospect_created`
naming the client and was counted as someone they referred

Revision ID: 0009_self_referrals_refused
Revises: 0008_asks_closed
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_self_referrals_refused"
down_revision: str | Sequence[str] | None = "0008_asks_closed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE referrals SET status = 'self_referral', prospect_id = NULL "
        "WHERE prospect_id = referrer_prospect_id"
    )


def downgrade() -> None:
    # what the earlier release wrote for them (it counts them again)
    op.execute(
        "UPDATE referrals SET status = 'prospect_created', prospect_id = referrer_prospect_id "
        "WHERE status = 'self_referral'"
    )
