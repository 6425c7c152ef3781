"""rep inbox: task context, snooze, urgency and escalation marks; ops policy; notification
preferences per rep and the notification outbox

Revision ID: 0009_rep_inbox
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_rep_inbox"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rep_tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("prospect_card", sa.JSON(), nullable=False, server_default="{}")
        )
        batch_op.add_column(sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("urgent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("urgent_reason", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reassigned_from", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_rep_tasks_status_due", ["status", "due_at"], unique=False)

    op.create_table(
        "task_policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalate_after_seconds", sa.Integer(), nullable=False),
        sa.Column("hot_reply_seconds", sa.Integer(), nullable=False),
        sa.Column("meeting_soon_seconds", sa.Integer(), nullable=False),
        sa.Column("due_soon_seconds", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "rep_notification_prefs",
        sa.Column("rep_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_secret", sa.String(length=200), nullable=True),
        sa.Column("escalate_to", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rep_id"),
    )
    op.create_table(
        "task_notifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("recipient_rep_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "reason", "recipient_rep_id", "channel"),
    )
    with op.batch_alter_table("task_notifications", schema=None) as batch_op:
        batch_op.create_index("ix_task_notifications_task_id", ["task_id"], unique=False)
        batch_op.create_index(
            "ix_task_notifications_due", ["status", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("task_notifications")
    op.drop_table("rep_notification_prefs")
    op.drop_table("task_policy")
    with op.batch_alter_table("rep_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_rep_tasks_status_due")
        for column in (
            "updated_at",
            "reassigned_from",
            "escalated_at",
            "urgent_reason",
            "urgent_at",
            "snoozed_until",
            "prospect_card",
        ):
            batch_op.drop_column(column)
