"""The prospect's booking page (/book/{token}): public, no API key, no JavaScript (issue 14).

GET lists the rep's free slots (availability.py) in the prospect's zone, one button per slot in
one form; POST books the slot the button named. The token is the only credential (a stored
random key, expiring and revocable: links.py; or a signed link from before), the page sets no cookie and reads none, so another site cannot
make a visitor's browser book anything it could not book itself (and the Content-Security-Policy
allows the form to post only here). Every request is rate limited per client address and per
token before anything else (shared/rate_limit.py, the referral form's limits).

A booked slot creates the meeting (service.book), then, after the commit, tells the journey as
a booked meeting does: a reply by booking (the cadence ends; contacting moves to qualifying),
the qualification when the booking passed the gate, the scheduled meeting; and starts the
calendar invitation. A slot someone else took meanwhile: 409 with the slots still free.
While the run's meeting is ahead the page shows it and books no other (409): one at a time.
A link naming a rep who was deactivated (standing.py) offers no times and books nothing (410):
the page says to reply to the message instead. A time posted through a link whose run ended
before it had a deal is a late reply (late.py): outreach names the run it goes to, or none (the
rep's task only: 409, nothing booked). GET asks outreach first whether it would name one: when
not, the page offers the times as wishes passed on to the rep, nothing booked, not as bookings.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from itertools import groupby
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.runs import signal_deal
from services.deals.core.service import find_deal_by_journey
from services.deals.meetings import availability, late, links, standing
from services.deals.meetings import service as svc
from services.deals.meetings.invites import pin_uid, send_invite
from services.deals.models import Deal, Meeting, RepAvailability
from services.deals.qualification.signals import signal_gate_passed
from shared.booking import BookingClaim
from shared.contracts.journey import ReplyReceived, system_actor
from shared.contracts.meetings import REQUEST
from shared.contracts.names import Sig
from shared.contracts.plan import clock_text
from shared.db import Session
from shared.errors import AppError
from shared.pages import Pages
from shared.rate_limit import FormLimits, refuse_if_limited
from shared.timezones import known_zone

log = logging.getLogger(__name__)
router = APIRouter(tags=["public"])
_pages = Pages(__file__)
EXPIRED = "It has expired, or it was not copied whole from the message."
NO_TIMES = "Nobody takes bookings through this link at the moment."
ALREADY_BOOKED = "You already have a meeting booked: this link books one at a time."
CLOSED = "This conversation is closed."
AWAY = "The person this link books is no longer taking meetings."
TRY_AGAIN = "We could not take your booking just now: please try again in a minute."
NOT_SHOWN = "We could not show the times just now: please try again in a minute."
ASKED = (
    "Thank you: we have passed on that you would like to meet on {when}. We will get back to "
    "you to confirm a time."
)


def _zone(claim: BookingClaim) -> ZoneInfo:
    return known_zone(claim.zone) or ZoneInfo("UTC")


def _when(moment: datetime, zone: ZoneInfo) -> str:
    return clock_text(moment.astimezone(zone), "%A %d %B %Y, %H:%M")


def _slots_page(
    request: Request,
    claim: BookingClaim,
    hours: RepAvailability,
    slots: list[datetime],
    status: int = 200,
    notice: str = "",
    passed_on: bool = False,
) -> HTMLResponse:
    """`passed_on`: a time picked is not booked but passed on to the rep (a late booking that
    starts no run: late.py), and the page says so."""
    zone = _zone(claim)
    local = [(s.astimezone(zone), s) for s in slots]
    days = [
        # the hour the clock repeats shows 02:00 twice: each says which (02:00 CEST, 02:00 CET)
        (day, [(s.isoformat(), clock_text(at, "%H:%M")) for at, s in group])
        for day, group in groupby(local, key=lambda pair: pair[0].strftime("%A %d %B"))
    ]
    return _pages.render(
        "slots.html",
        status,
        action=str(request.url.path),
        title=hours.title,
        minutes=hours.meeting_minutes,
        zone=zone.key,
        days=days,
        notice=notice,
        passed_on=passed_on,
    )


def _booked_page(
    claim: BookingClaim, meeting: Meeting, status: int = 200, notice: str = ""
) -> HTMLResponse:
    zone = _zone(claim)
    return _pages.render(
        "booked.html",
        status,
        title=meeting.title,
        when=_when(meeting.starts_at, zone),
        zone=zone.key,
        minutes=meeting.duration_minutes,
        notice=notice,
    )


async def _claim_and_hours(
    request: Request, session: AsyncSession, token: str
) -> tuple[BookingClaim, RepAvailability] | HTMLResponse:
    limits: FormLimits = request.app.state.booking_limits
    if (limited := refuse_if_limited(limits, request, token, _pages)) is not None:
        return limited
    secret = request.app.state.settings.booking_link_secret.get_secret_value()
    claim = await links.claim_of(session, token, secret)
    if claim is None:
        return _pages.render("invalid_link.html", 404, reason=EXPIRED)
    hours = await session.get(RepAvailability, claim.rep_id)
    if hours is None:
        return _pages.render("invalid_link.html", 404, reason=NO_TIMES)
    if not await standing.takes_meetings(session, claim.rep_id):
        # deactivated, and this prospect was not handed over: no times, nothing booked
        return _pages.render("no_times.html", 410, reason=AWAY)
    return claim, hours


@router.get("/book/{token}", response_class=HTMLResponse, include_in_schema=False)
async def booking_page(token: str, request: Request, session: Session) -> HTMLResponse:
    found = await _claim_and_hours(request, session, token)
    if isinstance(found, HTMLResponse):
        return found
    claim, hours = found
    if (booked := await svc.upcoming_meeting(session, claim.journey_key)) is not None:
        return _booked_page(claim, booked)
    if await svc.run_closed(session, claim.journey_key):
        # no times a booking would refuse (already_closed)
        return _pages.render("invalid_link.html", 410, reason=CLOSED)
    slots = await availability.open_slots(session, hours)
    books = await _books(request, session, claim)
    if books is None:
        # not offered as bookable, nor as wishes, when nobody can say which they are
        return _pages.render(
            "no_times.html", 503, heading="Times not shown", reason=NOT_SHOWN, reply=False
        )
    return _slots_page(request, claim, hours, slots, passed_on=not books)


@router.post("/book/{token}", response_class=HTMLResponse, include_in_schema=False)
async def book_slot(token: str, request: Request, session: Session) -> HTMLResponse:
    found = await _claim_and_hours(request, session, token)
    if isinstance(found, HTMLResponse):
        return found
    claim, hours = found
    picked = _picked(str((await request.form()).get("slot", "")))
    passed_on = False
    if picked is None or picked not in await availability.open_slots(session, hours):
        # no time, or one taken or never offered: nobody is asked to book it, and the times
        # are answered again as the page offers them (booking_page); while nobody can say how,
        # as bookable: a time posted then is asked about again, and refused if still unknown
        passed_on = await _books(request, session, claim) is False
    else:
        run = await _run_of_booking(request, session, claim, picked)
        if isinstance(run, HTMLResponse):
            return run
        claim = run
    # the rep's calendar is read under its lock: a meeting scheduled, moved or booked at the
    # same moment is either seen here or waits for this booking (availability.hold_calendar)
    await availability.hold_calendar(session, claim.rep_id)
    booked = await svc.upcoming_meeting(session, claim.journey_key)
    if booked is not None and booked.starts_at != picked:
        return _booked_page(claim, booked, 409, ALREADY_BOOKED)
    slots = await availability.open_slots(session, hours)
    if picked is None:
        notice = "Please pick one of the times below."
        return _slots_page(request, claim, hours, slots, 422, notice, passed_on)
    try:
        if picked not in slots and not await _own_booking(session, claim, picked):
            raise svc.slot_taken(picked)
        deal, meeting, passed_gate, repeat = await svc.book(
            session, claim, picked, hours.title, hours.meeting_minutes
        )
    except AppError as err:
        await session.rollback()  # nothing of the refused booking stays (e.g. a deal it opened)
        await session.refresh(hours)
        if err.code == "slot_taken":
            left = await availability.open_slots(session, hours)
            notice = "Sorry, that time was just taken. Please pick another one."
            return _slots_page(request, claim, hours, left, 409, notice, passed_on)
        if err.code == "already_closed":
            return _pages.render("invalid_link.html", 410, reason=CLOSED)
        raise
    pin_uid(request, meeting)
    await session.commit()
    await _tell(request, deal, meeting, passed_gate, repeat)
    return _booked_page(claim, meeting)


async def _run_of_booking(
    request: Request, session: AsyncSession, claim: BookingClaim, picked: datetime
) -> BookingClaim | HTMLResponse:
    """The claim the booking of an open slot goes on: the link's while its run runs or has its
    deal; after the run ended, the run outreach names for a late booking (late.py), or the page
    saying the rep will get back to them (nothing booked). Asked before the calendar's lock is
    taken."""
    try:
        if await _link_books(request, session, claim):
            return claim
        when = f"{_when(picked, _zone(claim))} ({_zone(claim).key})"
        answer = await late.ask_outreach(request.app.state.settings, claim, picked, when)
    except AppError as err:
        log.error("late booking of %s: %s", claim.prospect_id, err.message)
        return _pages.render(
            "no_times.html", 503, heading="Not booked", reason=TRY_AGAIN, reply=False
        )
    if answer.run_key is None:
        asked = ASKED.format(when=when)
        return _pages.render(
            "no_times.html", 409, heading="Request passed on", reason=asked, reply=False
        )
    await links.follow_run(session, claim.prospect_id, claim.journey_key, answer.run_key)
    return replace(claim, journey_key=answer.run_key)


async def _link_books(request: Request, session: AsyncSession, claim: BookingClaim) -> bool:
    """Whether a booking goes on the link's own run: it has its deal, or it is the prospect's
    running run (else it is a late booking: late.py). AppError while Temporal cannot answer."""
    if await find_deal_by_journey(session, claim.journey_key) is not None:
        return True
    # only read so far: no connection held (SQLite has one) while Temporal and outreach answer
    await session.commit()
    return await late.link_runs(request.app.state.temporal, claim)


async def _books(request: Request, session: AsyncSession, claim: BookingClaim) -> bool | None:
    """Whether a time picked through the link would be booked (False: passed on to the rep),
    asked as the booking asks (_run_of_booking) without making anything; None while Temporal
    or outreach cannot answer."""
    try:
        if await _link_books(request, session, claim):
            return True
        return await late.would_book(request.app.state.settings, claim)
    except AppError as err:
        log.error("booking page of %s: %s", claim.prospect_id, err.message)
        return None


def _picked(value: str) -> datetime | None:
    """The slot the form names, in UTC; None for anything that is not a moment with its offset
    (OverflowError: a moment at the calendar's edge, 0001-01-01 or 9999-12-31, has no UTC
    time)."""
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


async def _own_booking(session: AsyncSession, claim: BookingClaim, at: datetime) -> bool:
    """The slot is no longer free because this prospect booked it (a reload of the POST)."""
    return await availability.booked_by(session, claim.journey_key, at)


async def _tell(
    request: Request, deal: Deal, meeting: Meeting, passed_gate: bool, repeat: bool
) -> None:
    """The journey hears of the booking and the invitation starts (again on a repeat, the
    verdict too when the booking passed the gate: both are idempotent). A journey that is not running, or not reachable now, does not undo a booking
    the prospect has seen confirmed: logged for the ops to see."""
    temporal = request.app.state.temporal
    booked = f"booked '{meeting.title}' for {meeting.starts_at.isoformat()}"
    # no key holder: the prospect themselves, through the link
    actor = system_actor("booking link")
    try:
        await signal_deal(
            temporal,
            deal,
            Sig.REPLY_RECEIVED,
            ReplyReceived("booking link", f"booking-{meeting.id}", booked, actor),
        )
        if passed_gate:
            await signal_gate_passed(request, deal, actor)
        await signal_deal(
            temporal,
            deal,
            Sig.MEETING_SCHEDULED,
            svc.scheduled_signal(meeting, actor),
        )
    except AppError as err:
        log.error("booking %s: journey not told (%s): %s", meeting.id, err.code, err.message)
    try:
        await send_invite(request, deal, meeting, REQUEST)
    except AppError as err:
        log.error("booking %s: invitation not started: %s", meeting.id, err.message)
    if repeat:
        log.info("booking %s confirmed again", meeting.id)
