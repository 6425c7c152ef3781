"""A meeting's life: scheduled (through the qualification gate when the deal is still
qualifying), then rescheduled, cancelled, held or missed (no-show). Use cases take a session and
never commit.

scheduled -> scheduled (reschedule: revision + 1) | cancelled | held | no_show. Repeating the
last change answers the same meeting again (a client retrying after a failed signal); any other
move out of a final state is a 409 that names the state. Once the deal is closed its meetings
can only be cancelled (which frees the rep's slot); moving or marking one is a 409.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core import history
from services.deals.core.service import (
    QUALIFIED_STAGES,
    find_deal_by_journey,
    get_deal,
    open_deal,
    require_stage,
)
from services.deals.meetings.availability import Booked, hold_calendar, overlapping
from services.deals.models import CLOSED_STAGES, Deal, EventOutbox, Meeting
from services.deals.qualification.gate import gate_failures, just_passed, pass_gate
from shared.booking import BookingClaim
from shared.contracts.journey import MeetingScheduled, OpenDealRequest, Stage
from shared.db import utcnow
from shared.errors import AppError, conflict, not_found
from shared.events import MEETING_BOOKED, add_event

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
Outcome = Literal["held", "no_show"]
HELD: Final[Outcome] = "held"
NO_SHOW: Final[Outcome] = "no_show"
MEETING_STAGES = QUALIFIED_STAGES
# a meeting the prospect booked through their link while the deal stays qualifying is moved,
# cancelled and marked there too: the journey plans its changes while qualifying
CHANGE_STAGES = (Stage.QUALIFYING, *QUALIFIED_STAGES)


async def schedule(
    session: AsyncSession, deal_id: str, starts_at: datetime, title: str, duration_minutes: int
) -> tuple[Deal, Meeting, bool]:
    """(deal, meeting, passed_gate): passed_gate when the meeting took the deal out of
    qualifying, which the journey must hear as a qualification first. The meeting holds its
    slot of the deal's rep, as a booked one does: a booking of that time (at once or later)
    gets 409 slot_taken, and so does a meeting that overlaps another scheduled one of the rep's
    (each for its own minutes), naming it. The same meeting again on an open deal (its
    scheduled one with that start, title and length in its rep's slot, never moved: the retry
    a 503 after the commit asks for) is answered again, nothing written, with passed_gate as
    the first time when nothing has moved the deal since: the journey hears it all again."""
    await hold_calendar(
        session, await session.scalar(select(Deal.rep_id).where(Deal.id == deal_id))
    )
    deal = await get_deal(session, deal_id, lock=True)
    same = await session.scalar(
        select(Meeting).where(
            Meeting.deal_id == deal.id,
            Meeting.booked_rep_id.is_not_distinct_from(deal.rep_id),
            Meeting.starts_at == starts_at,
            Meeting.title == title,
            Meeting.duration_minutes == duration_minutes,
            Meeting.status == SCHEDULED,
            Meeting.revision == 0,  # never moved: a moved one is another change's
        )
    )
    if same is not None and not deal.is_closed:
        return deal, same, await just_passed(session, deal)
    passed_gate = deal.stage == Stage.QUALIFYING
    if passed_gate:
        # a meeting means presenting: only through the gate
        await pass_gate(session, deal, Stage.PRESENTING)
    require_stage(deal, MEETING_STAGES, "scheduling a meeting")
    meeting = await _place(session, deal, deal.rep_id, starts_at, title, duration_minutes)
    return deal, meeting, passed_gate


async def _place(
    session: AsyncSession,
    deal: Deal,
    rep_id: str | None,
    starts_at: datetime,
    title: str,
    duration_minutes: int,
) -> Meeting:
    """A new scheduled meeting in `rep_id`'s slot, announced in the same transaction."""
    await _refuse_overlap(session, rep_id, starts_at, duration_minutes)
    meeting = Meeting(
        deal_id=deal.id,
        starts_at=starts_at,
        title=title,
        duration_minutes=duration_minutes,
        status=SCHEDULED,
        booked_rep_id=rep_id,
    )
    await _hold_slot(session, meeting)
    await _announce_booked(session, deal, meeting)
    return meeting


async def _refuse_overlap(
    session: AsyncSession,
    rep_id: str | None,
    starts_at: datetime,
    minutes: int,
    moving: str | None = None,
) -> None:
    """409 slot_taken naming the rep's scheduled meeting that [starts_at, + minutes) overlaps
    (the unique index only sees equal starts). The caller holds the rep's calendar."""
    if rep_id is None:
        return
    span = (starts_at, starts_at + timedelta(minutes=minutes))
    found = await overlapping(session, rep_id, span, moving)
    if found is not None:
        raise slot_taken(starts_at, found)


