"""audit_log: entries of the do-not-contact list kept the listed address or number in clear
(an entry outlives an erasure, which deletes the list's entry); they say it changed now, as
entries made from now on do (DoNotContact.__audit_private__)

Revision ID: 0027_audit_dnc_values
Revises: 0017_audit_log
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import forget_audited_values

revision: str = "0027_audit_dnc_values"
down_revision: str | Sequence[str] | None = "0017_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    forget_audited_values(op, "do_not_contact", "value")


def downgrade() -> None:
    pass  # what was scrubbed is gone, as it should be
