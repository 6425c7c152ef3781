"""Whose is it: the rep each referrals id belongs to, for rep keys (shared/access.py)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select

from services.referrals.models import ReferralAsk
from shared.access import Resolver


async def ask_rep(request: Request, ask_id: str) -> str | None:
    async with request.app.state.sessions() as session:
        rep_id: str | None = await session.scalar(
            select(ReferralAsk.rep_id).where(ReferralAsk.id == ask_id)
        )
        return rep_id


async def client_rep(request: Request, prospect_id: str) -> str | None:
    """The rep on the client's latest ask: the rep who won them."""
    async with request.app.state.sessions() as session:
        rep_id: str | None = await session.scalar(
            select(ReferralAsk.rep_id)
            .where(ReferralAsk.client_prospect_id == prospect_id)
            .order_by(ReferralAsk.created_at.desc(), ReferralAsk.id.desc())
            .limit(1)
        )
        return rep_id


RESOLVERS: dict[str, Resolver] = {"ask_id": ask_rep, "prospect_id": client_rep}
