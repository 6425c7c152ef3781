"""Whether a rep takes meetings (reps live in prospecting, which tells deals through its outbox
on every deactivation and reactivation: POST /internal/reps/{id}/standing).

A prospect not handed over when their rep was deactivated (their journey was over, or no active
rep had room) keeps links naming that rep: while the rep is away those offer no times and book
nothing, and the rep's availability offers no slots. The newest word wins: the outbox retries
until deals answers, so an older word may arrive after a newer one and must change nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.meetings.availability import hold_calendar
from services.deals.models import RepStanding


async def record(
    session: AsyncSession, rep_id: str, active: bool, changed_at: datetime
) -> RepStanding:
    """Keep prospecting's word unless a newer one is kept already. Under the rep's calendar lock:
    a booking reading the standing meanwhile commits first or sees this one, and two first words
    at once do not both insert."""
    await hold_calendar(session, rep_id)
    row = await session.get(RepStanding, rep_id, populate_existing=True)
    if row is None:
        row = RepStanding(rep_id=rep_id, active=active, changed_at=changed_at)
        session.add(row)
    elif changed_at > row.changed_at:
        row.active, row.changed_at = active, changed_at
    await session.flush()
    return row


async def takes_meetings(session: AsyncSession, rep_id: str) -> bool:
    """False once prospecting said the rep was deactivated (and not reactivated since)."""
    active = await session.scalar(select(RepStanding.active).where(RepStanding.rep_id == rep_id))
    return active is not False
