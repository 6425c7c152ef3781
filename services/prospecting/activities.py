"""Prospecting's activities, run by its worker on the "prospecting" task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.prospecting import service
from services.prospecting.models import Rep
from shared.contracts.journey import Contact, CreateReferredProspect, RepManager, StageChange
from shared.contracts.names import Act
from shared.errors import AppError
from shared.settings import Settings


def _non_retryable(err: AppError) -> ApplicationError:
    # Bad input stays bad on every attempt: fail the activity at once instead of retrying.
    return ApplicationError(err.message, err.details, type=err.code, non_retryable=True)


class ProspectingActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings | None = None
    ) -> None:
        self.sessions = sessions
        # refuses referred people who asked to be erased (services.prospecting.erasure)
        self.pepper = (settings or Settings()).erasure_pepper.get_secret_value()

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
                prospect = await service.create_referred_prospect(session, request, self.pepper)
            except AppError as err:
                raise _non_retryable(err) from err
            await session.commit()
            return service.contact_from_prospect(prospect, prospect.rep)

    @activity.defn(name=Act.GET_CONTACT)
    async def get_contact(self, prospect_id: str) -> Contact:
        """A prospect as a journey addresses them (e.g. a referrer to thank)."""
        async with self.sessions() as session:
            try:
                prospect = await service.get_prospect(session, prospect_id)
            except AppError as err:
                raise _non_retryable(err) from err
            return service.contact_from_prospect(prospect, prospect.rep)

    @activity.defn(name=Act.GET_REP_MANAGER)
    async def get_rep_manager(self, rep_id: str) -> RepManager:
        """The rep's manager, to escalate to; manager_id None when none is set."""
        async with self.sessions() as session:
            try:
                rep = await service.get_rep(session, rep_id)
            except AppError as err:
                raise _non_retryable(err) from err
            manager = await session.get(Rep, rep.manager_id) if rep.manager_id else None
            if manager is None:
                return RepManager(rep.id)
            return RepManager(rep.id, manager.id, manager.name, manager.email)


def activities_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> list[Callable[..., Any]]:
    acts = ProspectingActivities(sessions, settings)
    return [
        acts.record_stage,
        acts.create_referred_prospect,
        acts.get_contact,
        acts.get_rep_manager,
    ]
