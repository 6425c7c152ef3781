"""The timeline a cadence would follow for a prospect, computed by the code journeys run:
shared.contracts.plan (due times, variants: the workflow's own code) and the send window rules
the send activity applies (services.outreach.cadences.send_window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from services.outreach.cadences import service
from services.outreach.cadences.send_window import next_allowed
from services.outreach.cadences.templates import (
    RenderFailure,
    RenderLimits,
    field_limit,
    limits_from,
    render,
    variables_for,
)
from services.outreach.prospects import ProspectDirectory
from shared.auth import require_api_key
from shared.bounds import INT32_MAX
from shared.contracts.journey import CadenceSnapshot, CadenceStep
from shared.contracts.plan import personalise, step_due, touch_groups
from shared.db import Session
from shared.errors import invalid
from shared.people import TimeZone
from shared.requests import OffsetDatetime, WriteModel
from shared.timezones import prospect_zone

TASK_CHANNELS = frozenset({"call_task", "social_task"})
router = APIRouter(dependencies=[Depends(require_api_key)], tags=["cadences"])


class SimulationIn(WriteModel):
    timezone: TimeZone | None = Field(
        None, max_length=64, description="IANA zone; inferred from phone when missing or empty"
    )
    phone: str | None = Field(None, max_length=64, description="E.164; used to infer the zone")
    start_at: OffsetDatetime | None = Field(
        None, description="enrollment time (UTC offset required)"
    )
    version: int | None = Field(None, ge=1, le=INT32_MAX)
    prospect_id: str = Field(
        "simulated", max_length=64, description="decides the A/B variants shown"
    )


def _local(when: datetime, zone_name: str) -> str:
    return when.astimezone(ZoneInfo(zone_name)).isoformat()


def timeline(
    cadence: CadenceSnapshot,
    start: datetime,
    timezone: str | None,
    phone: str | None,
    prospect_id: str = "simulated",
) -> dict[str, Any]:
    """What a journey enrolled at `start` does if nobody replies, by the journey's own rules:
    due times on the prospect's calendar (shared.timezones.prospect_zone, as the journey's
    input carries it), each channel at its first allowed moment, and a touch never before the
    previous one went (the journey sends its touches one after the other)."""
    resolved = prospect_zone(timezone, phone)
    zone_name, window = resolved.name, cadence.send_window
    touches = []
    last_due = previous_done = start
    for index, group in enumerate(touch_groups(cadence.steps)):
        due = step_due(start, group[0], zone_name, window.holidays)
        last_due = due
        begins = max(due, previous_done)
        sends = []
        for step in personalise(prospect_id, index, group):
            task = step.channel in TASK_CHANNELS
            allowed = next_allowed(begins, timezone, step.channel, window, phone)
            # a rep task is made at once (the journey never waits for it), due when it may reach
            # the prospect: a call within the window and the quiet hours
            at = begins if task else allowed
            previous_done = max(previous_done, at)
            send: dict[str, Any] = {
                "channel": step.channel,
                "variant": step.variant or None,
                "subject": step.subject,
                "send_at_utc": at.isoformat(),
                "send_at_local": _local(at, zone_name),
                "waits_for_window": at > due,
            }
            if task:
                send["task_due_utc"] = allowed.isoformat()
                send["task_due_local"] = _local(allowed, zone_name)
            sends.append(send)
        touches.append(
            {
                "touch": index,
                "due_utc": due.isoformat(),
                "due_local": _local(due, zone_name),
                "sends": sends,
            }
        )
    nurture_at = last_due + timedelta(seconds=cadence.nurture_after_seconds)
    return {
        "cadence_id": cadence.cadence_id,
        "version": cadence.version,
        "timezone": zone_name,
        "timezone_inferred": resolved.source != "explicit",
        "start_utc": start.isoformat(),
        "touches": touches,
        "nurture_if_no_reply_utc": nurture_at.isoformat(),
    }


@router.post("/cadences/{cadence_id}/simulate")
async def simulate(cadence_id: str, body: SimulationIn, session: Session) -> dict[str, Any]:
    cadence = await service.cadence_snapshot(session, cadence_id, body.version)
    start = (body.start_at or datetime.now(UTC)).astimezone(UTC)
    try:
        return timeline(cadence, start, body.timezone, body.phone, body.prospect_id)
    except OverflowError:
        # a start near the calendar's end: the touches or the nurture fall after it
        raise invalid("start_at", "the cadence's timeline from it runs past year 9999") from None


class PreviewIn(WriteModel):
    prospect_id: str = Field(min_length=1, max_length=64)
    version: int | None = Field(None, ge=1, le=INT32_MAX)


@router.post("/cadences/{cadence_id}/preview")
async def preview(
    cadence_id: str, body: PreviewIn, request: Request, session: Session
) -> dict[str, Any]:
    """Every step rendered for a real prospect, with the variant they would get."""
    cadence = await service.cadence_snapshot(session, cadence_id, body.version)
    directory: ProspectDirectory = request.app.state.prospects
    contact = await directory.contact(body.prospect_id)
    values = variables_for(contact, {})
    limits = limits_from(request.app.state.settings)
    touches = []
    for index, group in enumerate(touch_groups(cadence.steps)):
        touches.append(
            {
                "touch": index,
                "steps": [
                    _preview_step(step, values, limits)
                    for step in personalise(contact.prospect_id, index, group)
                ],
            }
        )
    return {"cadence_id": cadence.cadence_id, "version": cadence.version, "touches": touches}


def _preview_step(
    step: CadenceStep, values: dict[str, str], limits: RenderLimits
) -> dict[str, Any]:
    """One step rendered, within the limits a send has; a template that cannot render for this
    prospect shows why instead, as its send would fail."""
    shown: dict[str, Any] = {"channel": step.channel, "variant": step.variant or None}
    subject_limit = field_limit(step.channel, "subject", limits)
    try:
        shown["subject"] = render(step.subject, values, subject_limit) if step.subject else ""
        shown["body"] = render(step.body, values, field_limit(step.channel, "body", limits))
    except RenderFailure as err:
        shown.update(subject="", body="", error=str(err))
    return shown
