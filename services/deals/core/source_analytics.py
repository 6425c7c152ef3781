"""Deals by prospect source in a period: how many, how many booked a meeting, how many were won.

The referrals service compares referred prospects with cold ones from this (over HTTP: it never
reads the deals database).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.schemas import SourceCounts
from services.deals.models import Deal, Meeting
from shared.contracts.journey import Stage


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
