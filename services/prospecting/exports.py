"""CSV exports of prospecting: the prospects (the list's filters and sort) and the funnel (its
window, filters and grouping). Streamed (shared.csv_export); ops and admins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import fit, funnel, schemas, service
from services.prospecting.funnel_api import FunnelScope
from shared.auth import require_api_key
from shared.contracts.journey import Stage
from shared.csv_export import csv_response, one_page, paged_rows
from shared.db import Session
from shared.ids import IdFilter

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["exports"])

PROSPECT_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "title",
    "industry",
    "company_size",
    "country",
    "timezone",
    "source",
    "stage",
    "fit_score",
    "tier",
    "rep_id",
    "referrer_prospect_id",
    "created_at",
    "updated_at",
)
FUNNEL_COLUMNS = (
    "group",
    "stage",
    "entered",
    "left",
    "advanced",
    "dropped",
    "conversion",
    "stays_measured",
    "median_seconds",
    "p90_seconds",
    "drop_off",
)


@router.get("/exports/prospects.csv", response_class=StreamingResponse)
async def export_prospects(
    request: Request,
    stage: Stage | None = None,
    tier: fit.Tier | None = None,
    rep_id: IdFilter = None,
    source: schemas.Source | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: Literal["created_at", "-created_at", "fit_score", "-fit_score"] = "created_at",
) -> StreamingResponse:
    """Every prospect GET /prospects would list with these filters, in its order, one row each."""
    size: int = request.app.state.settings.export_page_size

    async def page(session: AsyncSession, cursor: str | None) -> tuple[list[list[Any]], Any]:
        items, next_cursor = await service.list_prospects(
            session,
            limit=size,
            cursor=cursor,
            stage=stage,
            tier=tier,
            rep_id=rep_id,
            source=source,
            q=q,
            sort=sort,
        )
        return [[getattr(p, c) for c in PROSPECT_COLUMNS] for p in items], next_cursor

    pages = paged_rows(request.app.state.sessions, page)
    return csv_response("prospects.csv", PROSPECT_COLUMNS, pages)


@router.get("/exports/funnel.csv", response_class=StreamingResponse)
async def export_funnel(
    session: Session,
    scope: FunnelScope,
    group_by: Annotated[funnel.GroupBy | None, Query()] = None,
) -> StreamingResponse:
    """GET /funnel as a table: one row per group and stage (drop-off as `cause: n; ...`)."""
    body = await funnel.funnel(session, scope.window, scope.filters, group_by)
    rows: list[list[Any]] = []
    for group in body["groups"]:
        for s in group["stages"]:
            causes = "; ".join(f"{d['cause']}: {d['count']}" for d in s["drop_off"])
            rows.append([group["key"] or "all", *(s[c] for c in FUNNEL_COLUMNS[1:-1]), causes])
    return csv_response("funnel.csv", FUNNEL_COLUMNS, one_page(rows))
