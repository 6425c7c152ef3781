"""Outreach's HTTP API: cadences, enrollments, messages, consent (rep tasks: tasks_api.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from services.outreach import models
from services.outreach.cadences import schemas, service
from services.outreach.cadences.enrollment import new_enrollment, start_journey
from services.outreach.cadences.templates import RenderLimits, limits_from
from services.outreach.consent import erasure
from services.outreach.prospects import ProspectDirectory
from shared.auth import require_api_key
from shared.db import Session
from shared.errors import AppError

router = APIRouter(dependencies=[Depends(require_api_key)])


def _limits(request: Request) -> RenderLimits:
    return limits_from(request.app.state.settings)


@router.post("/cadences", status_code=201, response_model=schemas.Cadence, tags=["cadences"])
async def create_cadence(
    body: schemas.CadenceIn, request: Request, session: Session
) -> schemas.Cadence:
    """422 `template_error` names each step field whose template cannot render."""
    cadence = await service.create_cadence(session, body, _limits(request))
    await session.commit()
    return cadence


@router.get("/cadences", response_model=list[schemas.Cadence], tags=["cadences"])
async def list_cadences(session: Session) -> list[schemas.Cadence]:
    return await service.list_cadences(session)


@router.get("/cadences/{cadence_id}", response_model=schemas.Cadence, tags=["cadences"])
async def get_cadence(
    cadence_id: str, session: Session, version: Annotated[int | None, Query(ge=1)] = None
) -> schemas.Cadence:
    return await service.get_cadence(session, cadence_id, version)


@router.put("/cadences/{cadence_id}", response_model=schemas.Cadence, tags=["cadences"])
async def update_cadence(
    cadence_id: str, body: schemas.CadenceIn, request: Request, session: Session
) -> schemas.Cadence:
    """Makes a new version; journeys already running stay on the version they started with."""
    cadence = await service.update_cadence(session, cadence_id, body, _limits(request))
    await session.commit()
    return cadence


@router.post(
    "/enrollments", status_code=201, response_model=schemas.Enrollment, tags=["enrollments"]
)
async def enroll(
    body: schemas.EnrollmentIn, request: Request, response: Response, session: Session
) -> models.Enrollment:
    """Start the prospect's journey. Enrolling again returns the same journey (200)."""
    existing = await service.find_enrollment(session, body.prospect_id)
    if existing is not None and existing.cadence_id != body.cadence_id:
        raise AppError(
            409,
            "already_enrolled",
            f"prospect {body.prospect_id} is on cadence {existing.cadence_id} already",
        )
    version = existing.cadence_version if existing else None
    snapshot = await service.cadence_snapshot(session, body.cadence_id, version)
    directory: ProspectDirectory = request.app.state.prospects
    contact = await directory.contact(body.prospect_id)
    pepper = request.app.state.settings.erasure_pepper.get_secret_value()
    await erasure.refuse_erased_contact(session, pepper, contact)  # 409 erased_person
    row = existing or await service.add_enrollment(
        session, new_enrollment(contact, body.cadence_id, snapshot.version)
    )
    await session.commit()
    if existing is not None:
        response.status_code = 200
    await start_journey(
        request.app.state.temporal, request.app.state.settings, row, contact, snapshot
    )
    return row


@router.get(
    "/prospects/{prospect_id}/enrollment", response_model=schemas.Enrollment, tags=["enrollments"]
)
async def get_enrollment(prospect_id: str, session: Session) -> models.Enrollment:
    row = await service.find_enrollment(session, prospect_id)
    if row is None:
        raise AppError(404, "enrollment_not_found", f"prospect {prospect_id} is not enrolled")
    return row


@router.get(
    "/prospects/{prospect_id}/messages", response_model=list[schemas.Message], tags=["messages"]
)
async def list_messages(prospect_id: str, session: Session) -> list[models.Message]:
    return await service.list_messages(session, prospect_id)
