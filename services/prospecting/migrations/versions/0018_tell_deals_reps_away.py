"""prospecting: deals hears of the reps deactivated before it was told of deactivations (their
booking links offer no times from then on): one rep_standing message per inactive rep, queued in
the outbox as a deactivation queues it now (services.prospecting.reps._tell_standing)

Revision ID: 0018_tell_deals_reps_away
Revises: 0017
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0018_tell_deals_reps_away"
down_revision: str | Sequence[str] | None = "0017"  # reps.active came with 0008, before it
depends_on: str | Sequence[str] | None = "0003"  # the outbox came with 0003
branch_labels: str | Sequence[str] | None = None

REPS = sa.table("reps", sa.column("id", sa.String()), sa.column("active", sa.Boolean()))
OUTBOX = sa.table(
    "outbox",
    sa.column("id", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("target", sa.String()),
    sa.column("path", sa.String()),
    sa.column("payload", sa.JSON()),
    sa.column("subject_id", sa.String()),
    sa.column("status", sa.String()),
    sa.column("attempts", sa.Integer()),
    sa.column("last_error", sa.Text()),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
KIND = "rep_standing"  # services.prospecting.reps.REP_STANDING


def upgrade() -> None:
    connection = op.get_bind()
    away = connection.scalars(sa.select(REPS.c.id).where(REPS.c.active.is_(False))).all()
    now = datetime.now(UTC)
    rows = [
        {
            "id": uuid.uuid4().hex,
            "kind": KIND,
            "target": "deals",
            "path": f"/internal/reps/{rep_id}/standing",
            # a reactivation after this migration carries a later time: it wins in deals
            "payload": {"active": False, "changed_at": now.isoformat()},
            "subject_id": rep_id,
            "status": "pending",
            "attempts": 0,
            "last_error": "",
            "next_attempt_at": now,
            "created_at": now,
        }
        for rep_id in away
    ]
    if rows:
        op.bulk_insert(OUTBOX, rows)


def downgrade() -> None:
    op.execute(OUTBOX.delete().where(OUTBOX.c.kind == KIND, OUTBOX.c.status == "pending"))
