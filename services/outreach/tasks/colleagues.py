"""A reply from one person can pause the journeys of the others at the same company."""

from __future__ import annotations

import asyncio

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from services.outreach import models
from services.outreach.cadences import service
from shared.activity_boundary import activity_boundary
from shared.contracts.journey import PauseColleagues, PauseJourney, PauseKind
from shared.contracts.names import Act, Sig
from shared.errors import AppError
from shared.journeys import signal_journey
from shared.people import work_domain

SIGNALS_AT_ONCE = 16


class ColleagueActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity_boundary(Act.PAUSE_COLLEAGUES)
    async def pause_colleagues(self, req: PauseColleagues) -> list[str]:
        """Pause the other journeys on this cadence at the same company, found by company name
        or by the work domain of their address (not a free-mail one); returns their ids.
        Pausing twice is harmless, so a retried activity needs no ledger."""
        e = models.Enrollment
        async with self.sessions() as session:
            email = req.email or await session.scalar(
                select(e.email).where(e.prospect_id == req.prospect_id)
            )
            same: list[ColumnElement[bool]] = []
            key = service.company_key(req.company)
            if key:
                same.append(e.company_key == key)
            domain = work_domain(email)
            if domain:
                # addresses are stored normalised (lower case): the domain ends them
                same.append(e.email.endswith(f"@{domain}", autoescape=True))
            if not same:
                return []
            rows = await session.scalars(
                select(e.prospect_id)
                .where(
                    e.cadence_id == req.cadence_id,
                    e.prospect_id != req.prospect_id,
                    e.current.is_(True),
                    e.outcome.is_(None),  # a run that reported its end has nothing to pause
                    or_(*same),
                )
                .order_by(e.prospect_id)
            )
            colleagues = list(rows.all())
        # at once, a few at a time: a large company's colleagues, one after another, outlasted
        # the activity's timeout, and its retries started over for ever, the replying
        # prospect's journey held from qualifying meanwhile
        limit = asyncio.Semaphore(SIGNALS_AT_ONCE)
        pause = PauseJourney(req.reason, kind=PauseKind.COLLEAGUE_REPLY)

        async def paused(pid: str) -> bool:
            async with limit:
                try:
                    await signal_journey(activity.client(), pid, Sig.PAUSE, pause)
                except AppError as err:
                    if err.code != "journey_not_running":
                        raise
                    return False
                return True

        async with asyncio.TaskGroup() as group:  # one failing: the others stop, all retried
            told = [group.create_task(paused(pid)) for pid in colleagues]
        return [pid for pid, task in zip(colleagues, told, strict=True) if task.result()]
