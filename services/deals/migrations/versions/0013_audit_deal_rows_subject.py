"""audit_log: the entries of a deal's rows (qualification answers, meetings, objections and their
outcomes, history) named no prospect, so the prospect's erasure left their values in place; the
entries whose row still exists now name the prospect of its deal, as entries made from now on do
(shared.audit._subject follows the row's foreign keys). An entry whose row is gone already (its
deal erased or deleted) has no deal left to name a prospect by: it stays as it was.

Revision ID: 0013_audit_deal_rows_subject
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_audit_deal_rows_subject"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the tables as this revision knows them (frozen: later changes have migrations of their own)
_DEAL_ROWS = ("qualification_answers", "meetings", "objections", "deal_history")


def upgrade() -> None:
    audit = sa.table(
        "audit_log", sa.column("resource", sa.String()), sa.column("resource_id", sa.String()),
        sa.column("subject_id", sa.String()),
    )  # fmt: skip
    deals = sa.table("deals", sa.column("id", sa.String()), sa.column("prospect_id", sa.String()))
    objections = sa.table(
        "objections", sa.column("id", sa.String()), sa.column("deal_id", sa.String())
    )
    outcomes = sa.table(
        "objection_outcomes", sa.column("id", sa.String()), sa.column("objection_id", sa.String())
    )
    prospect_of: dict[str, sa.ScalarSelect[str]] = {}
    for name in _DEAL_ROWS:
        rows = sa.table(name, sa.column("id", sa.String()), sa.column("deal_id", sa.String()))
        prospect_of[name] = (
            sa.select(deals.c.prospect_id)
            .join(rows, rows.c.deal_id == deals.c.id)
            .where(rows.c.id == audit.c.resource_id)
            .scalar_subquery()
        )
    prospect_of["objection_outcomes"] = (
        sa.select(deals.c.prospect_id)
        .join(objections, objections.c.deal_id == deals.c.id)
        .join(outcomes, outcomes.c.objection_id == objections.c.id)
        .where(outcomes.c.id == audit.c.resource_id)
        .scalar_subquery()
    )
    for resource, prospect in prospect_of.items():
        op.execute(
            audit.update()
            .where(audit.c.resource == resource, audit.c.subject_id.is_(None))
            .values(subject_id=prospect)
        )


def downgrade() -> None:
    pass  # an entry naming its prospect is what every entry should do
