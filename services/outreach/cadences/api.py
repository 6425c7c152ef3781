"""Outreach's HTTP API: cadences, enrollments, messages, consent (rep tasks: tasks_api.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.cadences import follow_ups, runs, schemas, service
from services.outreach.cadences.enrollment import start_journey
from services.outreach.cadences.templates import RenderLimits, limits_from
from services.outreach.prospects import ProspectDirectory
from services.outreach.tasks.service import close_decided_deal_tasks
from shared.auth import require_api_key
from shared.bounds import INT32_MAX
from shared.contracts.journey import Stage
from shared.db import Session
from shared.errors import AppError
from shared.idempotency import Idempotent, IdempotentRepeat
from shared.requests import InternalModel

router = APIRouter(dependencies=[Depends(require_api_key)])
CadenceBody = Annotated[schemas.CadenceIn, Body(examples=[schemas.CADENCE_EXAMPLE])]


def _limits(request: Request) -> RenderLimits:
    return limits_from(request.app.state.settings)


@router.post(
    "/cadences",
    status_code=201,
    response_model=schemas.Cadence,
    tags=["cadences"],
    dependencies=[Idempotent],
)
async def create_cadence(body: CadenceBody, request: Request, session: Session) -> schemas.Cadence:
    """422 `template_error` names each step field whose template cannot render."""
    cadence = await service.create_cadence(session, body, _limits(request))
    await session.commit()
    return cadence


@router.get("/cadences", response_model=list[schemas.Cadence], tags=["cadences"])
async def list_cadences(session: Session) -> list[schemas.Cadence]:
    return await service.list_cadences(session)


@router.get("/cadences/{cadence_id}", response_model=schemas.Cadence, tags=["cadences"])
async def get_cadence(
    cadence_id: str,
    session: Session,
    version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
) -> schemas.Cadence:
    return await service.get_cadence(session, cadence_id, version)


# each PUT makes a version: a retried one would make a second
@router.put(
    "/cadences/{cadence_id}",
    response_model=schemas.Cadence,
    tags=["cadences"],
    dependencies=[Idempotent],
)
async def update_cadence(
    cadence_id: str, body: CadenceBody, request: Request, session: Session
) -> schemas.Cadence:
    """Makes a new version; journeys already running stay on the version they started with."""
    cadence = await service.update_cadence(session, cadence_id, body, _limits(request))
    await session.commit()
    return cadence


@router.post(
    "/enrollments",
    status_code=201,
    response_model=schemas.Enrollment,
    tags=["enrollments"],
    dependencies=[IdempotentRepeat],  # enrolling again returns the same run
)
async def enroll(
    body: schemas.EnrollmentIn, request: Request, response: Response, session: Session
) -> models.Enrollment:
    """Start the prospect's journey. Enrolling again while it runs returns the same run (200; 409
    `already_enrolled` for another cadence); once it ended, a new run (201) after the minimum
    gap (409 `reenroll_too_soon` says from when)."""
    directory: ProspectDirectory = request.app.state.prospects
    # a prospect enrolled again after their rep was deactivated goes to an active rep first
    contact = await directory.comeback(body.prospect_id)
    client, settings = request.app.state.temporal, request.app.state.settings
    planned = await runs.plan_run(
        session, client, settings, contact, runs.NewRun(body.prospect_id, body.cadence_id)
    )
    if planned.created:  # enrolled by hand: a pending follow-up has nothing left to do
        await follow_ups.cancel_pending(
            session, body.prospect_id, f"enrolled by hand in run {planned.row.run}"
        )
    await session.commit()
    if not planned.created:
        response.status_code = 200
    await start_and_remember(request, session, planned)
    return planned.row


async def start_and_remember(
    request: Request, session: AsyncSession, planned: runs.Planned, **start: Any
) -> None:
    row = planned.row
    run_id = await start_journey(
        request.app.state.temporal,
        request.app.state.settings,
        row,
        planned.contact,
        planned.snapshot,
        **start,
    )
    if row.run_id is None and run_id is not None:
        await runs.remember_start(session, row.id, run_id)
        await session.commit()
        await session.refresh(row)


@router.get(
    "/prospects/{prospect_id}/enrollment", response_model=schemas.Enrollment, tags=["enrollments"]
)
async def get_enrollment(prospect_id: str, session: Session) -> models.Enrollment:
    """The prospect's current run."""
    row = await service.find_enrollment(session, prospect_id)
    if row is None:
        raise AppError(404, "enrollment_not_found", f"prospect {prospect_id} is not enrolled")
    return row


