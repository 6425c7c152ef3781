"""Objection responses ranked by what worked, the reps' outcomes, and objection analytics.

A response "worked" when the rep said it resolved the objection and the deal was later won:
that count ranks the responses offered next time, then the resolved count, then playbook order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import Deal, Objection, ObjectionCategory, ObjectionOutcome
from services.deals.playbook import matching as pb
from shared.contracts.journey import Stage
from shared.errors import invalid, not_found

STAGE_ORDER = {s: i for i, s in enumerate((Stage.PRESENTING, Stage.OBJECTIONS, Stage.CLOSING))}


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
    session: AsyncSession, category: str | None = None
) -> dict[tuple[str, str], ResponseStats]:
    """(category, response) -> how it fared, over every recorded outcome."""
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


async def record_outcome(
    session: AsyncSession, objection_id: str, response: str, resolved: bool
) -> tuple[Objection, ObjectionOutcome]:
    """One outcome per (objection, response); recording it again replaces the verdict."""
    objection = await session.get(Objection, objection_id)
    if objection is None:
        raise not_found("objection", objection_id)
    stmt = select(ObjectionCategory).where(ObjectionCategory.category == objection.category)
    entry = (await session.execute(stmt)).scalar_one_or_none()
    allowed = all_responses(entry) if entry is not None else []
    text = response.strip()
    if text not in allowed:
        raise invalid(
            "response",
            f"not a prepared response of {objection.category!r}; prepared: "
            + (" | ".join(allowed) or "none"),
        )
    key = hashlib.sha256(text.encode()).hexdigest()
    stmt_o = select(ObjectionOutcome).where(
        ObjectionOutcome.objection_id == objection.id, ObjectionOutcome.response_key == key
    )
    outcome = (await session.execute(stmt_o)).scalar_one_or_none()
    if outcome is None:
        outcome = ObjectionOutcome(objection_id=objection.id, response_key=key, response=text)
        session.add(outcome)
    outcome.resolved = resolved
    await session.flush()
    return objection, outcome


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
    by_segment = [Counted(seg, cat, n) for seg, cat, n in await session.execute(seg_stmt)]
    by_segment.sort(key=lambda c: (c.group, -c.count, c.category))
    stats = await response_stats(session)
    responses = sorted(
        stats.items(), key=lambda kv: (kv[0][0], -kv[1].resolution_rate, -kv[1].used, kv[0][1])
    )
    return Analytics(by_stage, by_segment, [(cat, s) for (cat, _), s in responses])
