"""deals: meetings.handovers and handed_over_from, a meeting's hand-overs to another rep

The hand-over moved the meeting's slot to the new rep and sent no invitation: the prospect's
calendar kept the former rep as organizer, the former rep's kept the meeting, the new rep's never
had it. `handovers` raises the invitations' SEQUENCE (the revision stays the time's);
`handed_over_from` keeps who it left while the update and that rep's cancellation are owed.

Revision ID: 0015_meeting_handed_over_from
Revises: 0014_signed_link_holds
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_meeting_handed_over_from"
down_revision: str | Sequence[str] | None = "0014_signed_link_holds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meetings") as batch:
        batch.add_column(
            sa.Column("handovers", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("handed_over_from", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("meetings") as batch:
        batch.drop_column("handed_over_from")
        batch.drop_column("handovers")
