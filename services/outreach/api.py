"""Outreach's HTTP API: cadences, enrolments, messages, consent (rep tasks: tasks_api.py)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from services.outreach import erasure, models, schemas, service
from services.outreach.prospects import ProspectDirectory
from shared.auth import require_api_key
from shared.contracts.journey import JourneyInput, journey_id
from shared.db import Session
from shared.errors import AppError
from shared.temporal import task_queues

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/cadences", status_code=201, response_model=schemas.Cadence, tags=["cadences"])
async def create_cadence(body: schemas.CadenceIn, session: Session) -> schemas.Cadence:
    cadence = await service.create_cadence(session, body)
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
    cadence_id: str, body: schemas.CadenceIn, session: Session
) -> schemas.Cadence:
    """Makes a new version; journeys already running stay on the version they started with."""
    cadence = await service.update_cadence(session, cadence_id, body)
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
        session,
        models.Enrollment(
            prospect_id=body.prospect_id,
            cadence_id=body.cadence_id,
            cadence_version=snapshot.version,
            journey_id=journey_id(body.prospect_id),
            rep_id=contact.rep_id,
            company_key=service.company_key(contact.company),
            email=service.normalise_address("email", contact.email) if contact.email else None,
            phone=service.normalise_address("sms", contact.phone) if contact.phone else None,
        ),
    )
    await session.commit()
    if existing is not None:
        response.status_code = 200
    settings = request.app.state.settings
    queues = task_queues(settings)
    client: Client = request.app.state.temporal
    try:
        # USE_EXISTING + REJECT_DUPLICATE: a repeat (or a retry after a failed start) reaches
        # the one journey, and a finished journey is never started a second time.
        await client.start_workflow(
            "ProspectJourney",
            JourneyInput(contact=contact, cadence=snapshot, queues=queues),
            id=row.journey_id,
            task_queue=queues.journeys,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass
    except RPCError as err:
        log.error("journey %s not started: %s", row.journey_id, err.message)
        raise AppError(
            503, "temporal_unreachable", "enrolment stored but the journey did not start; retry"
        ) from err
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


@router.get("/suppressions", response_model=list[schemas.Suppression], tags=["consent"])
async def suppressions(session: Session) -> list[models.Suppression]:
    return await service.list_suppressions(session)
