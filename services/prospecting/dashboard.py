"""The ops dashboard (/ui/dashboard): funnel chart, bottleneck stage, cadence and variant numbers.

Server-rendered (Jinja2, CSS bars), no JavaScript, no build step. The funnel and the bottleneck
come from this service's aggregates; cadence and variant performance from outreach's API
(GET /cadences and /cadences/{id}/stats at CLOSEFLOW_OUTREACH_URL, with the caller's key), so
the page never reads outreach's database. When outreach does not answer, the page says so.

Auth: the API key in the X-API-Key header, or the cookie that the posted sign-in form sets
(shared/pages.py; PageKeyMiddleware hands it on as the header). A key in the URL is ignored:
query strings land in access logs and browser history.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.prospecting import funnel, funnel_queue, schemas
from shared.auth import ApiKey
from shared.bounds import INT32_MAX
from shared.db import Session
from shared.ids import id_path
from shared.pages import FORM_PAGE_HEADERS, templates_beside
from shared.peers import peer_client

router = APIRouter(tags=["ui"])

MAX_CADENCES = 20  # the page shows at most this many cadences, the newest, and counts the rest
OUTREACH_TIMEOUT = 5.0

_templates = templates_beside(__file__)


# --- outreach -------------------------------------------------------------------------------


@dataclass
class CadencePerformance:
    available: bool
    error: str = ""
    cadences: list[dict[str, Any]] = field(default_factory=list)
    not_shown: int = 0  # older cadences beyond MAX_CADENCES


async def cadence_performance(
    base_url: str, key: str, cadence_id: str | None = None
) -> CadencePerformance:
    """Every cadence (or the one the page is filtered by) with its per-step, per-variant
    numbers, from outreach's HTTP API."""
    try:
        async with peer_client(key, base_url=base_url, timeout=OUTREACH_TIMEOUT) as http:
            listed = await http.get("/cadences")
            if listed.status_code != 200:
                return CadencePerformance(False, f"outreach answered {listed.status_code}")
            every = listed.json()  # oldest first: the page wants the newest, newest first
            if cadence_id is not None:  # the funnel above is that cadence's: so is this
                every = [c for c in every if c["id"] == cadence_id]
            cadences = every[-MAX_CADENCES:][::-1]
            stats = await asyncio.gather(
                *(http.get(id_path("/cadences/{id}/stats", id=c["id"])) for c in cadences)
            )
    except httpx.HTTPError as err:
        return CadencePerformance(False, f"outreach at {base_url} did not answer ({err!s})")
    rows = []
    for cadence, answer in zip(cadences, stats, strict=True):
        steps = answer.json().get("steps", []) if answer.status_code == 200 else []
        sent = sum(s["sent"] for s in steps)
        replied = sum(s["replied"] for s in steps)
        rows.append(
            {
                "id": cadence["id"],
                "name": cadence.get("name", ""),
                "version": cadence.get("version"),
                "sent": sent,
                "replied": replied,
                "reply_rate": replied / sent if sent else None,
                "steps": steps,
            }
        )
    return CadencePerformance(True, cadences=rows, not_shown=len(every) - len(cadences))


# --- page -----------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """3 d 4 h, 5 h 12 min, 40 s: the two largest units are enough to compare stages."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if whole >= size or (unit == "s" and not parts):
            parts.append(f"{whole // size} {unit}")
            whole %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


_templates.filters["duration"] = duration
_templates.filters["percent"] = percent


@router.get("/ui/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    session: Session,
    key: ApiKey,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query()] = None,
    cadence_id: Annotated[str | None, Query(max_length=32)] = None,
    rep_id: Annotated[str | None, Query(max_length=32)] = None,
    source: Annotated[schemas.Source | None, Query()] = None,
    periods: Annotated[int, Query(ge=1, le=24)] = 4,
    min_left: Annotated[int, Query(ge=1, le=INT32_MAX)] = 20,
) -> Response:
    w = funnel.window(from_, to)
    filters = funnel.Filters(cadence_id, rep_id, source)
    await funnel_queue.roll_up_all(request.app.state.sessions)
    (group,) = await funnel.compute(session, w, filters)
    stages = [funnel.stage_json(s, n) for s, n in group.stages.items()]
    widest = max((s["entered"] for s in stages), default=0) or 1
    found = await funnel.bottleneck(session, w, filters, periods, min_left)
    await session.commit()  # nothing written; end the read before the outreach round trip
    outreach_url = request.app.state.settings.outreach_url
    performance = await cadence_performance(outreach_url, key, cadence_id)
    html = _templates.get_template("dashboard.html").render(
        window=w,
        filters=filters,
        stages=stages,
        widest=widest,
        outcomes={o.value: group.outcomes[o.value] for o in funnel.OUTCOMES},
        bottleneck=found,
        performance=performance,
        resolution=funnel.RESOLUTION,
        outreach_url=outreach_url,
    )
    return HTMLResponse(html, headers=FORM_PAGE_HEADERS)
