"""Objection responses ranked by what worked, from the outcomes the reps recorded.

A response "worked" when the rep said it resolved the objection and the deal was later won:
that count ranks the responses offered next time, then the resolved count, then playbook order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import Deal, Objection, ObjectionCategory, ObjectionOutcome
from services.deals.playbook import matching as pb
from shared.contracts.journey import Stage


@dataclass(frozen=True)
class ResponseStats:
    response: str
    used: int
    resolved: int
    won: int  # resolved, and the deal was won

    @property
    def resolution_rate(self) -> float:
        return round(self.resolved / self.used, 4) if self.used else 0.0


def responses_for(entry: ObjectionCategory | None, stage: str | None) -> list[str]:
    """The stage's prepared responses first, then the general ones, without duplicates."""
    if entry is None:
        return []
    staged = (entry.stage_answers or {}).get(stage or "", [])
    return pb.clean_phrases([*staged, *entry.answers], collapse=False)


def all_responses(entry: ObjectionCategory) -> list[str]:
    staged = [a for answers in (entry.stage_answers or {}).values() for a in answers]
    return pb.clean_phrases([*entry.answers, *staged], collapse=False)


def rank(responses: Sequence[str], stats: dict[str, ResponseStats]) -> list[ResponseStats]:
    rows = [stats.get(r) or ResponseStats(r, 0, 0, 0) for r in responses]
    order = {r: i for i, r in enumerate(responses)}
    return sorted(rows, key=lambda s: (-s.won, -s.resolved, order[s.response]))


async def response_stats(
    session: AsyncSession, category: str | None = None, segment: str | None = None
) -> dict[tuple[str, str], ResponseStats]:
    """(category, response) -> how it fared, over every recorded outcome (of the segment's deals
    when one is given)."""
    resolved = case((ObjectionOutcome.resolved, 1), else_=0)
    won = case((and_(ObjectionOutcome.resolved, Deal.stage == Stage.WON), 1), else_=0)
    stmt = (
        select(
            Objection.category,
            ObjectionOutcome.response,
            func.count(),
            func.sum(resolved),
            func.sum(won),
        )
        .join(Objection, Objection.id == ObjectionOutcome.objection_id)
        .join(Deal, Deal.id == Objection.deal_id)
        .group_by(Objection.category, ObjectionOutcome.response)
    )
    if category is not None:
        stmt = stmt.where(Objection.category == category)
    if segment is not None:
        stmt = stmt.where(Deal.segment == segment)
    rows = (await session.execute(stmt)).all()
    return {
        (cat, resp): ResponseStats(resp, int(used), int(res or 0), int(w or 0))
        for cat, resp, used, res, w in rows
    }


async def ranked_responses(
    session: AsyncSession, entry: ObjectionCategory | None, category: str, stage: str | None
) -> list[ResponseStats]:
    stats = await response_stats(session, category)
    by_response = {resp: s for (_, resp), s in stats.items()}
    return rank(responses_for(entry, stage), by_response)


async def best_response(session: AsyncSession, category: str, stage: str | None) -> str:
    """The response ranked first for the category at that stage; "" when none is prepared."""
    entry = await find_entry(session, category)
    ranked = await ranked_responses(session, entry, category, stage)
    return ranked[0].response if ranked else ""


async def find_entry(session: AsyncSession, category: str) -> ObjectionCategory | None:
    stmt = select(ObjectionCategory).where(ObjectionCategory.category == category)
    return (await session.execute(stmt)).scalar_one_or_none()
