"""referral asks: closed_at, set when the client is erased (the API then refuses the ask, as the
closed link already refused the page); the asks erasures blanked before are closed, as of the
link's closing, and those whose link an erasure left open (before 7e0bed1) get a token nobody
holds

Revision ID: 0008_asks_closed
Revises: 0007_page_indexes
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0008_asks_closed"
down_revision: str | Sequence[str] | None = "0007_page_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ASKS = sa.table(
    "referral_asks",
    sa.column("id", sa.String()),
    sa.column("token", sa.String()),
    sa.column("client_name", sa.String()),
    sa.column("used_at", UTCDateTime()),
    sa.column("closed_at", UTCDateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("referral_asks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    # an erasure blanked the name (a living client's ask always has one: the journey's, from a
    # prospect's required first name); before the links were closed (7e0bed1) it left the link
    # open and unused: each gets a token nobody holds, counts as used, and is closed
    connection = op.get_bind()
    now = datetime.now(UTC)
    erased = connection.execute(
        sa.select(ASKS.c.id, ASKS.c.used_at).where(ASKS.c.client_name == "")
    ).all()
    for ask_id, used_at in erased:
        connection.execute(
            ASKS.update()
            .where(ASKS.c.id == ask_id)
            .values(
                token=secrets.token_urlsafe(24),
                used_at=used_at or now,
                closed_at=used_at or now,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("referral_asks", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
