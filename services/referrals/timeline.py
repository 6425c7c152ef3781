"""Referrals' part of a prospect's timeline (merged by prospecting's GET /prospects/{id}/timeline):
referral asks sent to them, referrals they made, and the referral that brought them in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.referrals.models import Referral, ReferralAsk
from shared.auth import require_api_key
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)])


def _event(at: datetime, kind: str, summary: str, **data: Any) -> dict[str, Any]:
    return {"at": at, "service": "referrals", "kind": kind, "summary": summary, "data": data}


async def events(session: AsyncSession, prospect_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    asks = (
        await session.scalars(
            select(ReferralAsk).where(ReferralAsk.client_prospect_id == prospect_id)
        )
    ).all()
    for ask in asks:
        found.append(_event(ask.created_at, "referral.asked", "asked for referrals", ask_id=ask.id))
    made = (
        await session.scalars(select(Referral).where(Referral.referrer_prospect_id == prospect_id))
    ).all()
    for r in made:
        name = f"{r.first_name} {r.last_name}".strip()
        found.append(
            _event(
                r.created_at,
                "referral.made",
                f"referred {name} ({r.status})",
                referral_id=r.id,
                referred_prospect_id=r.prospect_id,
            )
        )
    brought = (
        await session.scalars(select(Referral).where(Referral.prospect_id == prospect_id))
    ).all()
    for r in brought:
        found.append(
            _event(
                r.created_at,
                "referral.received",
                "referred by a client",
                referral_id=r.id,
                referrer_prospect_id=r.referrer_prospect_id,
            )
        )
    return found


@router.get("/internal/prospects/{prospect_id}/timeline", tags=["timeline"])
async def prospect_timeline(prospect_id: str, session: Session) -> list[dict[str, Any]]:
    """This service's events about the prospect, in no particular order."""
    return await events(session, prospect_id)