async def _announce_booked(session: AsyncSession, deal: Deal, meeting: Meeting) -> None:
    """The meeting_booked event for subscribers, in the meeting's own transaction (once)."""
    await add_event(
        session,
        EventOutbox,
        MEETING_BOOKED,
        meeting.id,
        {
            "meeting_id": meeting.id,
            "deal_id": deal.id,
            "prospect_id": deal.prospect_id,
            "rep_id": meeting.booked_rep_id or deal.rep_id,
            "starts_at": meeting.starts_at.isoformat(),
            "duration_minutes": meeting.duration_minutes,
        },
    )


async def book(
    session: AsyncSession,
    claim: BookingClaim,
    starts_at: datetime,
    title: str,
    duration_minutes: int,
) -> tuple[Deal, Meeting, bool, bool]:
    """A slot the prospect picked on their booking page: (deal, meeting, passed_gate, repeat).

    The deal is the journey run's (opened here when the prospect books before replying; the
    journey's own open_deal then finds it). A qualifying deal whose answers pass the gate moves
    to presenting, as a booked meeting does; one whose answers do not (yet) stays qualifying
    with the meeting on it: the gate still decides presenting. `repeat`: the prospect's own
    meeting in that slot already (a double click, a reload): answered again, nothing written.
    Another meeting in the rep's slot, committed meanwhile: 409 slot_taken (read under the
    rep's calendar lock; the unique index decides an equal start whatever was read before).
    """
    deal = await find_deal_by_journey(session, claim.journey_key)
    if deal is None:
        cause = "booked a meeting through the booking link"
        req = OpenDealRequest(
            claim.prospect_id, claim.journey_key, claim.rep_id, claim.source, cause
        )
        deal = await open_deal(session, req)
    deal = await get_deal(session, deal.id, lock=True)
    mine = await session.scalar(
        select(Meeting).where(
            # whoever's calendar holds it now (the deal may have been handed to another rep)
            Meeting.deal_id == deal.id,
            Meeting.starts_at == starts_at,
            Meeting.status == SCHEDULED,
        )
    )
    if mine is not None:
        # the verdict too, when this booking passed the gate: its first telling may have failed
        return deal, mine, await just_passed(session, deal), True
    if deal.is_closed:
        raise conflict("already_closed", f"deal {deal.id} is already {deal.stage}")
    passed_gate = False
    if deal.stage == Stage.QUALIFYING and not (await gate_failures(session, deal))[1]:
        await pass_gate(session, deal, Stage.PRESENTING)
        passed_gate = True
    meeting = await _place(session, deal, claim.rep_id, starts_at, title, duration_minutes)
    await history.note(
        session,
        deal,
        f"meeting {meeting.id} booked through the booking link for {starts_at.isoformat()}",
        key=f"meeting:{meeting.id}:booked",
    )
    return deal, meeting, passed_gate, False


async def upcoming_meeting(session: AsyncSession, journey_key: str) -> Meeting | None:
    """The journey run's scheduled meeting that has not started yet (the earliest): while there
    is one its booking link books nothing more (the confirmation says to reply to move it)."""
    return await session.scalar(
        select(Meeting)
        .join(Deal, Deal.id == Meeting.deal_id)
        .where(
            Deal.journey_id == journey_key,
            Meeting.status == SCHEDULED,
            Meeting.starts_at > utcnow(),
        )
        .order_by(Meeting.starts_at)
        .limit(1)
    )


