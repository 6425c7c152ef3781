"""the audit log; stage history names who made each change

Revision ID: 0011_audit_log
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.audit import create_audit_table

revision: str = "0011_audit_log"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_audit_table(op)
    with op.batch_alter_table("stage_history") as batch:
        batch.add_column(sa.Column("actor", sa.String(120), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("stage_history") as batch:
        batch.drop_column("actor")
    op.drop_table("audit_log")
