"""assignment rules, outbox, erasures, trigram search index (PostgreSQL)

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-27 11:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The free-text search expression of services.prospecting.service.search_text; the index must
# be built on exactly this expression for the planner to use it.
SEARCH_EXPRESSION = (
    "lower(first_name || ' ' || last_name || ' ' || coalesce(email, '') || ' ' || company)"
)


def upgrade() -> None:
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assignment_note", sa.String(length=300), server_default="", nullable=False)
        )
    op.create_table(
        "assignment_rules",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_subject_id", "outbox", ["subject_id"])
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("prospect_id", sa.String(length=32), nullable=False),
        sa.Column("email_digest", sa.String(length=64), nullable=True),
        sa.Column("phone_digest", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prospect_id"),
    )
    op.create_index("ix_erasures_email_digest", "erasures", ["email_digest"])
    op.create_index("ix_erasures_phone_digest", "erasures", ["phone_digest"])
    if op.get_bind().dialect.name == "postgresql":
        # Trigram GIN index: `expression LIKE '%text%'` becomes an index scan instead of
        # reading every row. pg_trgm is a trusted extension (PostgreSQL 13+): the database
        # owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            f"CREATE INDEX ix_prospects_search_trgm ON prospects "
            f"USING gin (({SEARCH_EXPRESSION}) gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_prospects_search_trgm")
    op.drop_index("ix_erasures_phone_digest", table_name="erasures")
    op.drop_index("ix_erasures_email_digest", table_name="erasures")
    op.drop_table("erasures")
    op.drop_index("ix_outbox_subject_id", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("assignment_rules")
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        batch_op.drop_column("assignment_note")