async def hand_over(session: AsyncSession, prospect_id: str, rep_id: str) -> None:
    """The prospect's open deals are `rep_id`'s now (core.service.move_rep, called after this
    under the same calendar lock): their scheduled meetings' slots leave the old rep's calendar
    for the new rep's, who runs them. One whose start the new rep holds already keeps its old
    hold (the unique index): moving either meeting settles that clash. A meeting moved counts
    a hand-over (its organizer changed: the calendars take the update only with a higher
    SEQUENCE, invites.invitation) and remembers the rep it left until its invitations have
    started (handed_over_meetings); a hand-over before those started keeps the first rep, who
    still holds it in their calendar. Its revision, the time's, stays: the journey's reminders
    and a repeated booking request know it as it was."""
    await hold_calendar(session, rep_id)
    # the lock order of every change: calendar, deal, then its meetings
    locked = await session.scalars(
        select(Deal)
        .where(Deal.prospect_id == prospect_id, Deal.stage.not_in(CLOSED_STAGES))
        .with_for_update()
    )
    deals = {deal.id: deal for deal in locked.all()}
    found = await session.scalars(
        select(Meeting).where(
            Meeting.deal_id.in_(list(deals)),
            Meeting.status == SCHEDULED,
            Meeting.booked_rep_id.is_not(None),
            Meeting.booked_rep_id != rep_id,
        )
    )
    for meeting in found.all():
        former = meeting.booked_rep_id
        try:
            await _hold_slot(
                session,
                meeting,
                booked_rep_id=rep_id,
                handovers=meeting.handovers + 1,
                handed_over_from=meeting.handed_over_from or former,
            )
        except AppError:
            continue
        await history.note(
            session,
            deals[meeting.deal_id],
            f"meeting {meeting.id} handed over from rep {former} to rep {rep_id}",
            key=f"meeting:{meeting.id}:h{meeting.handovers}",
        )


async def handed_over_meetings(
    session: AsyncSession, prospect_id: str, rep_id: str
) -> list[tuple[Deal, Meeting]]:
    """The prospect's scheduled meetings handed over to `rep_id` whose invitations have not
    all started (invites.invite_hand_over clears the mark once they have): each owes the
    prospect and the new rep its update, and the former rep a cancellation. A retried
    hand-over finds them again, the deal since closed or not (a meeting it kept still stands
    in both calendars as the hand-over left it)."""
    found = await session.execute(
        select(Deal, Meeting)
        .join(Meeting, Meeting.deal_id == Deal.id)
        .where(
            Deal.prospect_id == prospect_id,
            Meeting.status == SCHEDULED,
            Meeting.booked_rep_id == rep_id,
            Meeting.handed_over_from.is_not(None),
        )
        .order_by(Meeting.starts_at, Meeting.id)
    )
    return [(deal, meeting) for deal, meeting in found.tuples().all()]


async def run_closed(session: AsyncSession, journey_key: str) -> bool:
    """Whether the journey run's deal is closed: its booking link books nothing more."""
    deal = await find_deal_by_journey(session, journey_key)
    return deal is not None and deal.is_closed


async def _hold_slot(session: AsyncSession, meeting: Meeting, **changes: object) -> None:
    """Write the meeting (with `changes`) in its rep's slot now: the unique index (rep, start)
    of scheduled meetings that hold a slot refuses one another transaction holds, whatever both
    read before. The changes are made inside the savepoint: begin_nested() flushes what is
    pending before it, where a refusal would spoil the whole transaction."""
    at = changes.get("starts_at", meeting.starts_at)  # the savepoint's rollback expires it
    try:
        async with session.begin_nested():
            for name, value in changes.items():
                setattr(meeting, name, value)
            session.add(meeting)
    except IntegrityError as err:
        raise slot_taken(cast(datetime, at)) from err


def slot_taken(starts_at: datetime, overlaps: Booked | None = None) -> AppError:
    """`overlaps`: the meeting in the way, when known."""
    if overlaps is None:
        message = f"the slot at {starts_at.isoformat()} was booked meanwhile"
        return conflict("slot_taken", message, [{"field": "slot", "problem": "taken"}])
    meeting_id, other, minutes = overlaps
    message = (
        f"{starts_at.isoformat()} overlaps meeting {meeting_id} of the rep's "
        f"({other.isoformat()}, {minutes} minutes)"
    )
    detail = {"field": "starts_at", "problem": "overlaps", "meeting_id": meeting_id}
    return conflict("slot_taken", message, [detail])


def _meetings_rep(deal_rep: str | None, booked_rep: str | None) -> str | None:
    """The rep whose calendar a change of the meeting is checked against and held in: the deal's
    (who runs it, and whose name its invitation carries), also when the prospect was reassigned
    after it was booked into another rep's slot."""
    return deal_rep or booked_rep


async def _calendar_of(session: AsyncSession, deal_id: str, meeting_id: str) -> str | None:
    """_meetings_rep, read unlocked (the lock order is calendar, then deal): columns only, so
    the locked read that follows loads the deal as it is then."""
    found = await session.execute(
        select(Deal.rep_id, Meeting.booked_rep_id)
        .join(Deal, Deal.id == Meeting.deal_id)
        .where(Meeting.id == meeting_id, Meeting.deal_id == deal_id)
    )
    row = found.first()
    return None if row is None else _meetings_rep(row[0], row[1])


