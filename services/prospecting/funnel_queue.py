"""The funnel's counters, kept without a row that every stage change writes.

Each change of a transition on a day adds 1 to that day's "all" aggregate rows (cadence, rep and
source "*": funnel.cells). Added in the change's own transaction, those rows were locked by every
change in the system until it committed, so on PostgreSQL the changes queued behind each other
(docs/architecture.md, "No hot rows"). A change now only queues its stage_history id in
`funnel_pending`, an insert no other transaction touches, and the changes are added to the
aggregates by a roll-up, one at a time (a transaction-level advisory lock on PostgreSQL; SQLite has
one writer anyway), a batch per transaction: the prospecting API's loop every second, and every
funnel read before it reads, so that a read counts every change committed before it began.
A change is added once: its queue row is deleted in the transaction that adds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import FastAPI, Request
from sqlalchemy import ColumnElement, delete, insert, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.prospecting import funnel
from services.prospecting.models import FunnelPending, StageHistory
from shared.app import run_during_lifespan
from shared.db import hold_lock
from shared.loops import RepeatingPass
from shared.metrics import RelayBacklog

LOCK = "closeflow:funnel-roll-up"
# what funnel.cells reads of a change
_COUNTED = (
    StageHistory.at,
    StageHistory.from_stage,
    StageHistory.to_stage,
    StageHistory.cause,
    StageHistory.cadence_id,
    StageHistory.rep_id,
    StageHistory.source,
    StageHistory.seconds_in_stage,
)


@dataclass(frozen=True)
class RollUpTiming:
    poll_seconds: float = 1.0  # how long a change may wait for the loop (a read never waits)
    batch: int = 500  # changes added per transaction


async def queue(session: AsyncSession, stage_history_ids: Sequence[str]) -> None:
    """Queue freshly inserted changes for the funnel, in their transaction (after their rows)."""
    if stage_history_ids:
        await session.execute(
            insert(FunnelPending), [{"stage_history_id": i} for i in stage_history_ids]
        )


async def roll_up(session: AsyncSession, batch: int) -> int:
    """Add up to `batch` queued changes to the aggregates and unqueue them; the caller commits.
    Returns how many it added."""
    some = select(FunnelPending.stage_history_id).limit(batch).scalar_subquery()
    return await _add(session, FunnelPending.stage_history_id.in_(some))


async def roll_up_prospect(session: AsyncSession, prospect_id: str) -> int:
    """Add the prospect's queued changes now, in the caller's transaction: their erasure deletes
    the changes (and their queue rows with them), and the counters, counts without a person,
    keep them."""
    theirs = select(StageHistory.id).where(StageHistory.prospect_id == prospect_id)
    return await _add(session, FunnelPending.stage_history_id.in_(theirs.scalar_subquery()))


async def _add(session: AsyncSession, queued: ColumnElement[bool]) -> int:
    await hold_lock(session, LOCK)
    ids = (
        await session.scalars(
            delete(FunnelPending).where(queued).returning(FunnelPending.stage_history_id)
        )
    ).all()
    if not ids:
        return 0
    rows = await session.execute(select(*_COUNTED).where(StageHistory.id.in_(ids)))
    await funnel.count(session, [row._asdict() for row in rows])
    return len(ids)


async def roll_up_all(sessions: async_sessionmaker[AsyncSession], batch: int = 500) -> int:
    """Add every change queued so far, a batch per transaction."""
    added = 0
    while True:
        async with sessions() as session:
            # looked at without the lock: the readers of a quiet funnel never queue for it
            if await session.scalar(select(FunnelPending.stage_history_id).limit(1)) is None:
                return added
            n = await roll_up(session, batch)
            await session.commit()
        added += n
        if n < batch:
            return added


async def counted(request: Request) -> None:
    """A funnel read's dependency: every change committed before the read is in the aggregates."""
    await roll_up_all(request.app.state.sessions)


class FunnelRollUp(RepeatingPass):
    """The loop that keeps the queue short while nobody reads the funnel."""

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        timing: RollUpTiming | None = None,
    ) -> None:
        super().__init__("funnel roll-up")
        self._sessions = sessions
        self.timing = timing or RollUpTiming()
        self.passes = 0

    async def one_pass(self) -> bool:
        try:
            await roll_up_all(self._sessions(), self.timing.batch)
        finally:
            self.passes += 1
        return False  # the queue is empty: roll_up_all goes on while batches come back full

    def pause_seconds(self) -> float:
        return self.timing.poll_seconds

    def stop_grace(self) -> float:
        return 10.0  # a batch's transaction ends in well under a second; the rest stays queued


def install(app: FastAPI, timing: RollUpTiming | None = None) -> FunnelRollUp:
    """app.state.funnel_roll_up, its loop running while the app's lifespan does."""
    loop = FunnelRollUp(lambda: app.state.sessions, timing)
    app.state.funnel_roll_up = loop
    run_during_lifespan(app, loop)
    # its queue is a relay's backlog on /metrics: how many changes wait, and for how long
    app.state.metrics.relays.append(RelayBacklog("funnel", FunnelPending, true))
    return loop
