"""Outreach's part of a prospect's timeline (merged by prospecting's GET /prospects/{id}/timeline):
enrollment, messages (sent, delivered, bounced, ...), replies, what the person did or had done
about their contact (stops, unsubscribes, complaints, do-not-contact, pauses), rep tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.person_events import SAID, TASK_PROVIDER
from shared.auth import require_api_key
from shared.contracts.names import Sig
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)])
# message statuses worth an event of their own, at the row's last update
OUTCOMES = ("delivered", "bounced", "failed", "suppressed")


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
    e = models.InboxEvent
    inbound = (
        await session.scalars(
            select(e).where(
                e.prospect_id == prospect_id,
                # a provider's complaint, unsubscribe or hard bounce, by whatever name it
                # gives them, is an event that stops the journey; a rep's "not interested"
                # stops it too, and is its task's completion above
                or_(e.kind.in_(SAID), e.signal_name == Sig.STOP_CADENCE),
                e.provider != TASK_PROVIDER,
            )
        )
    ).all()
    for event in inbound:
        found.append(
            _event(
                event.created_at,
                f"inbound.{event.kind}",
                _summary(event),
                event_id=event.id,
                provider=event.provider,
            )
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


def _summary(event: models.InboxEvent) -> str:
    said = SAID.get(event.kind)
    if said is not None:
        return said
    reason = (event.signal_payload or {}).get("reason") or event.kind
    return (
        f"{event.provider} reported {event.kind.removeprefix('email_')}: journey stopped ({reason})"
    )


@router.get("/internal/prospects/{prospect_id}/timeline", tags=["timeline"])
async def prospect_timeline(prospect_id: str, session: Session) -> list[dict[str, Any]]:
    """This service's events about the prospect, in no particular order."""
    return await events(session, prospect_id)
