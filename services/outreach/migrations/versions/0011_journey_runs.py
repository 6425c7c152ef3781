"""journey runs: an enrollment per run of a prospect's journey, follow-ups, inbox outcomes

A prospect whose journey ended may come back (issue 10): enrollments lose their uniqueness on
prospect and workflow id and gain the run number; follow_ups is the due-table of re-engagement
cadences; inbox_events say what became of each event.

Revision ID: 0011_journey_runs
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_journey_runs"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite keeps the unnamed unique constraints of 0001 without names: batch mode finds them by
# these names (alembic's documented way to drop an unnamed constraint on SQLite)
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "enrollments", schema=None, naming_convention=_SQLITE_NAMES if sqlite else None
    ) as batch_op:
        if sqlite:
            batch_op.drop_constraint("uq_enrollments_prospect_id", type_="unique")
            batch_op.drop_constraint("uq_enrollments_journey_id", type_="unique")
        else:
            batch_op.drop_constraint("enrollments_prospect_id_key", type_="unique")
            batch_op.drop_constraint("enrollments_journey_id_key", type_="unique")
        batch_op.add_column(sa.Column("run", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(
            sa.Column("current", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("run_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "origin", sa.String(length=20), nullable=False, server_default="enrollment"
            )
        )
        batch_op.add_column(
            sa.Column(
                "start_stage", sa.String(length=20), nullable=False, server_default="contacting"
            )
        )
        batch_op.add_column(sa.Column("outcome", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint("uq_enrollments_prospect_run", ["prospect_id", "run"])
        batch_op.create_index(
            "ix_enrollments_prospect_current", ["prospect_id", "current"], unique=False
        )
    op.create_table(
        "follow_ups",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("prospect_id", sa.String(length=64), nullable=False),
        sa.Column("after_run", sa.Integer(), nullable=False),
        sa.Column("from_cadence_id", sa.String(length=32), nullable=False),
        sa.Column("cadence_id", sa.String(length=32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prospect_id", "after_run", name="uq_follow_ups_prospect_run"),
    )
    op.create_index("ix_follow_ups_due", "follow_ups", ["status", "next_attempt_at"])
    op.create_index("ix_follow_ups_prospect_id", "follow_ups", ["prospect_id"])
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("outcome", sa.String(length=30), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("outcome_detail", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_column("outcome_detail")
        batch_op.drop_column("outcome")
    op.drop_index("ix_follow_ups_prospect_id", table_name="follow_ups")
    op.drop_index("ix_follow_ups_due", table_name="follow_ups")
    op.drop_table("follow_ups")
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index("ix_enrollments_prospect_current")
        batch_op.drop_constraint("uq_enrollments_prospect_run", type_="unique")
        for column in ("ended_at", "outcome", "start_stage", "origin", "run_id", "current", "run"):
            batch_op.drop_column(column)
        batch_op.create_unique_constraint("enrollments_journey_id_key", ["journey_id"])
        batch_op.create_unique_constraint("enrollments_prospect_id_key", ["prospect_id"])
