"""Prospecting's activities, run by its worker on the "prospecting" task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.prospecting import reps, service
from services.prospecting.models import Rep
from shared.activity_boundary import activity_boundary
from shared.contracts.journey import (
    Contact,
    CreateReferredProspect,
    ProspectRef,
    RepManager,
    RepRef,
    StageChange,
)
from shared.contracts.names import Act
from shared.settings import Settings


class ProspectingActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings | None = None
    ) -> None:
        self.sessions = sessions
        # refuses referred people who asked to be erased (services.prospecting.erasure)
        settings = settings or Settings()
        self.pepper = settings.erasure_pepper.get_secret_value()
        self.master_keys = settings.master_keys  # each referred prospect's payload data key

    @activity_boundary(Act.RECORD_STAGE)
    async def record_stage(self, session: AsyncSession, change: StageChange) -> None:
        await service.record_stage(session, change)

    @activity_boundary(Act.CREATE_REFERRED_PROSPECT)
    async def create_referred_prospect(
        self, session: AsyncSession, request: CreateReferredProspect
    ) -> Contact:
        prospect = await service.create_referred_prospect(
            session, request, self.pepper, self.master_keys
        )
        # a known person comes back through the referral: one whose rep left while their
        # journey was over goes to an active rep first, as any come back does (idempotent)
        prospect, _ = await reps.come_back(session, prospect.id)
        return service.contact_from_prospect(prospect, prospect.rep)

    @activity_boundary(Act.GET_CONTACT)
    async def get_contact(self, session: AsyncSession, ref: ProspectRef) -> Contact:
        """A prospect as a journey addresses them (e.g. a referrer to thank)."""
        prospect = await service.get_prospect(session, ref.prospect_id)
        return service.contact_from_prospect(prospect, prospect.rep)

    @activity_boundary(Act.GET_REP_MANAGER)
    async def get_rep_manager(self, session: AsyncSession, ref: RepRef) -> RepManager:
        """The rep's manager, to escalate to; manager_id None when none is set (or they were
        deactivated: nobody would read the escalation)."""
        rep = await service.get_rep(session, ref.rep_id)
        manager = await session.get(Rep, rep.manager_id) if rep.manager_id else None
        if manager is None or not manager.active:
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
