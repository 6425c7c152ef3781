"""funnel: stage changes carry cadence, rep, source and time in stage; aggregate tables

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-27 11:10:00

Backfill: existing changes get their prospect's current rep and source (the best prospecting
knows), cadence "" (unknown: the journey did not send it before), and the time since the
prospect's previous change; then the aggregates are built from them with the same cells() the
write path uses.
"""

from collections import Counter
from collections.abc import Sequence
from itertools import groupby

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

HISTOGRAM_BUCKETS = 202  # as in models.py at this revision

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the leading primary-key columns of both aggregate tables, with their lengths
AGGREGATE_KEYS = {"grain": 1, "cadence_id": 32, "rep_id": 32, "source": 20, "period": 10}


def upgrade() -> None:
    with op.batch_alter_table("stage_history", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cadence_id", sa.String(32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("rep_id", sa.String(32), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("source", sa.String(20), nullable=False, server_default="cold")
        )
        batch_op.add_column(sa.Column("seconds_in_stage", sa.Float(), nullable=True))
    op.create_table(
        "funnel_counts",
        *(sa.Column(k, sa.String(n), nullable=False) for k, n in AGGREGATE_KEYS.items()),
        sa.Column("from_stage", sa.String(20), nullable=False),
        sa.Column("to_stage", sa.String(20), nullable=False),
        sa.Column("cause", sa.String(200), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*AGGREGATE_KEYS, "from_stage", "to_stage", "cause"),
    )
    op.create_table(
        "funnel_durations",
        *(sa.Column(k, sa.String(n), nullable=False) for k, n in AGGREGATE_KEYS.items()),
        sa.Column("stage", sa.String(20), nullable=False),
        # one column per histogram bucket (services/prospecting/models.py HISTOGRAM_BUCKETS)
        *(
            sa.Column(f"b{i}", sa.BigInteger(), nullable=False, server_default="0")
            for i in range(HISTOGRAM_BUCKETS)
        ),
        sa.PrimaryKeyConstraint(*AGGREGATE_KEYS, "stage"),
    )
    _backfill()


def _backfill() -> None:
    # imported here: the write path's own bucketing and cells, so both build the same rows
    from services.prospecting import funnel
    from services.prospecting.models import FunnelCount, FunnelDuration

    conn = op.get_bind()
    op.execute(
        "UPDATE stage_history SET "
        "rep_id = COALESCE((SELECT p.rep_id FROM prospects p "
        "WHERE p.id = stage_history.prospect_id), ''), "
        "source = COALESCE((SELECT p.source FROM prospects p "
        "WHERE p.id = stage_history.prospect_id), 'cold')"
    )
    history = sa.table(
        "stage_history",
        sa.column("id", sa.String),
        sa.column("prospect_id", sa.String),
        sa.column("from_stage", sa.String),
        sa.column("to_stage", sa.String),
        sa.column("cause", sa.String),
        sa.column("at", UTCDateTime()),
        sa.column("recorded_at", UTCDateTime()),
        sa.column("cadence_id", sa.String),
        sa.column("rep_id", sa.String),
        sa.column("source", sa.String),
        sa.column("seconds_in_stage", sa.Float),
    )
    history_rows = conn.execute(
        sa.select(history).order_by(
            history.c.prospect_id, history.c.at, history.c.recorded_at, history.c.id
        )
    ).mappings()
    counts: Counter[funnel.CountKey] = Counter()
    durations: Counter[funnel.DurationKey] = Counter()
    updates: list[dict[str, object]] = []
    update = (
        history.update()
        .where(history.c.id == sa.bindparam("row_id"))
        .values(seconds_in_stage=sa.bindparam("seconds"))
    )
    for _, changes in groupby(history_rows, key=lambda r: r["prospect_id"]):
        previous = None
        for change in changes:
            row = dict(change)
            if previous is not None:
                row["seconds_in_stage"] = max(0.0, (row["at"] - previous).total_seconds())
                updates.append({"row_id": row["id"], "seconds": row["seconds_in_stage"]})
            previous = row["at"]
            funnel.accumulate([row], counts, durations)
    for start in range(0, len(updates), 1000):
        conn.execute(update, updates[start : start + 1000])
    for start in range(0, len(rows := funnel.count_rows(counts)), 1000):
        conn.execute(sa.insert(FunnelCount.__table__), rows[start : start + 1000])
    zeros = dict.fromkeys(funnel.BUCKET_COLUMNS, 0)  # executemany wants the same columns
    rows = funnel.duration_rows(durations)
    for start in range(0, len(rows), 1000):
        batch = [{**zeros, **row} for row in rows[start : start + 1000]]
        conn.execute(sa.insert(FunnelDuration.__table__), batch)


def downgrade() -> None:
    op.drop_table("funnel_durations")
    op.drop_table("funnel_counts")
    with op.batch_alter_table("stage_history", schema=None) as batch_op:
        batch_op.drop_column("seconds_in_stage")
        batch_op.drop_column("source")
        batch_op.drop_column("rep_id")
        batch_op.drop_column("cadence_id")
