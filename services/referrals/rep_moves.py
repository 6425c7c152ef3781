"""Prospecting's reassignment reaches the referral asks: POST /internal/prospects/{id}/rep.

An ask's rep_id is whose the client is (rep keys see and act on their own asks and referrals
through it), so it follows the client to their new rep. Called by prospecting's outbox relay
(retried until 2xx); setting the same rep again changes nothing.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Depends
from sqlalchemy import CursorResult, update

from services.referrals.models import ReferralAsk
from shared.auth import require_api_key
from shared.db import Session
from shared.rep_moves import RepMove, RepMoved

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/internal/prospects/{prospect_id}/rep", tags=["asks"])
async def move_rep(prospect_id: str, body: RepMove, session: Session) -> RepMoved:
    moved = await session.execute(
        update(ReferralAsk)
        .where(
            ReferralAsk.client_prospect_id == prospect_id,
            ReferralAsk.rep_id.is_distinct_from(body.rep_id),
        )
        .values(rep_id=body.rep_id)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    count = int(cast(CursorResult[Any], moved).rowcount or 0)
    return RepMoved(prospect_id=prospect_id, rep_id=body.rep_id, moved=count)
