"""Meeting routes: book a meeting on a deal, then move, cancel, or mark it held or missed.
Thin: validate, call a use case, commit, then signal (and start the calendar invitation of a
booked, moved or cancelled meeting: invites.py).

The commit comes before the signal, so the journey never hears of a fact the database lacks.
If the signal fails after the commit, the client retries: the same change is answered again
(nothing new written) and signalled once more.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.runs import signal_deal
from services.deals.core.schemas import Meeting as MeetingOut
from services.deals.meetings import availability, links, public, schemas, standing
from services.deals.meetings import service as svc
from services.deals.meetings.invites import invite_hand_over, pin_uid, send_invite
from services.deals.models import Deal, Meeting, RepAvailability
from services.deals.qualification.signals import signal_gate_passed
from shared.audit import request_actor
from shared.auth import ApiKey
from shared.booking import BOOKING_PATH
from shared.contracts.journey import MeetingChanged
from shared.contracts.meetings import CANCEL, REQUEST
from shared.contracts.names import Sig
from shared.db import Session
from shared.errors import AppError
from shared.idempotency import IdempotentRepeat

deals = APIRouter(prefix="/deals", tags=["deals"])


@deals.post(
    "/{deal_id}/meetings",
    response_model=MeetingOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[IdempotentRepeat],  # the same meeting again books nothing (svc.schedule)
)
async def schedule_meeting(
    deal_id: str, body: schemas.MeetingCreate, request: Request, _: ApiKey, session: Session
) -> object:
    """Book a meeting on the deal, in its rep's calendar: 409 slot_taken when it overlaps
    another scheduled meeting of the rep's (naming it). The same meeting again (the retry a
    503 asks for) answers the one booked and tells the journey again all the first attempt
    told it, the verdict too when that attempt passed the gate (svc.schedule)."""
    deal, meeting, passed_gate = await svc.schedule(
        session, deal_id, body.starts_at, body.title, body.duration_minutes
    )
    pin_uid(request, meeting)
    await session.commit()
    if passed_gate:
        await signal_gate_passed(request, deal)
    await signal_deal(
        request.app.state.temporal,
        deal,
        Sig.MEETING_SCHEDULED,
        svc.scheduled_signal(meeting, request_actor(request)),
    )
    await send_invite(request, deal, meeting, REQUEST)
    return meeting


@deals.post(
    "/{deal_id}/meetings/{meeting_id}/reschedule",
    response_model=MeetingOut,
    # a late retry of an older move would move the meeting back; the same move again changes
    # nothing (the revision stays)
    dependencies=[IdempotentRepeat],
)
async def reschedule_meeting(
    deal_id: str,
    meeting_id: str,
    body: schemas.MeetingReschedule,
    request: Request,
    _: ApiKey,
    session: Session,
) -> object:
    """Move a scheduled meeting: its pending reminders are replaced by ones for the new time
    and the rep gets a new preparation task. 409 when held, missed or cancelled, and 409
    slot_taken over another meeting of the rep's (naming it)."""
    deal, meeting, _changed = await svc.reschedule(session, deal_id, meeting_id, body.starts_at)
    pin_uid(request, meeting)  # one invited before UIDs were kept: as it was computed
    await _commit_and_signal(request, session, Sig.MEETING_RESCHEDULED, deal, meeting)
    # the update (SEQUENCE = the new revision); unchanged, it is the one sent already
    await send_invite(request, deal, meeting, REQUEST)
    return meeting


