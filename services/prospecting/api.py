"""Prospecting routes: reps, prospects and their stage history. Every route needs an API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.prospecting import schemas, service
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
) -> schemas.ProspectPage:
    items, next_cursor = await service.list_prospects(
        session, limit=limit, cursor=cursor, stage=stage
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
