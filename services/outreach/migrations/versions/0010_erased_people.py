"""erased people: keyed digests of the email and phone of people erased on request

Revision ID: 0010
Revises: 0001
Create Date: 2026-11-27 11:10:00

"""

from collections.abc import Sequence

from alembic import op

from shared.erasure import create_erased_people_table, drop_erased_people_table

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_erased_people_table(op)


def downgrade() -> None:
    drop_erased_people_table(op)