async def _meeting(
    session: AsyncSession, deal_id: str, meeting_id: str, *, closed_too: bool = False
) -> tuple[Deal, Meeting]:
    """`closed_too`: a closed deal's meeting as well (its cancellation)."""
    deal = await get_deal(session, deal_id, lock=True)
    meeting = await session.get(Meeting, meeting_id)
    if meeting is None or meeting.deal_id != deal.id:
        raise not_found("meeting", meeting_id)
    if not (closed_too and deal.is_closed):
        # the journey of a closed deal has decided it: nobody would act on a move or a mark
        require_stage(deal, CHANGE_STAGES, "changing a meeting")
    return deal, meeting


def _refuse(meeting: Meeting, action: str) -> None:
    raise conflict(
        "invalid_meeting_state",
        f"meeting {meeting.id} is {meeting.status}: it cannot be {action}",
        [{"field": "status", "problem": meeting.status}],
    )


async def reschedule(
    session: AsyncSession, deal_id: str, meeting_id: str, starts_at: datetime
) -> tuple[Deal, Meeting, bool]:
    """(deal, meeting, changed): moving a meeting to the time it already has changes nothing.
    The meeting's hold moves with it (one scheduled before meetings held slots takes one now)."""
    await hold_calendar(session, await _calendar_of(session, deal_id, meeting_id))
    deal, meeting = await _meeting(session, deal_id, meeting_id)
    if meeting.status != SCHEDULED:
        _refuse(meeting, "rescheduled")
    if meeting.starts_at == starts_at:
        return deal, meeting, False
    old, rep_id = meeting.starts_at, _meetings_rep(deal.rep_id, meeting.booked_rep_id)
    # not onto another meeting of the rep's (the change is flushed inside the hold's savepoint);
    # over its own old time is fine
    await _refuse_overlap(session, rep_id, starts_at, meeting.duration_minutes, meeting.id)
    await _hold_slot(
        session, meeting, starts_at=starts_at, revision=meeting.revision + 1, booked_rep_id=rep_id
    )
    await history.note(
        session,
        deal,
        f"meeting {meeting.id} moved from {old.isoformat()} to {starts_at.isoformat()}",
        key=f"meeting:{meeting.id}:r{meeting.revision}",
    )
    return deal, meeting, True


async def cancel(
    session: AsyncSession, deal_id: str, meeting_id: str, reason: str
) -> tuple[Deal, Meeting]:
    """Also on a closed deal: its meeting still held the rep's slot and the prospect's calendar
    event, and only a cancellation frees them."""
    deal, meeting = await _meeting(session, deal_id, meeting_id, closed_too=True)
    if meeting.status == CANCELLED:
        return deal, meeting  # a retry: answer (and signal) again
    if meeting.status != SCHEDULED:
        _refuse(meeting, "cancelled")
    meeting.status = CANCELLED
    meeting.cancel_reason = reason or None
    await history.note(
        session,
        deal,
        f"meeting {meeting.id} cancelled" + (f": {reason}" if reason else ""),
        key=f"meeting:{meeting.id}:cancelled",
    )
    return deal, meeting


async def mark(
    session: AsyncSession, deal_id: str, meeting_id: str, outcome: Outcome
) -> tuple[Deal, Meeting]:
    """Held or no-show, only once the meeting has started."""
    deal, meeting = await _meeting(session, deal_id, meeting_id)
    if meeting.status == outcome:
        return deal, meeting
    action = "marked held" if outcome == HELD else "marked as a no-show"
    if meeting.status != SCHEDULED:
        _refuse(meeting, action)
    if meeting.starts_at > utcnow():
        raise conflict(
            "meeting_not_started",
            f"meeting {meeting.id} starts at {meeting.starts_at.isoformat()}: it can be "
            f"{action} once it has started",
            [{"field": "starts_at", "problem": "in the future"}],
        )
    meeting.status = outcome
    await history.note(
        session,
        deal,
        f"meeting {meeting.id} " + ("held" if outcome == HELD else "no-show"),
        key=f"meeting:{meeting.id}:{outcome}",
    )
    return deal, meeting


def scheduled_signal(meeting: Meeting, actor: str) -> MeetingScheduled:
    """The booking as the journey hears it (`meeting_scheduled`)."""
    return MeetingScheduled(
        meeting.id,
        meeting.deal_id,
        meeting.starts_at.isoformat(),
        meeting.title,
        meeting.revision,
        actor,
    )
