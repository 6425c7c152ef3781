"""One chronological view of a prospect across the four services.

Prospecting contributes the stage changes; outreach, deals and referrals each answer
GET /internal/prospects/{id}/timeline with their own events (messages, replies, tasks;
meetings, objections, deal outcomes; referral asks and referrals). The calls run in parallel
with a short timeout; a service that does not answer is listed in `sources` with the error and
`complete` is false, so a gap is never mistaken for "nothing happened".
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import schemas, service
from services.prospecting.outbox import TARGETS, service_urls
from shared.ids import id_path
from shared.settings import Settings

TIMEOUT_SECONDS = 5.0
_events = TypeAdapter(list[schemas.TimelineEvent])


async def _own_events(session: AsyncSession, prospect_id: str) -> list[schemas.TimelineEvent]:
    events = []
    for row in await service.stage_history(session, prospect_id):
        if row.from_stage is None:
            summary = f"created ({row.cause}) in {row.to_stage}"
            kind = "prospect.created"
        else:
            summary = f"{row.from_stage} -> {row.to_stage} ({row.cause})"
            kind = "stage.changed"
        events.append(
            schemas.TimelineEvent(
                at=row.at,
                service="prospecting",
                kind=kind,
                summary=summary,
                data={
                    "from": row.from_stage,
                    "to": row.to_stage,
                    "cause": row.cause,
                    "actor": row.actor,
                },
            )
        )
    return events


async def _fetch(
    http: httpx.AsyncClient, target: str, base_url: str, prospect_id: str
) -> tuple[schemas.SourceStatus, list[schemas.TimelineEvent]]:
    try:
        url = base_url.rstrip("/") + id_path("/internal/prospects/{id}/timeline", id=prospect_id)
        response = await http.get(url, timeout=TIMEOUT_SECONDS)
        response.raise_for_status()
        events = _events.validate_python(response.json())
    except (httpx.HTTPError, ValueError, ValidationError) as err:
        error = f"{type(err).__name__}: {err}"[:300]
        return schemas.SourceStatus(service=target, ok=False, error=error), []
    return schemas.SourceStatus(service=target, ok=True, events=len(events)), events


async def timeline(
    session: AsyncSession, http: httpx.AsyncClient, settings: Settings, prospect_id: str
) -> schemas.Timeline:
    own = await _own_events(session, prospect_id)  # 404 for an unknown prospect
    urls = service_urls(settings)
    fetched = await asyncio.gather(*(_fetch(http, t, urls[t], prospect_id) for t in TARGETS))
    sources = [schemas.SourceStatus(service="prospecting", ok=True, events=len(own))]
    events = list(own)
    for status, found in fetched:
        sources.append(status)
        events.extend(found)
    events.sort(key=lambda e: (_utc(e.at), e.service, e.kind))
    return schemas.Timeline(
        prospect_id=prospect_id,
        complete=all(s.ok for s in sources),
        sources=sources,
        events=events,
    )


def _utc(at: datetime) -> float:
    return at.timestamp()
