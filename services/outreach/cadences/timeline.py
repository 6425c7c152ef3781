"""Outreach's part of a prospect's timeline (merged by prospecting's GET /prospects/{id}/timeline):
enrollment, messages (sent, delivered, bounced, ...), replies, provider events, rep tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from shared.auth import require_api_key
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)])
# message statuses worth an event of their own, at the row's last update
OUTCOMES = ("delivered", "bounced", "failed", "suppressed")
INBOUND = ("reply", "stop", "unsubscribe", "complaint", "opt_out")


def _event(at: datetime, kind: str, summary: str, **data: Any) -> dict[str, Any]:
    return {"at": at, "service": "outreach", "kind": kind, "summary": summary, "data": data}


async def events(session: AsyncSession, prospect_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    enrollments = await session.scalars(
        select(models.Enrollment)
        .where(models.Enrollment.prospect_id == prospect_id)
        .order_by(models.Enrollment.run)
    )
    for enrollment in enrollments.all():  # one per run of the journey
        found.append(
            _event(
                enrollment.created_at,
                "enrolled",
                f"enrolled in cadence {enrollment.cadence_id} v{enrollment.cadence_version}"
                + (f" (run {enrollment.run}, {enrollment.origin})" if enrollment.run > 1 else ""),
                cadence_id=enrollment.cadence_id,
                run=enrollment.run,
            )
        )
    messages = (
        await session.scalars(
            select(models.Message).where(models.Message.prospect_id == prospect_id)
        )
    ).all()
    for m in messages:
        what = f"{m.channel} {m.touch_key}" + (f": {m.subject}" if m.subject else "")
        ids: dict[str, str | None] = {
            "message_id": m.id,
            "channel": m.channel,
            "touch_key": m.touch_key,
        }
        if m.sent_at is not None:
            found.append(_event(m.sent_at, "message.sent", f"sent {what}", **ids))
        if m.status in OUTCOMES:
            reason = f" ({m.error})" if m.error else ""
            found.append(
                _event(m.updated_at, f"message.{m.status}", f"{m.status} {what}{reason}", **ids)
            )
        if m.replied_at is not None:
            found.append(_event(m.replied_at, "reply", f"replied to {what}", **ids))
    inbound = (
        await session.scalars(
            select(models.InboxEvent).where(
                models.InboxEvent.prospect_id == prospect_id,
                models.InboxEvent.kind.in_(INBOUND),
            )
        )
    ).all()
    for e in inbound:
        # an SMS reply or a STOP matches no message's replied_at: the provider event tells it
        found.append(
            _event(e.created_at, f"inbound.{e.kind}", f"{e.kind} via {e.provider}", event_id=e.id)
        )
    tasks = (
        await session.scalars(
            select(models.RepTask).where(models.RepTask.prospect_id == prospect_id)
        )
    ).all()
    for t in tasks:
        ids = {"task_id": t.id, "task_kind": t.kind, "rep_id": t.rep_id}
        found.append(_event(t.created_at, "task.created", f"task: {t.title}", **ids))
        if t.completed_at is not None:
            outcome = f" ({t.outcome})" if t.outcome else ""
            found.append(
                _event(t.completed_at, "task.completed", f"done: {t.title}{outcome}", **ids)
            )
    return found


@router.get("/internal/prospects/{prospect_id}/timeline", tags=["timeline"])
async def prospect_timeline(prospect_id: str, session: Session) -> list[dict[str, Any]]:
    """This service's events about the prospect, in no particular order."""
    return await events(session, prospect_id)
