"""The deals service's Temporal activities, run by its worker on the "deals" task queue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from services.deals.core import history, service
from services.deals.meetings import briefs, invites
from shared.activity_boundary import activity_boundary
from shared.contracts.journey import (
    DealNote,
    DealRef,
    DealStatus,
    MeetingBrief,
    MeetingBriefRequest,
    OpenDealRequest,
    OpenObjections,
    QualificationTimeout,
    journey_id,
)
from shared.contracts.meetings import InviteOutcome
from shared.contracts.names import Act
from shared.settings import Settings


class DealsActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity_boundary(Act.OPEN_DEAL)
    async def open_deal(self, req: OpenDealRequest) -> DealStatus:
        """Idempotent on journey_id: a retry (or a concurrent twin) returns the same deal."""
        try:
            async with self.sessions() as session:
                deal = await service.open_deal(session, req, _journey_run(req.prospect_id))
                await session.commit()
                return DealStatus(deal.id, deal.stage)
        except IntegrityError:
            # another attempt inserted the journey's deal between our read and our insert
            async with self.sessions() as session:
                existing = await service.find_deal_by_journey(session, req.journey_id)
                if existing is None:
                    raise
                return DealStatus(existing.id, existing.stage)

    @activity_boundary(Act.EXPIRE_QUALIFICATION)
    async def expire_qualification(self, session: AsyncSession, ref: DealRef) -> DealStatus:
        """Disqualify a deal still qualifying; otherwise report the stage the API recorded."""
        deal = await service.expire_qualification(session, ref.deal_id)
        return DealStatus(deal.id, deal.stage)

    @activity_boundary(Act.TIME_OUT_QUALIFICATION)
    async def time_out_qualification(
        self, session: AsyncSession, req: QualificationTimeout
    ) -> DealStatus:
        """The cadence's timeout outcome (disqualified or nurture) with its cause, unless the
        API recorded a verdict first: then that stage is reported."""
        deal = await service.time_out_qualification(session, req.deal_id, req.outcome, req.cause)
        return DealStatus(deal.id, deal.stage)

    @activity_boundary(Act.NOTE_DEAL)
    async def note_deal(self, req: DealNote) -> None:
        """A line in the deal's history (a reminder, an escalation); once per key."""
        try:
            async with self.sessions() as session:
                deal = await service.get_deal(session, req.deal_id)
                await history.note(
                    session, deal, req.cause, key=req.key, at=datetime.fromisoformat(req.at)
                )
                await session.commit()
        except IntegrityError:
            pass  # a concurrent attempt wrote the same key: the line is there

    @activity_boundary(Act.MEETING_BRIEF)
    async def meeting_brief(self, session: AsyncSession, req: MeetingBriefRequest) -> MeetingBrief:
        brief = await briefs.build(session, req.deal_id, req.contact)
        return MeetingBrief(brief.body(), brief.context())

    @activity_boundary(Act.OPEN_OBJECTIONS)
    async def open_objections(self, session: AsyncSession, ref: DealRef) -> OpenObjections:
        deal, found = await briefs.open_objections(session, ref.deal_id)
        return OpenObjections(deal.id, deal.stage, deal.is_closed, found)

    @activity_boundary(Act.RECORD_INVITE)
    async def record_invite(self, session: AsyncSession, req: InviteOutcome) -> None:
        """What became of a meeting's calendar invitation (MeetingInvite's last step)."""
        await invites.record_outcome(session, req)


def _journey_run(prospect_id: str) -> str | None:
    """The run of the prospect's journey calling this activity: its deal's signals go to that
    run only. None outside one (a script, a test calling the method)."""
    if not activity.in_activity():
        return None
    info = activity.info()
    return info.workflow_run_id if info.workflow_id == journey_id(prospect_id) else None


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
        acts.record_invite,
    ]
