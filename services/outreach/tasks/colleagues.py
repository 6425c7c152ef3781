"""A reply from one person can pause the journeys of the others at the same company."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from services.outreach import models
from services.outreach.cadences import service
from shared.activity_boundary import activity_boundary
from shared.contracts.journey import PauseColleagues, PauseJourney
from shared.contracts.names import Act, Sig
from shared.errors import AppError
from shared.journeys import signal_journey


class ColleagueActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity_boundary(Act.PAUSE_COLLEAGUES)
    async def pause_colleagues(self, req: PauseColleagues) -> list[str]:
        """Pause the other journeys on this cadence at the same company; returns their ids.
        Pausing twice is harmless, so a retried activity needs no ledger."""
        key = service.company_key(req.company)
        if not key:
            return []
        async with self.sessions() as session:
            rows = await session.scalars(
                select(models.Enrollment.prospect_id).where(
                    models.Enrollment.cadence_id == req.cadence_id,
                    models.Enrollment.company_key == key,
                    models.Enrollment.prospect_id != req.prospect_id,
                    models.Enrollment.current.is_(True),
                )
            )
            colleagues = list(rows.all())
        paused = []
        for pid in colleagues:
            try:
                await signal_journey(activity.client(), pid, Sig.PAUSE, PauseJourney(req.reason))
            except AppError as err:
                if err.code != "journey_not_running":
                    raise
                continue
            paused.append(pid)
        return paused
