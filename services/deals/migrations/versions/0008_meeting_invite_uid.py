"""deals: the UID of a meeting's calendar invitations, fixed for the meeting's life

It was computed at every send from CLOSEFLOW_EMAIL_FROM's domain: changing the setting between
an invitation and its update made the prospect's calendar add a second event and ignore the
cancellation. Meetings already there keep the UID they were invited with (the setting's domain
at the upgrade, which every service reads from the same configuration).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from shared.providers.email import address_domain
from shared.settings import Settings

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("meetings") as batch:
        batch.add_column(sa.Column("invite_uid", sa.String(length=320), nullable=True))
    settings = context.config.attributes.get("settings") or Settings()
    op.execute(
        sa.text("UPDATE meetings SET invite_uid = id || '@' || :domain").bindparams(
            domain=address_domain(settings.email_from)
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("meetings") as batch:
        batch.drop_column("invite_uid")
