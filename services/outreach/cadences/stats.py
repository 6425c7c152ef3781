"""Numbers per cadence step and A/B variant: sends, deliveries, bounces, replies."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.cadences import service
from shared.auth import require_api_key
from shared.csv_export import csv_response, one_page
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["cadences"])
SENT = ("submitted", "delivered", "bounced")


@router.get("/cadences/{cadence_id}/stats")
async def cadence_stats(cadence_id: str, session: Session) -> dict[str, Any]:
    return {"cadence_id": cadence_id, "steps": await step_stats(session, cadence_id)}


STEP_COLUMNS = (
    "touch",
    "channel",
    "variant",
    "sent",
    "delivered",
    "bounced",
    "suppressed",
    "replied",
    "reply_rate",
)


@router.get("/cadences/{cadence_id}/stats.csv", response_class=StreamingResponse)
async def cadence_stats_csv(cadence_id: str, session: Session) -> StreamingResponse:
    """The same numbers as CSV (issue 14: exports), one row per step, channel and variant."""
    steps = await step_stats(session, cadence_id)
    rows = [[step[c] for c in STEP_COLUMNS] for step in steps]
    return csv_response(f"cadence-{cadence_id}-stats.csv", STEP_COLUMNS, one_page(rows))


def touch_order(touch: str) -> tuple[tuple[int, int | str], ...]:
    """A touch key's place in the cadence: its numbers compared as numbers, so step-10 (the
    eleventh touch) comes after step-2 where text order put it third."""
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in re.split(r"(\d+)", touch) if p)


async def step_stats(session: AsyncSession, cadence_id: str) -> list[dict[str, Any]]:
    await service.get_cadence(session, cadence_id)
    m = models.Message
    rows = await session.execute(
        select(
            m.touch_key,
            m.channel,
            m.variant,
            func.count().label("messages"),
            # `failed` before the send (a template, a refused address) has no sent_at: not sent
            func.sum(
                case(
                    (m.status.in_(SENT) | ((m.status == "failed") & m.sent_at.is_not(None)), 1),
                    else_=0,
                )
            ).label("sent"),
            func.sum(case((m.status == "delivered", 1), else_=0)).label("delivered"),
            func.sum(case((m.status == "bounced", 1), else_=0)).label("bounced"),
            func.sum(case((m.status == "suppressed", 1), else_=0)).label("suppressed"),
            func.sum(case((m.replied_at.is_not(None), 1), else_=0)).label("replied"),
        )
        .where(m.cadence_id == cadence_id, m.kind == "cadence")
        .group_by(m.touch_key, m.channel, m.variant)
    )
    items = []
    for row in sorted(rows, key=lambda r: (touch_order(r.touch_key), r.channel, r.variant)):
        sent = int(row.sent or 0)
        replied = int(row.replied or 0)
        items.append(
            {
                "touch": row.touch_key,
                "channel": row.channel,
                "variant": row.variant or None,
                "sent": sent,
                "delivered": int(row.delivered or 0),
                "bounced": int(row.bounced or 0),
                "suppressed": int(row.suppressed or 0),
                "replied": replied,
                "reply_rate": round(replied / sent, 4) if sent else None,
            }
        )
    return items
