"""Controlling journeys in flight: pause, resume, stop (one, a cadence's, a rep's) and moving
running journeys to a new cadence version (dry run first, then apply)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from temporalio.client import Client

from services.outreach import models
from services.outreach.cadences import rep_pauses, service
from services.outreach.cadences.journey_operations import (
    BulkResult,
    OperationStatus,
    operation_status,
    signal_journeys,
)
from services.outreach.cadences.stored_templates import for_journey
from services.outreach.tasks.reps import RepDirectory
from shared.audit import request_actor
from shared.auth import require_api_key
from shared.bounds import INT32_MAX
from shared.contracts.journey import (
    CadenceSnapshot,
    PauseJourney,
    PauseKind,
    ResumeJourney,
    StopCadence,
    journey_id,
)
from shared.contracts.names import Sig
from shared.contracts.plan import step_due, touch_groups
from shared.db import Session
from shared.errors import AppError
from shared.journeys import first_task_time, read_journey, signal_journey
from shared.requests import OffsetDatetime, WriteModel

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["journeys"])
FANOUT = 20  # concurrent journeys read or signalled when a cadence's journeys move


class PauseIn(WriteModel):
    reason: str = Field("", max_length=500)
    until: OffsetDatetime | None = Field(
        None, description="resume by itself then (with UTC offset)"
    )


class PauseOneIn(PauseIn):
    kind: PauseKind = Field(
        PauseKind.MANUAL, description="which pause: pauses of different kinds stack"
    )


class ResumeIn(WriteModel):
    kind: PauseKind = Field(PauseKind.MANUAL, description="the pause to lift; others stay")


class StopIn(WriteModel):
    reason: str = Field(min_length=1, max_length=500)


class MigrationResult(BaseModel):
    signalled: list[str]
    skipped: dict[str, str]


def _client(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


async def _signal_many(
    client: Client, prospect_ids: Sequence[str], signal: str, payload: object | None
) -> MigrationResult:
    sem = asyncio.Semaphore(FANOUT)
    result = MigrationResult(signalled=[], skipped={})

    async def one(pid: str) -> None:
        async with sem:
            try:
                await signal_journey(client, pid, signal, payload)
            except AppError as err:
                result.skipped[pid] = err.code
            else:
                result.signalled.append(pid)

    await asyncio.gather(*(one(pid) for pid in prospect_ids))
    result.signalled.sort()
    return result


async def _prospects_where(session: Session, **where: str) -> list[str]:
    # a prospect's current run only: an earlier run in this cadence is not their journey now
    query = select(models.Enrollment.prospect_id).where(models.Enrollment.current.is_(True))
    for column, value in where.items():
        query = query.where(getattr(models.Enrollment, column) == value)
    return list((await session.scalars(query)).all())


def _pause_payload(body: PauseIn, kind: PauseKind) -> PauseJourney:
    return PauseJourney(body.reason, body.until.isoformat() if body.until else None, kind)


# --- one journey ----------------------------------------------------------------------------


@router.get("/journeys/{prospect_id}")
async def journey_state(prospect_id: str, request: Request, session: Session) -> dict[str, Any]:
    enrollment = await service.find_enrollment(session, prospect_id)
    read = await read_journey(_client(request), journey_id(prospect_id))
    if read is None:
        raise AppError(404, "journey_not_found", f"prospect {prospect_id} has no journey")
    described, state = read
    return {
        "journey_id": described.id,
        "status": described.status.name.lower() if described.status else "unknown",
        "cadence_id": enrollment.cadence_id if enrollment else None,
        **state.__dict__,
    }


# The three routes below write no row of their own, yet each is a key holder's change: the
# request's session (unused otherwise) is what records it in the audit log (shared.audit).


@router.post("/journeys/{prospect_id}/pause", status_code=202)
async def pause_journey(
    prospect_id: str, body: PauseOneIn, request: Request, _audited: Session
) -> dict[str, str]:
    payload = _pause_payload(body, body.kind)
    await signal_journey(_client(request), prospect_id, Sig.PAUSE, payload)
    return {"status": "pausing", "journey_id": journey_id(prospect_id)}


@router.post("/journeys/{prospect_id}/resume", status_code=202)
async def resume_journey(
    prospect_id: str, request: Request, _audited: Session, body: ResumeIn | None = None
) -> dict[str, str]:
    """Lifts the pause of one kind (manual when not said); the journey sends again once no
    other pause is left."""
    kind = body.kind if body is not None else PauseKind.MANUAL
    await signal_journey(_client(request), prospect_id, Sig.RESUME, ResumeJourney(kind))
    return {"status": "resuming", "journey_id": journey_id(prospect_id)}


@router.post("/journeys/{prospect_id}/stop", status_code=202)
async def stop_journey(
    prospect_id: str, body: StopIn, request: Request, _audited: Session
) -> dict[str, str]:
    stop = StopCadence(body.reason, request_actor(request))
    await signal_journey(_client(request), prospect_id, Sig.STOP_CADENCE, stop)
    return {"status": "stopping", "journey_id": journey_id(prospect_id)}


# --- many journeys --------------------------------------------------------------------------


async def _cadence_journeys(cadence_id: str, session: Session) -> list[str]:
    """The prospects of the cadence's journeys (404 for a cadence that does not exist)."""
    await service.get_cadence(session, cadence_id)
    return await _prospects_where(session, cadence_id=cadence_id)


