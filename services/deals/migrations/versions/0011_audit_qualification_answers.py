"""audit_log: entries of qualification answers kept a rep's free-text answer (who signs,
their pain in their words) in clear, with no prospect to redact them by when the person is
erased; they say it changed now, as entries made from now on do
(shared.audit.SENSITIVE: answer)

Revision ID: 0011_audit_answers
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import forget_audited_values

revision: str = "0011_audit_answers"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    forget_audited_values(op, "qualification_answers", "answer")


def downgrade() -> None:
    pass  # what was scrubbed is gone, as it should be