@router.get(
    "/prospects/{prospect_id}/journeys",
    response_model=list[schemas.JourneyRun],
    tags=["enrollments"],
)
async def list_runs(
    prospect_id: str, request: Request, session: Session
) -> list[schemas.JourneyRun]:
    """Every run of the prospect's journey, first first, each with its status and outcome."""
    rows = await runs.all_runs(session, prospect_id)
    out = []
    for row in rows:
        status = await runs.run_status(request.app.state.temporal, row)
        out.append(
            schemas.JourneyRun.model_validate(
                {
                    **schemas.Enrollment.model_validate(row).model_dump(),
                    "status": status.state.value,
                    "outcome": row.outcome or status.outcome,
                    "ended_at": row.ended_at or status.ended_at,
                }
            )
        )
    return out


class ReopenIn(InternalModel):
    deal_id: str = Field(min_length=1, max_length=64)


class Reopened(BaseModel):
    started: bool
    run: int | None = None
    detail: str = ""
    # the Temporal run and the rep it signs as: deals records the run as the deal's and gives
    # the reopened deal to that rep (the prospect's rep now)
    run_id: str | None = None
    rep_id: str | None = None


@router.post("/internal/prospects/{prospect_id}/journeys/reopen", tags=["enrollments"])
async def reopen_journey(
    prospect_id: str, body: ReopenIn, request: Request, session: Session
) -> Reopened:
    """A reopened deal (deals' POST /deals/{id}/reopen): when the prospect's journey ended, a
    new run carries on at presenting with that deal; a running journey is left alone (the
    deals service tells it). Idempotent: once the run is started, a repeat finds it running.
    The answer names the run's Temporal id and its rep: deals makes them the deal's."""
    row = await service.find_enrollment(session, prospect_id)
    if row is None:
        raise AppError(404, "enrollment_not_found", f"prospect {prospect_id} is not enrolled")
    status = await runs.run_status(request.app.state.temporal, row)
    if status.state == runs.RunState.RUNNING and row.outcome is None:
        return Reopened(
            started=False,
            run=row.run,
            detail="the journey is running",
            run_id=row.run_id,
            rep_id=row.rep_id,
        )
    directory: ProspectDirectory = request.app.state.prospects
    # the deal and the run go to the prospect's rep: an active one (not the one deactivated
    # while the journey was over)
    contact = await directory.comeback(prospect_id)
    cause = f"deal {body.deal_id} reopened"
    planned = await runs.plan_run(
        session,
        request.app.state.temporal,
        request.app.state.settings,
        contact,
        runs.NewRun(
            prospect_id,
            row.cadence_id,
            origin="deal_reopened",
            start_stage=Stage.PRESENTING,
            start_cause=cause,
            deal_id=body.deal_id,
            hold_to_gap=False,
        ),
    )
    await close_decided_deal_tasks(
        session, prospect_id, body.deal_id, f"{cause}: the deal is open again"
    )
    # a run of theirs that ended won asked them for referrals: a second win does not again
    earlier = [r for r in await runs.all_runs(session, prospect_id) if r.run < planned.row.run]
    asked = any(r.outcome == Stage.WON for r in earlier)
    await session.commit()
    await start_and_remember(
        request,
        session,
        planned,
        start_cause=cause,
        deal_id=body.deal_id,
        referral_asked_before=asked,
    )
    row = planned.row
    return Reopened(started=True, run=row.run, detail=cause, run_id=row.run_id, rep_id=row.rep_id)


@router.get(
    "/prospects/{prospect_id}/messages", response_model=list[schemas.Message], tags=["messages"]
)
async def list_messages(prospect_id: str, session: Session) -> list[models.Message]:
    return await service.list_messages(session, prospect_id)
