"""prospecting: the erasure orders referrals confirmed are sent to it again, as kept (ids and
digests): those it confirmed before it kept digests (its migration 0005) left it without them,
so a client could name the person afterwards and referrals stored them. Referrals keeps the
digests now and forgets the referrals whose address has them; a repeat does nothing more

Revision ID: 0018_resend_referral_erasures
Revises: 0013
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0018_resend_referral_erasures"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OUTBOX = sa.table(
    "outbox",
    sa.column("kind", sa.String()),
    sa.column("target", sa.String()),
    sa.column("status", sa.String()),
    sa.column("attempts", sa.Integer()),
    sa.column("last_error", sa.Text()),
    sa.column("next_attempt_at", UTCDateTime()),
    sa.column("done_at", UTCDateTime()),
)


def upgrade() -> None:
    # pending and due now: the outbox relay sends them (the erasures stay done)
    op.execute(
        OUTBOX.update()
        .where(
            OUTBOX.c.kind == "erasure",
            OUTBOX.c.target == "referrals",
            OUTBOX.c.status == "done",
        )
        .values(
            status="pending",
            attempts=0,
            last_error="",
            next_attempt_at=datetime.now(UTC),
            done_at=None,
        )
    )


def downgrade() -> None:
    pass  # a re-sent order is confirmed again as it was: nothing to undo
