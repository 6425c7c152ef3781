"""Deals by prospect source in a period: how many, how many booked a meeting, how many were won.

The referrals service compares referred prospects with cold ones from this (over HTTP: it never
reads the deals database).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.schemas import SourceCounts
from services.deals.models import Deal, Meeting
from shared.contracts.journey import Stage
from shared.errors import invalid

DEFAULT_PERIOD = timedelta(days=30)


def period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[from, to) in UTC; to defaults to now, from to 30 days before to."""
    end = _utc(end) if end else datetime.now(UTC)
    start = _utc(start) if start else end - DEFAULT_PERIOD
    if start >= end:
        raise invalid("from", "must be before to")
    return start, end


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def counts_by_source(
    session: AsyncSession, start: datetime, end: datetime
) -> list[SourceCounts]:
    booked = exists().where(Meeting.deal_id == Deal.id, Meeting.status != "cancelled")
    rows = await session.execute(
        select(
            Deal.source,
            func.count(),
            func.sum(case((booked, 1), else_=0)),
            func.sum(case((Deal.stage == Stage.WON, 1), else_=0)),
        )
        .where(Deal.created_at >= start, Deal.created_at < end)
        .group_by(Deal.source)
        .order_by(Deal.source)
    )
    return [
        SourceCounts(source=source, deals=n, with_meeting=int(met or 0), won=int(won or 0))
        for source, n, met, won in rows.all()
    ]
