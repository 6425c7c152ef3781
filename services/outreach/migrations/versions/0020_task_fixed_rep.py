"""a rep task says whether it is bound to its person (a manager's escalation), so that a
prospect's reassignment leaves it with them

Revision ID: 0020_task_fixed_rep
Revises: 0009_rep_inbox (which made the table)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_task_fixed_rep"
down_revision: str | Sequence[str] | None = "0009_rep_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rep_tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fixed_rep", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # the journeys' escalations were the only tasks made for a fixed rep so far
    tasks = sa.table("rep_tasks", sa.column("kind", sa.String), sa.column("fixed_rep", sa.Boolean))
    op.execute(tasks.update().where(tasks.c.kind == "escalation").values(fixed_rep=True))


def downgrade() -> None:
    with op.batch_alter_table("rep_tasks", schema=None) as batch_op:
        batch_op.drop_column("fixed_rep")
