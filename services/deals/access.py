"""Whose is it: the rep each deals id belongs to, for rep keys (shared/access.py)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select

from services.deals.models import Deal, Objection
from shared.access import Resolver


async def deal_rep(request: Request, deal_id: str) -> str | None:
    async with request.app.state.sessions() as session:
        rep_id: str | None = await session.scalar(select(Deal.rep_id).where(Deal.id == deal_id))
        return rep_id


async def prospect_rep(request: Request, prospect_id: str) -> str | None:
    """The rep on the prospect's latest deal: deals knows a prospect through its deals only."""
    async with request.app.state.sessions() as session:
        rep_id: str | None = await session.scalar(
            select(Deal.rep_id)
            .where(Deal.prospect_id == prospect_id)
            .order_by(Deal.created_at.desc(), Deal.id.desc())
            .limit(1)
        )
        return rep_id


async def objection_rep(request: Request, objection_id: str) -> str | None:
    async with request.app.state.sessions() as session:
        rep_id: str | None = await session.scalar(
            select(Deal.rep_id)
            .join(Objection, Objection.deal_id == Deal.id)
            .where(Objection.id == objection_id)
        )
        return rep_id


RESOLVERS: dict[str, Resolver] = {
    "deal_id": deal_rep,
    "prospect_id": prospect_rep,
    "objection_id": objection_rep,
}
