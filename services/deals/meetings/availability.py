"""Reps' availability and the free slots a booking link offers (issue 14).

A rep takes meetings on the given weekdays between `start` and `end` in their own zone. Slots
follow each other from `start` every meeting length + buffer of elapsed time (on the day the
clock changes too: a window over the skipped hour is an hour shorter, one over the repeated hour
an hour longer, and no two slots overlap); a slot is free when it starts at
least `min_notice` from now, no later than `days_ahead` days from today (the rep's today), and
neither it nor the buffer around it overlaps one of the rep's scheduled meetings (with the same
buffer around that meeting). Pure functions of their inputs, so the page and the booking check
compute the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.meetings.schemas import MAX_MEETING_MINUTES
from services.deals.models import Deal, Meeting, RepAvailability
from shared.db import hold_lock, utcnow
from shared.errors import not_found

SCHEDULED = "scheduled"
# a meeting that started longer than this before a time has ended by then
LONGEST_MEETING = timedelta(minutes=MAX_MEETING_MINUTES)
Busy = tuple[datetime, datetime]


class Booked(NamedTuple):
    """A scheduled meeting in a rep's calendar."""

    meeting_id: str
    starts_at: datetime
    minutes: int


@dataclass(frozen=True)
class Hours:
    timezone: str
    days: Sequence[int]
    start_minute: int
    end_minute: int
    meeting_minutes: int
    buffer_minutes: int
    min_notice_minutes: int
    days_ahead: int

    @classmethod
    def of(cls, row: RepAvailability) -> Hours:
        return cls(
            row.timezone,
            tuple(row.days),
            row.start_minute,
            row.end_minute,
            row.meeting_minutes,
            row.buffer_minutes,
            row.min_notice_minutes,
            row.days_ahead,
        )


def _at(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """The instant (UTC) the rep's clock reads `minute` on `day`, as RFC 5545 reads local times
    (fold=0): one inside the hour skipped when the clock springs forward is shifted forward by
    the gap, one the clock shows twice when it falls back is its first occurrence."""
    return datetime.combine(day, time(minute // 60, minute % 60), zone).astimezone(UTC)


def free_slots(hours: Hours, busy: Sequence[Busy], now: datetime) -> list[datetime]:
    """The free slots' starts (UTC), earliest first."""
    zone = ZoneInfo(hours.timezone)
    length = timedelta(minutes=hours.meeting_minutes)
    buffer = timedelta(minutes=hours.buffer_minutes)
    earliest = now + timedelta(minutes=hours.min_notice_minutes)
    today = now.astimezone(zone).date()
    out: list[datetime] = []
    for offset in range(hours.days_ahead + 1):
        day = today + timedelta(days=offset)
        if day.weekday() not in hours.days:
            continue
        # stepped in UTC, in elapsed time: wall-clock steps in the zone land twice on one instant
        # (or on none) where the clock changes, and overlap there
        slot, end = _at(day, hours.start_minute, zone), _at(day, hours.end_minute, zone)
        while slot + length <= end:
            taken = any(
                slot < b_end + buffer and b_start - buffer < slot + length
                for b_start, b_end in busy
            )
            if slot >= earliest and not taken:
                out.append(slot)
            slot += length + buffer
    return out


async def get_hours(session: AsyncSession, rep_id: str) -> RepAvailability:
    row = await session.get(RepAvailability, rep_id)
    if row is None:
        raise not_found("availability", rep_id)
    return row


async def set_hours(
    session: AsyncSession, rep_id: str, values: dict[str, object]
) -> RepAvailability:
    """Replace the rep's hours (the first time, insert them). Under the calendar's lock: two
    first requests at once both found no row and both inserted, the second a 500."""
    await hold_calendar(session, rep_id)
    row = await session.get(RepAvailability, rep_id, populate_existing=True)
    if row is None:
        row = RepAvailability(rep_id=rep_id, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    await session.flush()
    return row


async def hold_calendar(session: AsyncSession, rep_id: str | None) -> None:
    """Serialise the changes to one rep's calendar until the transaction ends (on PostgreSQL a
    transaction-level advisory lock keyed by the rep, so a rep without hours is covered too;
    SQLite has one writer anyway): a change then reads the rep's meetings after any meeting
    scheduled, moved or booked before it committed, so it never lands on (or next to) one,
    whatever their starts. Every path takes it before the deal's lock."""
    if rep_id:
        await hold_lock(session, f"closeflow:calendar:{rep_id}")


def _scheduled_of(rep_id: str, since: datetime, until: datetime) -> Select[str, datetime, int]:
    """The rep's scheduled meetings starting in [since, until]: those booked into their slots and
    those of their deals."""
    return (
        select(Meeting.id, Meeting.starts_at, Meeting.duration_minutes)
        .join(Deal, Deal.id == Meeting.deal_id)
        .where(
            Meeting.status == SCHEDULED,
            or_(Meeting.booked_rep_id == rep_id, Deal.rep_id == rep_id),
            Meeting.starts_at >= since,
            Meeting.starts_at <= until,
        )
    )


async def busy_times(session: AsyncSession, rep_id: str, until: datetime) -> list[Busy]:
    """The rep's scheduled meetings (_scheduled_of) from a day ago."""
    rows = await session.execute(_scheduled_of(rep_id, utcnow() - timedelta(days=1), until))
    return [(start, start + timedelta(minutes=minutes)) for _, start, minutes in rows]


async def overlapping(
    session: AsyncSession, rep_id: str, busy: Busy, moving: str | None = None
) -> Booked | None:
    """A scheduled meeting of the rep's (id, start, minutes) that overlaps `busy`, other than the
    one `moving` (free to overlap its own old time); one ending as `busy` starts does not. Read
    under hold_calendar, so nothing committed meanwhile escapes it."""
    start, end = busy
    rows = await session.execute(_scheduled_of(rep_id, start - LONGEST_MEETING, end))
    for meeting_id, other, minutes in rows:
        if meeting_id != moving and other < end and start < other + timedelta(minutes=minutes):
            return Booked(meeting_id, other, minutes)
    return None


async def open_slots(session: AsyncSession, row: RepAvailability) -> list[datetime]:
    now = utcnow()
    hours = Hours.of(row)
    busy = await busy_times(session, row.rep_id, now + timedelta(days=hours.days_ahead + 2))
    return free_slots(hours, busy, now)


async def booked_by(session: AsyncSession, journey_key: str, at: datetime) -> bool:
    """Whether the journey run's deal has its meeting at `at` (booked through the link), in
    whichever rep's calendar it is now (the deal may have been handed to another rep)."""
    found = await session.scalar(
        select(Meeting.id)
        .join(Deal, Deal.id == Meeting.deal_id)
        .where(
            Deal.journey_id == journey_key,
            Meeting.starts_at == at,
            Meeting.status == SCHEDULED,
        )
    )
    return found is not None
