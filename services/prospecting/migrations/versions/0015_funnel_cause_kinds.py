"""prospecting: the funnel's drop-off causes keep only their kind ("closed lost", not the rep's
words after the colon): the counters outlive an erasure and must not name anyone

Revision ID: 0015
Revises: 0014

Existing rows are merged into the row of their cause's kind (their counts added), so the
funnel reads the same totals as before, per kind. Backward compatible: the previous release
reads these rows as any cause and goes on adding full causes beside them, which a later run of
this release's rule would merge again. The downgrade changes nothing: counts merged cannot be
split back into the texts they came from (which is the point).
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of services.prospecting.funnel.cause_key as of this revision (a migration must
# not change meaning when the app's code does).
DROP_OFF = ("lost", "disqualified", "nurture")
KIND = re.compile(r"[a-z][a-z ]{0,59}")
KEYS = ("grain", "cadence_id", "rep_id", "source", "period", "from_stage", "to_stage", "cause")


def cause_key(cause: str) -> str:
    kind = cause.split(":", 1)[0].strip()
    if not kind:
        return ""
    return kind if KIND.fullmatch(kind) else "other"


def upgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(
        sa.text(
            "SELECT DISTINCT to_stage, cause FROM funnel_counts "
            "WHERE to_stage IN ('lost', 'disqualified', 'nurture') AND cause <> ''"
        )
    ).all()
    others = ", ".join(KEYS[:-1])
    # One old cause at a time: its rows differ in another key column, so each lands on its own
    # row of the kind (added to it when that row exists) and none is hit twice in a statement.
    merge = sa.text(
        f"INSERT INTO funnel_counts ({others}, cause, n) "
        f"SELECT {others}, :kind, n FROM funnel_counts WHERE to_stage = :to AND cause = :cause "
        f"ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET n = funnel_counts.n + excluded.n"
    )
    drop = sa.text("DELETE FROM funnel_counts WHERE to_stage = :to AND cause = :cause")
    for to_stage, cause in found:
        kind = cause_key(cause)
        if kind == cause:
            continue
        values = {"to": to_stage, "cause": cause, "kind": kind}
        conn.execute(merge, values)
        conn.execute(drop, values)


def downgrade() -> None:
    pass
