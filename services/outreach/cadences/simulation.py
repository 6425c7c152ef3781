"""The timeline a cadence would follow for a prospect, computed by the code journeys run:
shared.contracts.plan (due times, variants: the workflow's own code) and the send window rules
the send activity applies (services.outreach.cadences.send_window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, field_validator

from services.outreach.cadences import service
from services.outreach.cadences.send_window import next_allowed, zones_for
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
from shared.contracts.journey import CadenceStep
from shared.contracts.plan import personalise, step_due, touch_groups
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["cadences"])


class SimulationIn(BaseModel):
    timezone: str | None = Field(None, description="IANA zone; inferred from phone when missing")
    phone: str | None = Field(None, description="E.164; used to infer the zone")
    start_at: datetime | None = Field(None, description="enrollment time (UTC offset required)")
    version: int | None = Field(None, ge=1)
    prospect_id: str = Field("simulated", description="decides the A/B variants shown")

    @field_validator("start_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a UTC offset, e.g. 2026-12-01T09:00:00-05:00")
        return value


def _local(when: datetime, zone_name: str) -> str:
    zones = zones_for(zone_name)
    return when.astimezone(zones[0]).isoformat() if zones else when.astimezone(UTC).isoformat()


@router.post("/cadences/{cadence_id}/simulate")
async def simulate(cadence_id: str, body: SimulationIn, session: Session) -> dict[str, Any]:
    cadence = await service.cadence_snapshot(session, cadence_id, body.version)
    start = (body.start_at or datetime.now(UTC)).astimezone(UTC)
    zones = zones_for(body.timezone, body.phone)
    zone_name = body.timezone if body.timezone and zones else (zones[0].key if zones else "UTC")
    window = cadence.send_window
    touches = []
    last_due = start
    for index, group in enumerate(touch_groups(cadence.steps)):
        due = step_due(start, group[0], zone_name, window.holidays)
        last_due = due
        sends = []
        for step in personalise(body.prospect_id, index, group):
            at = next_allowed(due, body.timezone, step.channel, window, body.phone)
            sends.append(
                {
                    "channel": step.channel,
                    "variant": step.variant or None,
                    "subject": step.subject,
                    "send_at_utc": at.isoformat(),
                    "send_at_local": _local(at, zone_name),
                    "waits_for_window": at > due,
                }
            )
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
        "timezone_inferred": not body.timezone or not zones or zones[0].key != body.timezone,
        "start_utc": start.isoformat(),
        "touches": touches,
        "nurture_if_no_reply_utc": nurture_at.isoformat(),
    }


class PreviewIn(BaseModel):
    prospect_id: str = Field(min_length=1, max_length=64)
    version: int | None = Field(None, ge=1)


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
