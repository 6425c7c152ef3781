"""Deals by prospect source in a period: how many, how many booked a meeting, how many were won.

The referrals service compares referred prospects with cold ones from this (over HTTP: it never
reads the deals database).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import Deal, Meeting
from shared.auth import ApiKey
from shared.contracts.journey import Stage
from shared.db import Session
from shared.errors import invalid

router = APIRouter(prefix="/analytics", tags=["analytics"])
DEFAULT_PERIOD = timedelta(days=30)


class SourceCounts(BaseModel):
    source: str
    deals: int = Field(description="deals opened in the period (prospects that reached qualifying)")
    with_meeting: int = Field(description="of those, deals with a meeting booked (not cancelled)")
    won: int = Field(description="of those, deals closed won")


class SourceAnalytics(BaseModel):
    period_from: datetime = Field(serialization_alias="from")
    period_to: datetime = Field(serialization_alias="to")
    sources: list[SourceCounts]


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


@router.get("/sources", response_model=SourceAnalytics, response_model_by_alias=True)
async def source_analytics(
    _: ApiKey,
    session: Session,
    start: Annotated[
        datetime | None, Query(alias="from", description="ISO time, inclusive")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="ISO time, exclusive")] = None,
) -> SourceAnalytics:
    """Deals opened in [from, to) per prospect source, with meetings booked and wins."""
    start, end = period(start, end)
    return SourceAnalytics(
        period_from=start, period_to=end, sources=await counts_by_source(session, start, end)
    )
