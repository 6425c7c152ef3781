"""Prospecting's business gauge on /metrics, read from its database at scrape
(shared/metrics.py): prospects (each with one journey) by their current stage."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting.models import Prospect
from shared.metrics import DbGauge, Rows


async def journeys_by_stage(session: AsyncSession) -> Rows:
    query = select(Prospect.stage, func.count()).group_by(Prospect.stage)
    return [((stage,), float(n)) for stage, n in await session.execute(query)]


GAUGES = (
    DbGauge(
        "journeys", "prospects by the stage their journey is at", journeys_by_stage, ("stage",)
    ),
)
