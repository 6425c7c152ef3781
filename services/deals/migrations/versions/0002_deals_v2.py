"""deals v2: frameworks, closing fields, close reasons, staged playbook, objection outcomes

Revision ID: 0002_deals_v2
Revises: 0001
Create Date: 2026-11-27 09:40:00

"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002_deals_v2"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here (not imported from the app): ops edit the list through PUT /close-reasons.
DEFAULT_CLOSE_REASONS: list[tuple[str, str, str]] = [
    ("won", "best_fit", "Best fit for their need"),
    ("won", "value", "Clear return on investment"),
    ("won", "relationship", "Trust in us and the team"),
    ("won", "other", "Other"),
    ("lost", "price", "Too expensive"),
    ("lost", "competitor", "Chose a competitor"),
    ("lost", "no_decision", "No decision / kept the status quo"),
    ("lost", "timing", "Bad timing"),
    ("lost", "no_budget", "No budget"),
    ("lost", "missing_feature", "Missing a feature they need"),
    ("lost", "other", "Other"),
]


def upgrade() -> None:
    with op.batch_alter_table("deals") as batch:
        batch.add_column(sa.Column("close_reason_code", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("stage_before_close", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("framework", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("expected_close_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("segment", sa.String(length=100), nullable=True))
        batch.create_index(batch.f("ix_deals_segment"), ["segment"])

    with op.batch_alter_table("objections") as batch:
        batch.add_column(sa.Column("stage", sa.String(length=20), nullable=True))
        batch.create_index(batch.f("ix_objections_stage"), ["stage"])
    with op.batch_alter_table("objection_categories") as batch:
        batch.add_column(sa.Column("stage_answers", sa.JSON(), nullable=True))
    op.create_table(
        "objection_outcomes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("objection_id", sa.String(length=32), nullable=False),
        sa.Column("response_key", sa.String(length=64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["objection_id"],
            ["objections.id"],
            name=op.f("fk_objection_outcomes_objection_id_objections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objection_outcomes")),
        sa.UniqueConstraint(
            "objection_id",
            "response_key",
            name=op.f("uq_objection_outcomes_objection_id_response_key"),
        ),
    )
    op.create_index(
        op.f("ix_objection_outcomes_objection_id"), "objection_outcomes", ["objection_id"]
    )
    op.create_table(
        "qualification_frameworks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("pass_score", sa.Integer(), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qualification_frameworks")),
        sa.UniqueConstraint("name", name=op.f("uq_qualification_frameworks_name")),
    )
    close_reasons = op.create_table(
        "close_reasons",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_close_reasons")),
        sa.UniqueConstraint("outcome", "code", name=op.f("uq_close_reasons_outcome_code")),
    )
    op.bulk_insert(
        close_reasons,
        [
            {"id": uuid.uuid4().hex, "outcome": o, "code": c, "label": label, "position": i}
            for i, (o, c, label) in enumerate(DEFAULT_CLOSE_REASONS)
        ],
    )


def downgrade() -> None:
    op.drop_table("close_reasons")
    op.drop_table("qualification_frameworks")
    op.drop_index(op.f("ix_objection_outcomes_objection_id"), table_name="objection_outcomes")
    op.drop_table("objection_outcomes")
    with op.batch_alter_table("objection_categories") as batch:
        batch.drop_column("stage_answers")
    with op.batch_alter_table("objections") as batch:
        batch.drop_index(batch.f("ix_objections_stage"))
        batch.drop_column("stage")
    with op.batch_alter_table("deals") as batch:
        batch.drop_index(batch.f("ix_deals_segment"))
        batch.drop_column("segment")
        batch.drop_column("expected_close_date")
        batch.drop_column("framework")
        batch.drop_column("stage_before_close")
        batch.drop_column("close_reason_code")
