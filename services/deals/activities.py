"""The deals service's Temporal activities, run by its worker on the "deals" task queue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.deals.core import history, service
from services.deals.meetings import briefs
from shared.contracts.journey import (
    DealNote,
    DealStatus,
    MeetingBrief,
    MeetingBriefRequest,
    OpenDealRequest,
    OpenObjections,
    QualificationTimeout,
)
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
            raise _non_retryable(err) from err

    @activity.defn(name=Act.TIME_OUT_QUALIFICATION)
    async def time_out_qualification(self, req: QualificationTimeout) -> DealStatus:
        """The cadence's timeout outcome (disqualified or nurture) with its cause, unless the
        API recorded a verdict first: then that stage is reported."""
        try:
            async with self._sessions() as session:
                deal = await service.time_out_qualification(
                    session, req.deal_id, req.outcome, req.cause
                )
                await session.commit()
                return DealStatus(deal.id, deal.stage)
        except AppError as err:
            raise _non_retryable(err) from err

    @activity.defn(name=Act.NOTE_DEAL)
    async def note_deal(self, req: DealNote) -> None:
        """A line in the deal's history (a reminder, an escalation); once per key."""
        try:
            async with self._sessions() as session:
                deal = await service.get_deal(session, req.deal_id)
                await history.note(
                    session, deal, req.cause, key=req.key, at=datetime.fromisoformat(req.at)
                )
                await session.commit()
        except AppError as err:
            raise _non_retryable(err) from err
        except IntegrityError:
            pass  # a concurrent attempt wrote the same key: the line is there

    @activity.defn(name=Act.MEETING_BRIEF)
    async def meeting_brief(self, req: MeetingBriefRequest) -> MeetingBrief:
        try:
            async with self._sessions() as session:
                brief = await briefs.build(session, req.deal_id, req.contact)
        except AppError as err:
            raise _non_retryable(err) from err
        return MeetingBrief(brief.body(), brief.context())

    @activity.defn(name=Act.OPEN_OBJECTIONS)
    async def open_objections(self, deal_id: str) -> OpenObjections:
        try:
            async with self._sessions() as session:
                deal, found = await briefs.open_objections(session, deal_id)
        except AppError as err:
            raise _non_retryable(err) from err
        return OpenObjections(deal.id, deal.stage, deal.is_closed, found)


def _non_retryable(err: AppError) -> Exception:
    if err.status == 404:
        # retrying cannot make an unknown deal appear
        return ApplicationError(err.message, type="DealNotFound", non_retryable=True)
    if err.status == 422:
        return ApplicationError(err.message, type="InvalidInput", non_retryable=True)
    return err


def activities_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> list[Callable[..., Any]]:
    acts = DealsActivities(sessions)
    return [
        acts.open_deal,
        acts.expire_qualification,
        acts.time_out_qualification,
        acts.note_deal,
        acts.meeting_brief,
        acts.open_objections,
    ]
