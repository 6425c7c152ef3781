"""erased people: keyed digests of the email and phone of people erased on request, so a client
cannot refer them back in (their erasure orders from now on fill it)

Revision ID: 0005_erased_people
Revises: 0004_audit_log
"""

from collections.abc import Sequence

from alembic import op

from shared.erasure import create_erased_people_table, drop_erased_people_table

revision: str = "0005_erased_people"
down_revision: str | Sequence[str] | None = "0004_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_erased_people_table(op)


def downgrade() -> None:
    drop_erased_people_table(op)
