"""outreach: the Idempotency-Key records of creating requests (shared/idempotency.py)

Revision ID: 0026_idempotency_keys
Revises: 0023_erased_prospects
"""

from collections.abc import Sequence

from alembic import op

from shared.idempotency import TABLE, create_idempotency_table

revision: str = "0026_idempotency_keys"
down_revision: str | Sequence[str] | None = "0023_erased_prospects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_idempotency_table(op)


def downgrade() -> None:
    op.drop_table(TABLE)
