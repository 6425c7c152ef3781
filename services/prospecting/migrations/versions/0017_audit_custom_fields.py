"""audit_log: entries of prospects kept their `custom` fields in clear (whatever an import carried:
a mobile number, a home town), outliving an erasure; they say it changed now, as entries made
from now on do (shared.audit.SENSITIVE: custom)

Revision ID: 0017
Revises: 0011_audit_log
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import forget_audited_values

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0011_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    forget_audited_values(op, "prospects", "custom")


def downgrade() -> None:
    pass  # what was scrubbed is gone, as it should be