async def _rep_journeys(rep_id: str, session: Session) -> list[str]:
    return await _prospects_where(session, rep_id=rep_id)


CadenceJourneys = Annotated[list[str], Depends(_cadence_journeys)]
# A bulk route stores a signal per journey, tells the first few and answers 202: the inbox
# relay tells the rest (journey_operations.py; GET /journey-operations/{id} follows it).


@router.post("/cadences/{cadence_id}/pause", response_model=BulkResult, status_code=202)
async def pause_cadence(
    body: PauseIn, request: Request, session: Session, pids: CadenceJourneys
) -> BulkResult:
    payload = _pause_payload(body, PauseKind.CADENCE)
    return await signal_journeys(request, session, "cadence_pause", pids, Sig.PAUSE, payload)


@router.post("/cadences/{cadence_id}/resume", response_model=BulkResult, status_code=202)
async def resume_cadence(request: Request, session: Session, pids: CadenceJourneys) -> BulkResult:
    resume = ResumeJourney(PauseKind.CADENCE)
    return await signal_journeys(request, session, "cadence_resume", pids, Sig.RESUME, resume)


@router.post("/cadences/{cadence_id}/stop", response_model=BulkResult, status_code=202)
async def stop_cadence(
    body: StopIn, request: Request, session: Session, pids: CadenceJourneys
) -> BulkResult:
    stop = StopCadence(body.reason, request_actor(request))
    return await signal_journeys(request, session, "cadence_stop", pids, Sig.STOP_CADENCE, stop)


@router.post("/reps/{rep_id}/journeys/pause", response_model=BulkResult, status_code=202)
async def pause_rep(rep_id: str, body: PauseIn, request: Request, session: Session) -> BulkResult:
    """E.g. a rep on vacation: every journey of their prospects holds its touches until their
    resume (or `until`). The pause is the rep's (rep_pauses.py): a prospect handed to another
    rep meanwhile goes on with them, one handed to this rep waits too (404: unknown rep)."""
    reps: RepDirectory = request.app.state.reps
    await reps.rep(rep_id)  # before a row is kept for the id
    payload = _pause_payload(body, PauseKind.REP)
    await rep_pauses.record(session, rep_id, payload)
    # committed before the journeys are read: a reassignment from now on hands the pause on
    await session.commit()
    pids = await _rep_journeys(rep_id, session)
    return await signal_journeys(request, session, "rep_pause", pids, Sig.PAUSE, payload)


@router.post("/reps/{rep_id}/journeys/resume", response_model=BulkResult, status_code=202)
async def resume_rep(rep_id: str, request: Request, session: Session) -> BulkResult:
    """Lifts the rep's pause from the journeys of their prospects now (those handed to another
    rep meanwhile lost it then)."""
    await rep_pauses.forget(session, rep_id)
    await session.commit()
    pids = await _rep_journeys(rep_id, session)
    resume = ResumeJourney(PauseKind.REP)
    return await signal_journeys(request, session, "rep_resume", pids, Sig.RESUME, resume)


