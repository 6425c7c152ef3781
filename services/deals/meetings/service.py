"""A meeting's life: scheduled (through the qualification gate when the deal is still
qualifying), then rescheduled, cancelled, held or missed (no-show). Use cases take a session and
never commit.

scheduled -> scheduled (reschedule: revision + 1) | cancelled | held | no_show. Repeating the
last change answers the same meeting again (a client retrying after a failed signal); any other
move out of a final state is a 409 that names the state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core import history
from services.deals.core.service import QUALIFIED_STAGES, get_deal, require_stage
from services.deals.models import Deal, Meeting
from services.deals.qualification.gate import pass_gate
from shared.contracts.journey import Stage
from shared.db import utcnow
from shared.errors import conflict, not_found

SCHEDULED = "scheduled"
CANCELLED = "cancelled"
Outcome = Literal["held", "no_show"]
HELD: Final[Outcome] = "held"
NO_SHOW: Final[Outcome] = "no_show"
MEETING_STAGES = QUALIFIED_STAGES


async def schedule(
    session: AsyncSession, deal_id: str, starts_at: datetime, title: str, duration_minutes: int
) -> tuple[Deal, Meeting, bool]:
    """(deal, meeting, passed_gate): passed_gate when the meeting took the deal out of
    qualifying, which the journey must hear as a qualification first."""
    deal = await get_deal(session, deal_id, lock=True)
    passed_gate = deal.stage == Stage.QUALIFYING
    if passed_gate:
        # a meeting means presenting: only through the gate
        await pass_gate(session, deal, Stage.PRESENTING)
    require_stage(deal, MEETING_STAGES, "scheduling a meeting")
    meeting = Meeting(
        deal_id=deal.id,
        starts_at=starts_at,
        title=title,
        duration_minutes=duration_minutes,
        status=SCHEDULED,
    )
    session.add(meeting)
    await session.flush()
    return deal, meeting, passed_gate


async def _meeting(session: AsyncSession, deal_id: str, meeting_id: str) -> tuple[Deal, Meeting]:
    deal = await get_deal(session, deal_id, lock=True)
    meeting = await session.get(Meeting, meeting_id)
    if meeting is None or meeting.deal_id != deal.id:
        raise not_found("meeting", meeting_id)
    # the journey of a closed deal has ended: nobody would act on the change
    require_stage(deal, MEETING_STAGES, "changing a meeting")
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
    """(deal, meeting, changed): moving a meeting to the time it already has changes nothing."""
    deal, meeting = await _meeting(session, deal_id, meeting_id)
    if meeting.status != SCHEDULED:
        _refuse(meeting, "rescheduled")
    if meeting.starts_at == starts_at:
        return deal, meeting, False
    old = meeting.starts_at
    meeting.starts_at = starts_at
    meeting.revision += 1
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
    deal, meeting = await _meeting(session, deal_id, meeting_id)
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
