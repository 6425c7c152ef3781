"""Deals' part of a right-to-erasure request: the prospect's deals and everything hanging off
them (qualification answers, meetings, objections and their outcomes, history, and any table
added later with a foreign key to those), deleted. Called by prospecting's outbox relay until
it answers 2xx; a repeat finds nothing left and answers the same."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from services.deals.models import Deal
from shared.auth import require_api_key
from shared.db import Session
from shared.erasure import ErasureOrder, ErasureResult, delete_tree

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/internal/erasures", tags=["erasure"])
async def erasure_order(order: ErasureOrder, session: Session) -> ErasureResult:
    table = Deal.__table__
    deleted = await delete_tree(session, table, table.c.prospect_id == order.prospect_id)  # type: ignore[arg-type]
    await session.commit()
    return ErasureResult(service="deals", erasure_id=order.erasure_id, deleted=deleted)
