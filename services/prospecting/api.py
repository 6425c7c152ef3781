"""Prospecting routes: reps, prospects, stage history, the ICP and imports. All need an API key."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from services.prospecting import fit, icp, imports, schemas, service
from shared.auth import require_api_key
from shared.contracts.journey import Stage
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/reps", status_code=201, tags=["reps"])
async def create_rep(body: schemas.RepCreate, session: Session) -> schemas.Rep:
    return schemas.Rep.model_validate(await service.create_rep(session, body))


@router.get("/reps", tags=["reps"])
async def list_reps(session: Session) -> list[schemas.Rep]:
    return [schemas.Rep.model_validate(r) for r in await service.list_reps(session)]


@router.get("/reps/{rep_id}", tags=["reps"])
async def get_rep(rep_id: str, session: Session) -> schemas.Rep:
    return schemas.Rep.model_validate(await service.get_rep(session, rep_id))


@router.post("/prospects", status_code=201, tags=["prospects"])
async def create_prospect(body: schemas.ProspectCreate, session: Session) -> schemas.Prospect:
    """Create a prospect and assign the next rep in round-robin order (none without reps)."""
    return schemas.Prospect.model_validate(await service.create_prospect(session, body))


@router.get("/prospects", tags=["prospects"])
async def list_prospects(
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    stage: Stage | None = None,
    tier: fit.Tier | None = None,
    rep_id: str | None = None,
    source: schemas.Source | None = None,
    q: Annotated[
        str | None, Query(max_length=200, description="in name, email or company (any case)")
    ] = None,
    sort: Literal["created_at", "-created_at", "fit_score", "-fit_score"] = "created_at",
) -> schemas.ProspectPage:
    """Filtered, sorted, keyset-paginated: pass next_cursor back with the same filters and sort."""
    items, next_cursor = await service.list_prospects(
        session,
        limit=limit,
        cursor=cursor,
        stage=stage,
        tier=tier,
        rep_id=rep_id,
        source=source,
        q=q,
        sort=sort,
    )
    return schemas.ProspectPage(
        items=[schemas.Prospect.model_validate(p) for p in items], next_cursor=next_cursor
    )


@router.get("/prospects/{prospect_id}", tags=["prospects"])
async def get_prospect(prospect_id: str, session: Session) -> schemas.Prospect:
    """The prospect with their rep: everything a journey's Contact is built from."""
    return schemas.Prospect.model_validate(await service.get_prospect(session, prospect_id))


@router.get("/prospects/{prospect_id}/stages", tags=["prospects"])
async def stage_history(prospect_id: str, session: Session) -> list[schemas.StageEntry]:
    rows = await service.stage_history(session, prospect_id)
    return [schemas.StageEntry.model_validate(r) for r in rows]


@router.get("/icp", tags=["icp"])
async def get_icp(session: Session) -> schemas.Icp:
    rules, row = await icp.load(session)
    return schemas.Icp(
        rules=rules, version=row.version if row else 0, updated_at=row.updated_at if row else None
    )


@router.put("/icp", tags=["icp"])
async def put_icp(body: fit.IcpRules, session: Session) -> schemas.Icp:
    """Replace the ICP and rescore every prospect with it (in batches)."""
    row, rescored = await icp.replace(session, body)
    return schemas.Icp(
        rules=body, version=row.version, updated_at=row.updated_at, rescored=rescored
    )


@router.post("/imports", status_code=201, tags=["imports"])
async def create_import(
    request: Request,
    session: Session,
    format: Annotated[
        Literal["csv", "ndjson"] | None,
        Query(description="overrides the Content-Type (text/csv or application/x-ndjson)"),
    ] = None,
) -> schemas.ImportReport:
    """Import the request body, streamed: a CSV with a header row, or one JSON object a line.

    Columns other than the prospect's fields go into `custom`. Each batch of rows commits on its
    own; the report lists every refused row with its line number and the reason.
    """
    fmt = imports.format_of(request.headers.get("content-type", ""), format)
    import_id = await imports.run_import(request.app.state.sessions, request.stream(), fmt)
    return await imports.get_report(session, import_id)


@router.get("/imports/{import_id}", tags=["imports"])
async def get_import(import_id: str, session: Session) -> schemas.ImportReport:
    return await imports.get_report(session, import_id)
