"""Deals' part of a prospect's timeline (merged by prospecting's GET /prospects/{id}/timeline):
deals opened and closed, their stage changes, meetings and objections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.deals import models


def _event(at: datetime, kind: str, summary: str, **data: Any) -> dict[str, Any]:
    return {"at": at, "service": "deals", "kind": kind, "summary": summary, "data": data}


async def events(session: AsyncSession, prospect_id: str) -> list[dict[str, Any]]:
    deals = (
        await session.scalars(
            select(models.Deal)
            .where(models.Deal.prospect_id == prospect_id)
            .options(
                selectinload(models.Deal.meetings),
                selectinload(models.Deal.objections),
                selectinload(models.Deal.history),
            )
        )
    ).all()
    found: list[dict[str, Any]] = []
    for deal in deals:
        ids = {"deal_id": deal.id}
        found.append(_event(deal.created_at, "deal.opened", f"deal opened ({deal.source})", **ids))
        for h in deal.history:
            found.append(
                _event(
                    h.at,
                    "deal.stage",
                    f"deal {h.from_stage or 'new'} -> {h.to_stage} ({h.cause})",
                    **ids,
                    to_stage=h.to_stage,
                )
            )
        for m in deal.meetings:
            found.append(
                _event(
                    m.created_at,
                    "meeting.booked",
                    f"meeting {m.title!r} at {m.starts_at.isoformat()} ({m.status})",
                    **ids,
                    meeting_id=m.id,
                    starts_at=m.starts_at.isoformat(),
                    status=m.status,
                )
            )
        for o in deal.objections:
            found.append(
                _event(
                    o.created_at,
                    "objection",
                    f"objection ({o.category}): {o.text[:200]}",
                    **ids,
                    objection_id=o.id,
                    category=o.category,
                )
            )
        if deal.closed_at is not None:
            reason = f": {deal.close_reason}" if deal.close_reason else ""
            found.append(_event(deal.closed_at, "deal.closed", f"deal {deal.stage}{reason}", **ids))
    return found
