"""Prospecting's activities, run by its worker on the "prospecting" task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.prospecting import service
from shared.contracts.journey import Contact, CreateReferredProspect, StageChange
from shared.contracts.names import Act
from shared.errors import AppError
from shared.settings import Settings


def _non_retryable(err: AppError) -> ApplicationError:
    # Bad input stays bad on every attempt: fail the activity at once instead of retrying.
    return ApplicationError(err.message, err.details, type=err.code, non_retryable=True)


class ProspectingActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name=Act.RECORD_STAGE)
    async def record_stage(self, change: StageChange) -> None:
        async with self.sessions() as session:
            try:
                await service.record_stage(session, change)
            except AppError as err:
                raise _non_retryable(err) from err
            await session.commit()

    @activity.defn(name=Act.CREATE_REFERRED_PROSPECT)
    async def create_referred_prospect(self, request: CreateReferredProspect) -> Contact:
        async with self.sessions() as session:
            try:
                prospect = await service.create_referred_prospect(session, request)
            except AppError as err:
                raise _non_retryable(err) from err
            await session.commit()
            return service.contact_from_prospect(prospect, prospect.rep)


def activities_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> list[Callable[..., Any]]:
    acts = ProspectingActivities(sessions)
    return [acts.record_stage, acts.create_referred_prospect]
