"""The deal's history: every stage change and notable event (reminder, escalation) with its cause.

Entries the journey writes carry its key, so a retried activity adds its line once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import Deal, DealHistory
from shared.audit import actor_of
from shared.db import utcnow


def move(deal: Deal, stage: str, cause: str, session: AsyncSession) -> None:
    """Set the deal's stage and record the change (nothing when the stage stays)."""
    if deal.stage == stage:
        return
    session.add(
        DealHistory(
            deal_id=deal.id,
            from_stage=deal.stage,
            to_stage=stage,
            cause=cause,
            actor=actor_of(session),
        )
    )
    deal.stage = stage


def opened(deal: Deal, cause: str, session: AsyncSession) -> None:
    session.add(
        DealHistory(
            deal_id=deal.id,
            from_stage=None,
            to_stage=deal.stage,
            cause=cause,
            actor=actor_of(session),
        )
    )


async def note(
    session: AsyncSession, deal: Deal, cause: str, *, key: str, at: datetime | None = None
) -> bool:
    """An event that changes no stage; False when the key was written before."""
    seen = await session.scalar(select(DealHistory.id).where(DealHistory.key == key))
    if seen is not None:
        return False
    session.add(
        DealHistory(
            deal_id=deal.id,
            key=key,
            from_stage=deal.stage,
            to_stage=deal.stage,
            cause=cause,
            at=at or utcnow(),
            actor=actor_of(session),
        )
    )
    await session.flush()
    return True


async def last_move(session: AsyncSession, deal_id: str) -> DealHistory | None:
    """The deal's latest change of stage (notes leave the stage as it is)."""
    h = DealHistory
    return await session.scalar(
        select(h)
        .where(h.deal_id == deal_id, h.from_stage.is_not(None), h.from_stage != h.to_stage)
        .order_by(h.at.desc(), h.id.desc())
        .limit(1)
    )


async def last_move_cause(session: AsyncSession, deal_id: str) -> str | None:
    """The cause of the deal's latest change of stage."""
    last = await last_move(session, deal_id)
    return None if last is None else last.cause


async def entries(session: AsyncSession, deal_id: str) -> Sequence[DealHistory]:
    stmt = (
        select(DealHistory)
        .where(DealHistory.deal_id == deal_id)
        .order_by(DealHistory.at, DealHistory.id)
    )
    return (await session.execute(stmt)).scalars().all()
