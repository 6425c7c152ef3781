"""initial: deals, qualification answers, meetings, objections, and the default playbook

Revision ID: 0001
Revises:
Create Date: 2026-11-27 08:11:09.748593

"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose (not imported from the app): a migration must insert the same rows
# forever, whatever the code's defaults become later. Ops edit the playbook through the API.
DEFAULT_PLAYBOOK: list[tuple[str, str, list[str], list[str]]] = [
    (
        "price",
        "Price",
        [
            "too expensive",
            "expensive",
            "price",
            "pricing",
            "cost",
            "costs",
            "cheaper",
            "afford",
            "discount",
            "out of our budget",
            "over budget",
        ],
        [
            "Compare it with what the problem costs today: what does one month of it cost you?",
            "We can start with a smaller scope and expand once the first results are in.",
            "Which part of the price is the concern: the total, or paying it upfront?",
        ],
    ),
    (
        "timing",
        "Timing",
        [
            "not now",
            "not right now",
            "bad time",
            "next quarter",
            "next year",
            "later",
            "too busy",
            "busy",
            "call me back",
            "not a priority",
            "timing",
        ],
        [
            "What would need to change for this to become a priority?",
            "Set up now, go live when it suits you: onboarding fits around your calendar.",
            "Shall I book a short check-in for the date you mentioned?",
        ],
    ),
    (
        "authority",
        "Authority",
        [
            "my boss",
            "my manager",
            "not my decision",
            "not up to me",
            "decision maker",
            "need approval",
            "sign off",
            "check with",
            "the board",
            "procurement",
        ],
        [
            "Who else should be in the next conversation? I can prepare a summary for them.",
            "What will they want to see to say yes? Let's build that case together.",
        ],
    ),
    (
        "need",
        "Need",
        [
            "don't need",
            "do not need",
            "no need",
            "not interested",
            "we're fine",
            "works fine",
            "happy with",
            "not a problem",
            "doesn't apply",
        ],
        [
            "Many teams felt the same until they measured the time spent on it: can we check?",
            "What would have to go wrong for this to become worth solving?",
        ],
    ),
    (
        "competitor",
        "Competitor",
        [
            "competitor",
            "already use",
            "already using",
            "another vendor",
            "other vendor",
            "another tool",
            "current provider",
            "current vendor",
            "in-house",
            "alternative",
        ],
        [
            "What do you like most about your current solution, and what is missing?",
            "Here is how we differ where it matters most to teams like yours.",
            "Switching is simpler than it looks: we handle the migration.",
        ],
    ),
    (
        "trust",
        "Trust",
        [
            "never heard of",
            "trust",
            "risky",
            "risk",
            "references",
            "reference",
            "case study",
            "proof",
            "security",
            "reviews",
            "too small",
        ],
        [
            "I can connect you with a customer of your size who went through the same decision.",
            "Our security documentation and certifications are ready to share.",
            "A pilot with clear success criteria lets you judge on your own data.",
        ],
    ),
]


def upgrade() -> None:
    op.create_table(
        "deals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("prospect_id", sa.String(length=64), nullable=False),
        sa.Column("journey_id", sa.String(length=200), nullable=False),
        sa.Column("rep_id", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("qualified", sa.Boolean(), nullable=True),
        sa.Column("qualification_score", sa.Integer(), nullable=True),
        sa.Column("qualification_reasons", sa.JSON(), nullable=False),
        sa.Column("value", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deals")),
        sa.UniqueConstraint("journey_id", name=op.f("uq_deals_journey_id")),
    )
    op.create_index(op.f("ix_deals_prospect_id"), "deals", ["prospect_id"])
    op.create_index(op.f("ix_deals_rep_id"), "deals", ["rep_id"])
    op.create_index(op.f("ix_deals_stage"), "deals", ["stage"])

    objection_categories = op.create_table(
        "objection_categories",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("triggers", sa.JSON(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objection_categories")),
        sa.UniqueConstraint("category", name=op.f("uq_objection_categories_category")),
    )

    op.create_table(
        "meetings",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.String(length=32), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deals.id"], name=op.f("fk_meetings_deal_id_deals"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meetings")),
    )
    op.create_index(op.f("ix_meetings_deal_id"), "meetings", ["deal_id"])

    op.create_table(
        "objections",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deals.id"], name=op.f("fk_objections_deal_id_deals"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objections")),
    )
    op.create_index(op.f("ix_objections_category"), "objections", ["category"])
    op.create_index(op.f("ix_objections_deal_id"), "objections", ["deal_id"])

    op.create_table(
        "qualification_answers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deal_id", sa.String(length=32), nullable=False),
        sa.Column("framework", sa.String(length=40), nullable=False),
        sa.Column("criterion", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["deals.id"],
            name=op.f("fk_qualification_answers_deal_id_deals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qualification_answers")),
        sa.UniqueConstraint(
            "deal_id", "criterion", name=op.f("uq_qualification_answers_deal_id_criterion")
        ),
    )
    op.create_index(op.f("ix_qualification_answers_deal_id"), "qualification_answers", ["deal_id"])

    now = datetime.now(UTC)
    op.bulk_insert(
        objection_categories,
        [
            {
                # stable ids: every fresh install seeds identical rows
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"closeflow:playbook:{slug}").hex,
                "category": slug,
                "label": label,
                "triggers": triggers,
                "answers": answers,
                "created_at": now,
                "updated_at": now,
            }
            for slug, label, triggers, answers in DEFAULT_PLAYBOOK
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_qualification_answers_deal_id"), table_name="qualification_answers")
    op.drop_table("qualification_answers")
    op.drop_index(op.f("ix_objections_deal_id"), table_name="objections")
    op.drop_index(op.f("ix_objections_category"), table_name="objections")
    op.drop_table("objections")
    op.drop_index(op.f("ix_meetings_deal_id"), table_name="meetings")
    op.drop_table("meetings")
    op.drop_table("objection_categories")
    op.drop_index(op.f("ix_deals_stage"), table_name="deals")
    op.drop_index(op.f("ix_deals_rep_id"), table_name="deals")
    op.drop_index(op.f("ix_deals_prospect_id"), table_name="deals")
    op.drop_table("deals")
