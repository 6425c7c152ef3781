"""referrals: a referral whose email or phone has the digest of a person erased on request is
deleted. Such a row was stored before its digest came: the person was erased before referrals
kept digests (0005) and named by a client afterwards; prospecting sends those orders again
(its 0018_resend_referral_erasures), and the referrals release before this one kept their
digests without forgetting the rows (this release's erasure order does both)

Revision ID: 0010_forget_erased_referrals
Revises: 0009_self_referrals_refused
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from shared.erasure import has_digest
from shared.settings import Settings

revision: str = "0010_forget_erased_referrals"
down_revision: str | Sequence[str] | None = "0009_self_referrals_refused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFERRALS = sa.table(
    "referrals", sa.column("id", sa.String()), sa.column("email"), sa.column("phone")
)
ERASED = sa.table("erased_people", sa.column("kind", sa.String()), sa.column("digest"))


def upgrade() -> None:
    connection = op.get_bind()
    erased = {(kind, value) for kind, value in connection.execute(sa.select(ERASED))}
    if not erased:
        return
    settings = context.config.attributes.get("settings") or Settings()
    pepper = settings.erasure_pepper.get_secret_value()
    rows = connection.execute(sa.select(REFERRALS)).all()
    gone = [row.id for row in rows if has_digest(pepper, erased, row.email, row.phone)]
    for start in range(0, len(gone), 500):
        connection.execute(REFERRALS.delete().where(REFERRALS.c.id.in_(gone[start : start + 500])))


def downgrade() -> None:
    pass  # what was forgotten is gone, as it should be
