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

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import FastAPI, Request
from sqlalchemy import ColumnElement, delete, insert, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.prospecting import funnel
from services.prospecting.models import FunnelPending, StageHistory
from shared.app import run_during_lifespan
from shared.db import hold_lock
from shared.metrics import RelayBacklog

log = logging.getLogger(__name__)

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


class FunnelRollUp:
    """The loop that keeps the queue short while nobody reads the funnel."""

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        timing: RollUpTiming | None = None,
    ) -> None:
        self._sessions = sessions
        self.timing = timing or RollUpTiming()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_failure = ""
        self.passes = 0

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="funnel roll-up")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        # a batch's transaction ends in well under a second; what is left stays queued
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 10.0)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await roll_up_all(self._sessions(), self.timing.batch)
            except Exception as err:  # the database is briefly away: the next pass retries
                failure = f"{type(err).__name__}: {getattr(err, 'orig', err)}"
                if failure != self._last_failure:  # once per distinct failure, not every pass
                    log.exception("funnel roll-up failed")
                self._last_failure = failure
            else:
                self._last_failure = ""
            self.passes += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.timing.poll_seconds)


def install(app: FastAPI, timing: RollUpTiming | None = None) -> FunnelRollUp:
    """app.state.funnel_roll_up, its loop running while the app's lifespan does."""
    loop = FunnelRollUp(lambda: app.state.sessions, timing)
    app.state.funnel_roll_up = loop
    run_during_lifespan(app, loop)
    # its queue is a relay's backlog on /metrics: how many changes wait, and for how long
    app.state.metrics.relays.append(RelayBacklog("funnel", FunnelPending, true))
    return loop
