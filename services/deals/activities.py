"""The deals service's Temporal activities, run by its worker on the "deals" task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.deals import service
from shared.contracts.journey import DealStatus, OpenDealRequest
from shared.contracts.names import Act
from shared.errors import AppError
from shared.settings import Settings


class DealsActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name=Act.OPEN_DEAL)
    async def open_deal(self, req: OpenDealRequest) -> DealStatus:
        """Idempotent on journey_id: a retry (or a concurrent twin) returns the same deal."""
        try:
            async with self._sessions() as session:
                deal = await service.open_deal(session, req)
                await session.commit()
                return DealStatus(deal.id, deal.stage)
        except IntegrityError:
            # another attempt inserted the journey's deal between our read and our insert
            async with self._sessions() as session:
                existing = await service.find_deal_by_journey(session, req.journey_id)
                if existing is None:
                    raise
                return DealStatus(existing.id, existing.stage)

    @activity.defn(name=Act.EXPIRE_QUALIFICATION)
    async def expire_qualification(self, deal_id: str) -> DealStatus:
        """Disqualify a deal still qualifying; otherwise report the stage the API recorded."""
        try:
            async with self._sessions() as session:
                deal = await service.expire_qualification(session, deal_id)
                await session.commit()
                return DealStatus(deal.id, deal.stage)
        except AppError as err:
            if err.status == 404:
                # retrying cannot make an unknown deal appear
                raise ApplicationError(
                    err.message, type="DealNotFound", non_retryable=True
                ) from err
            raise


def activities_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> list[Callable[..., Any]]:
    acts = DealsActivities(sessions)
    return [acts.open_deal, acts.expire_qualification]
