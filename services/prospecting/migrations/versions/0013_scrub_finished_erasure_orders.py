"""prospecting: erasure orders that finished (confirmed or refused) before the outbox scrubbed
them still held the person's plain email, phone and name; they keep ids and digests only now,
as the outbox leaves every order it finishes (shared.erasure.scrubbed_order)

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.erasure import scrubbed_order

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOX = sa.table(
    "outbox",
    sa.column("id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("status", sa.String()),
    sa.column("payload", sa.JSON()),
)


def upgrade() -> None:
    connection = op.get_bind()
    finished = connection.execute(
        sa.select(OUTBOX.c.id, OUTBOX.c.payload).where(
            OUTBOX.c.kind == "erasure", OUTBOX.c.status.in_(("done", "failed"))
        )
    ).all()
    for row_id, payload in finished:
        kept = scrubbed_order(payload)
        if kept != payload:
            connection.execute(OUTBOX.update().where(OUTBOX.c.id == row_id).values(payload=kept))


def downgrade() -> None:
    pass  # what was scrubbed is gone, as it should be
