"""the audit log

Revision ID: 0004_audit_log
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.audit import create_audit_table

revision: str = "0004_audit_log"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_audit_table(op)


def downgrade() -> None:
    op.drop_table("audit_log")