@deals.post("/{deal_id}/meetings/{meeting_id}/cancel", response_model=MeetingOut)
async def cancel_meeting(
    deal_id: str,
    meeting_id: str,
    body: schemas.MeetingCancel,
    request: Request,
    _: ApiKey,
    session: Session,
) -> object:
    """Cancel a scheduled meeting: its reminders stop. 409 when it was held or missed. A closed
    deal's meeting too (it frees the rep's slot; the prospect gets the cancellation). Its
    journey run is told while one carries the deal (a won deal's, in referrals): the close
    stopped the meeting's reminders, but a reopening re-arms those of the meetings still ahead,
    and would have re-armed this one's. A closed deal whose run has ended has nobody to tell."""
    deal, meeting = await svc.cancel(session, deal_id, meeting_id, body.reason.strip())
    pin_uid(request, meeting)
    try:
        await _commit_and_signal(request, session, Sig.MEETING_CANCELLED, deal, meeting)
    except AppError as err:
        if not (deal.is_closed and err.code == "journey_not_running"):
            raise
    await send_invite(request, deal, meeting, CANCEL)
    if meeting.handed_over_from:
        # a hand-over whose invitations had not started (prospecting's retry finds only
        # scheduled meetings): the rep whose calendar holds it gets their cancellation too
        await invite_hand_over(request, session, [(deal, meeting)], with_update=False)
    return meeting


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
    await signal_deal(
        request.app.state.temporal,
        deal,
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


reps = APIRouter(prefix="/reps", tags=["meetings"])
# as long as a rep's id may be (the column's length): a longer one is a 422, not a 500
RepId = Annotated[str, Path(max_length=64)]


@reps.put("/{rep_id}/availability", response_model=schemas.AvailabilityOut)
async def set_availability(
    rep_id: RepId, body: schemas.AvailabilityIn, _: ApiKey, session: Session
) -> schemas.AvailabilityOut:
    """The rep's working hours for booking links (ops, admins and the rep itself): replaces
    what was set; the links already sent offer the new slots at once."""
    row = await availability.set_hours(session, rep_id, body.columns())
    return await _availability_out(session, row)


@reps.get("/{rep_id}/availability", response_model=schemas.AvailabilityOut)
async def get_availability(rep_id: RepId, _: ApiKey, session: Session) -> schemas.AvailabilityOut:
    """The rep's working hours and the slots a booking link offers now (none while the rep is
    deactivated: `active` false). 404 until set."""
    return await _availability_out(session, await availability.get_hours(session, rep_id))


async def _availability_out(session: AsyncSession, row: RepAvailability) -> schemas.AvailabilityOut:
    active = await standing.takes_meetings(session, row.rep_id)
    return schemas.AvailabilityOut(
        rep_id=row.rep_id,
        timezone=row.timezone,
        days=list(row.days),
        start=f"{row.start_minute // 60:02d}:{row.start_minute % 60:02d}",
        end=f"{row.end_minute // 60:02d}:{row.end_minute % 60:02d}",
        meeting_minutes=row.meeting_minutes,
        buffer_minutes=row.buffer_minutes,
        min_notice_minutes=row.min_notice_minutes,
        days_ahead=row.days_ahead,
        title=row.title,
        active=active,
        free_slots=await availability.open_slots(session, row) if active else [],
    )


links_router = APIRouter(tags=["meetings"])


@links_router.post("/internal/booking-links", response_model=schemas.BookingLinkOut)
async def issue_booking_link(
    body: schemas.BookingLinkIn, request: Request, _: ApiKey, session: Session
) -> schemas.BookingLinkOut:
    """A prospect's booking link (outreach, rendering `{{ booking_link }}`): the run's live one
    while it has more than half its life left, else a new one (links.py)."""
    settings = request.app.state.settings
    link = await links.issue(session, **body.model_dump(), days=settings.booking_link_days)
    await session.commit()
    url = f"{settings.deals_public_url.rstrip('/')}{BOOKING_PATH}{link.token}"
    return schemas.BookingLinkOut(token=link.token, url=url, expires_at=link.expires_at)


@links_router.delete("/prospects/{prospect_id}/booking-links", response_model=schemas.LinksRevoked)
async def revoke_booking_links(
    prospect_id: str, _: ApiKey, session: Session
) -> schemas.LinksRevoked:
    """Every booking link sent to the prospect stops working at once (their page: 404)."""
    revoked = await links.revoke(session, prospect_id)
    await session.commit()
    return schemas.LinksRevoked(prospect_id=prospect_id, revoked=revoked)


@links_router.post("/internal/reps/{rep_id}/standing", response_model=schemas.RepStandingOut)
async def record_rep_standing(
    rep_id: RepId, body: schemas.RepStandingIn, _: ApiKey, session: Session
) -> schemas.RepStandingOut:
    """The rep was deactivated or reactivated (prospecting's outbox, retried until 2xx): while
    deactivated, the links naming them offer no times and book nothing (standing.py)."""
    row = await standing.record(session, rep_id, body.active, body.changed_at)
    await session.commit()
    return schemas.RepStandingOut(rep_id=rep_id, active=row.active, changed_at=row.changed_at)


routers = [deals, reps, links_router, public.router]
