"""Meeting routes: book a meeting on a deal, then move, cancel, or mark it held or missed.
Thin: validate, call a use case, commit, then signal.

The commit comes before the signal, so the journey never hears of a fact the database lacks.
If the signal fails after the commit, the client retries: the same change is answered again
(nothing new written) and signalled once more.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.schemas import Meeting as MeetingOut
from services.deals.meetings import schemas
from services.deals.meetings import service as svc
from services.deals.models import Deal, Meeting
from services.deals.qualification.signals import signal_gate_passed
from shared.auth import ApiKey
from shared.contracts.journey import MeetingChanged, MeetingScheduled
from shared.contracts.names import Sig
from shared.db import Session
from shared.journeys import signal_journey

deals = APIRouter(prefix="/deals", tags=["deals"])


@deals.post("/{deal_id}/meetings", response_model=MeetingOut, status_code=status.HTTP_201_CREATED)
async def schedule_meeting(
    deal_id: str, body: schemas.MeetingCreate, request: Request, _: ApiKey, session: Session
) -> object:
    deal, meeting, passed_gate = await svc.schedule(
        session, deal_id, body.starts_at, body.title, body.duration_minutes
    )
    await session.commit()
    if passed_gate:
        await signal_gate_passed(request, deal)
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        Sig.MEETING_SCHEDULED,
        MeetingScheduled(
            meeting.id, deal.id, meeting.starts_at.isoformat(), meeting.title, meeting.revision
        ),
    )
    return meeting


@deals.post("/{deal_id}/meetings/{meeting_id}/reschedule", response_model=MeetingOut)
async def reschedule_meeting(
    deal_id: str,
    meeting_id: str,
    body: schemas.MeetingReschedule,
    request: Request,
    _: ApiKey,
    session: Session,
) -> object:
    """Move a scheduled meeting: its pending reminders are replaced by ones for the new time
    and the rep gets a new preparation task. 409 when held, missed or cancelled."""
    deal, meeting, _changed = await svc.reschedule(session, deal_id, meeting_id, body.starts_at)
    return await _commit_and_signal(request, session, Sig.MEETING_RESCHEDULED, deal, meeting)


@deals.post("/{deal_id}/meetings/{meeting_id}/cancel", response_model=MeetingOut)
async def cancel_meeting(
    deal_id: str,
    meeting_id: str,
    body: schemas.MeetingCancel,
    request: Request,
    _: ApiKey,
    session: Session,
) -> object:
    """Cancel a scheduled meeting: its reminders stop. 409 when it was held or missed."""
    deal, meeting = await svc.cancel(session, deal_id, meeting_id, body.reason.strip())
    return await _commit_and_signal(request, session, Sig.MEETING_CANCELLED, deal, meeting)


@deals.post("/{deal_id}/meetings/{meeting_id}/held", response_model=MeetingOut)
async def mark_meeting_held(
    deal_id: str, meeting_id: str, request: Request, _: ApiKey, session: Session
) -> object:
    """The meeting took place (only once it has started). 409 when cancelled or a no-show."""
    deal, meeting = await svc.mark(session, deal_id, meeting_id, svc.HELD)
    return await _commit_and_signal(request, session, Sig.MEETING_HELD, deal, meeting)


@deals.post("/{deal_id}/meetings/{meeting_id}/no-show", response_model=MeetingOut)
async def mark_meeting_no_show(
    deal_id: str, meeting_id: str, request: Request, _: ApiKey, session: Session
) -> object:
    """The prospect did not come (only once it has started): the rep gets a follow-up task and
    the prospect a re-booking message. 409 when cancelled or held."""
    deal, meeting = await svc.mark(session, deal_id, meeting_id, svc.NO_SHOW)
    return await _commit_and_signal(request, session, Sig.MEETING_NO_SHOW, deal, meeting)


async def _commit_and_signal(
    request: Request, session: AsyncSession, signal: str, deal: Deal, meeting: Meeting
) -> Meeting:
    """The change a route made, committed, then told to the journey (in that order: see above)."""
    await session.commit()
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        signal,
        MeetingChanged(
            meeting.id,
            deal.id,
            meeting.starts_at.isoformat(),
            meeting.title,
            meeting.revision,
            meeting.cancel_reason or "",
        ),
    )
    return meeting


routers = [deals]