@router.get("/journey-operations/{operation_id}", response_model=OperationStatus)
async def journey_operation(operation_id: str, session: Session) -> OperationStatus:
    """How far a bulk pause, resume or stop got: its journeys told (`signalled`), not running
    (`no_journey`), refused (`failed`) and still `pending` (the relay retries those); `done`
    once none is pending."""
    return await operation_status(session, operation_id)


# --- moving running journeys to a new version -------------------------------------------------


async def _migration_plan(
    cadence_id: str,
    request: Request,
    session: Session,
    to_version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
) -> tuple[CadenceSnapshot, list[dict[str, Any]]]:
    """The dependency of both migration routes: the target version and the running journeys
    that would move to it, where each one stands."""
    target = await service.cadence_snapshot(session, cadence_id, to_version)
    rows = (
        await session.scalars(
            select(models.Enrollment).where(
                models.Enrollment.cadence_id == cadence_id,
                models.Enrollment.cadence_version < target.version,
                models.Enrollment.current.is_(True),
            )
        )
    ).all()
    client = _client(request)
    groups = touch_groups(target.steps)
    sem = asyncio.Semaphore(FANOUT)
    items: list[dict[str, Any]] = []

    async def inspect(row: models.Enrollment) -> None:
        async with sem:
            # a journey that cannot be read fails the whole plan (503): left out, it would
            # silently stay on its old version
            read = await read_journey(client, row.journey_id, running_only=True)
            if read is None or read[1].stage != "contacting" or read[1].stopped:
                return  # past the cadence: a new version changes nothing for them
            described, state = read
            # the journey's clock when contacting began, not the run's start (its first task
            # may have waited for a worker)
            started = await first_task_time(client, described.id, described.run_id)
        nxt = groups[state.next_step] if state.next_step < len(groups) else []
        # the journey's own rule (workflows/journey/contact.py, _due): the new version's step on
        # the prospect's calendar, moved by the delay its late touches brought
        delay = timedelta(seconds=state.cadence_delay_seconds)
        holidays = target.send_window.holidays
        items.append(
            {
                "prospect_id": row.prospect_id,
                "from_version": state.cadence_version or row.cadence_version,
                "at_step": state.next_step,
                "next_touch": [
                    {"channel": s.channel, "subject": s.subject, "body": s.body} for s in nxt
                ],
                "next_due_at": (
                    step_due(started, nxt[0], state.timezone, holidays, delay).isoformat()
                    if nxt
                    else None
                ),
                "then": "nurture" if not nxt else "touch",
            }
        )

    await asyncio.gather(*(inspect(r) for r in rows))
    items.sort(key=lambda i: (i["at_step"], i["prospect_id"]))
    return target, items


MigrationPlan = Annotated[tuple[CadenceSnapshot, list[dict[str, Any]]], Depends(_migration_plan)]


@router.get("/cadences/{cadence_id}/migration")
async def migration_dry_run(plan: MigrationPlan) -> dict[str, Any]:
    """What moving the running journeys to `to_version` (default: the latest) would do."""
    target, items = plan
    by_step: dict[str, int] = {}
    for item in items:
        by_step[str(item["at_step"])] = by_step.get(str(item["at_step"]), 0) + 1
    return {
        "to_version": target.version,
        "journeys": len(items),
        "by_step": by_step,
        "items": items,
    }


@router.post("/cadences/{cadence_id}/migration")
async def migration_apply(
    request: Request, session: Session, plan: MigrationPlan
) -> dict[str, Any]:
    target, items = plan
    pids = [i["prospect_id"] for i in items]
    moved = await for_journey(target, request.app.state.settings, _client(request))
    result = await _signal_many(_client(request), pids, Sig.MIGRATE_CADENCE, moved)
    rows = await session.scalars(
        select(models.Enrollment).where(
            models.Enrollment.prospect_id.in_(result.signalled),
            models.Enrollment.current.is_(True),
        )
    )
    for row in rows.all():
        row.cadence_version = target.version
    await session.commit()
    return {"to_version": target.version, **result.model_dump()}
