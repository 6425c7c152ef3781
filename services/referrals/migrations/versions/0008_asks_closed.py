"""referral asks: closed_at, set when the client is erased (the API then refuses the ask, as the
closed link already refused the page); the asks erasures closed before (their name blanked) are
closed as of the link's closing

Revision ID: 0008_asks_closed
Revises: 0007_page_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_asks_closed"
down_revision: str | Sequence[str] | None = "0007_page_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("referral_asks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    # an erasure blanked the name and used the link; a living client's ask always has a name
    # (the journey's, from a prospect's required first name)
    op.execute(
        "UPDATE referral_asks SET closed_at = used_at "
        "WHERE client_name = '' AND used_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("referral_asks", schema=None) as batch_op:
        batch_op.drop_column("closed_at")
