"""audit_log: entries of the do-not-contact list kept the listed address or number in clear
(an entry outlives an erasure, which deletes the list's entry); they say it changed now, as
entries made from now on do (DoNotContact.__audit_private__)

Revision ID: 0027_audit_dnc_values
Revises: 0017_audit_log
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_audit_dnc_values"
down_revision: str | Sequence[str] | None = "0017_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = sa.table(
    "audit_log",
    sa.column("id", sa.String()),
    sa.column("resource", sa.String()),
    sa.column("changes", sa.JSON()),
)
CHANGED = {"changed": True}


def upgrade() -> None:
    connection = op.get_bind()
    entries = connection.execute(
        sa.select(AUDIT.c.id, AUDIT.c.changes).where(AUDIT.c.resource == "do_not_contact")
    ).all()
    for entry_id, changes in entries:
        if isinstance(changes, dict) and changes.get("value", CHANGED) != CHANGED:
            kept = {**changes, "value": CHANGED}
            connection.execute(AUDIT.update().where(AUDIT.c.id == entry_id).values(changes=kept))


def downgrade() -> None:
    pass  # what was scrubbed is gone, as it should be
