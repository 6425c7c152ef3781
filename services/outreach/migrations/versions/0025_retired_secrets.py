"""event subscriptions: every secret a rotation retired signs until its own overlap ends (one
previous secret was kept, so a second rotation inside an overlap dropped the first at once)

Revision ID: 0025_retired_secrets
Revises: 0016_event_subscriptions
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0025_retired_secrets"
down_revision: str | Sequence[str] | None = "0016_event_subscriptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBS = sa.table(
    "event_subscriptions",
    sa.column("id", sa.String(32)),
    sa.column("previous_secret", sa.String(100)),
    sa.column("previous_secret_until", sa.DateTime(timezone=True)),
    sa.column("retired_secrets", sa.JSON()),
)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def upgrade() -> None:
    with op.batch_alter_table("event_subscriptions") as batch:
        batch.add_column(sa.Column("retired_secrets", sa.JSON(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(SUBS.c.id, SUBS.c.previous_secret, SUBS.c.previous_secret_until)
    ).all()
    for sub_id, secret, until in rows:
        retired = [{"secret": secret, "until": _utc(until).isoformat()}] if secret and until else []
        bind.execute(SUBS.update().where(SUBS.c.id == sub_id).values(retired_secrets=retired))
    # The old columns stay, emptied (no copy of a secret left behind): replicas of the release
    # before still select them while a rolling upgrade runs, and insert rows without the new
    # column (which is why it stays nullable). A later release drops them.
    bind.execute(SUBS.update().values(previous_secret=None, previous_secret_until=None))


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(SUBS.c.id, SUBS.c.retired_secrets)).all()
    for sub_id, retired in rows:
        if retired:  # the one retired last: the previous secret of the older schema
            last = retired[-1]
            until = datetime.fromisoformat(last["until"])
            bind.execute(
                SUBS.update()
                .where(SUBS.c.id == sub_id)
                .values(previous_secret=last["secret"], previous_secret_until=until)
            )
    with op.batch_alter_table("event_subscriptions") as batch:
        batch.drop_column("retired_secrets")
