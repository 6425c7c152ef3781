"""Controlling journeys in flight: pause, resume, stop (one, a cadence's, a rep's) and moving
running journeys to a new cadence version (dry run first, then apply)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from temporalio.client import Client

from services.outreach.cadences import migration, rep_pauses, service
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
    JourneyState,
    PauseJourney,
    PauseKind,
    ResumeJourney,
    Stage,
    StopCadence,
    journey_id,
)
from shared.contracts.names import Sig
from shared.db import Session
from shared.errors import AppError, conflict
from shared.journeys import query_state, read_journey, signal_journey
from shared.paging import After, Linked
from shared.requests import OffsetDatetime, WriteModel

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["journeys"])


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


def _client(request: Request) -> Client:
    return request.app.state.temporal  # type: ignore[no-any-return]


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


# the stages in which a journey runs its cadence, where a stop ends it
CADENCE_STAGES = (Stage.PROSPECTING, Stage.CONTACTING)


@router.post("/journeys/{prospect_id}/stop", status_code=202)
async def stop_journey(
    prospect_id: str, body: StopIn, request: Request, _audited: Session
) -> dict[str, str]:
    """Ends the journey's cadence (the run ends in nurture). A journey past its cadence
    (qualifying on: a deal under way) is 409 `journey_past_contacting`: a stop would change
    nothing there, and its deal decides how the run ends. While no journeys worker answers,
    the stop is signalled all the same (Temporal keeps it): the journey decides then."""
    client = _client(request)
    try:
        state = await query_state(client.get_workflow_handle(journey_id(prospect_id)))
    except AppError as err:
        if err.status != 503:
            raise
        state = None
    if state is not None and not state.finished and state.stage not in CADENCE_STAGES:
        raise past_contacting(prospect_id, state)
    stop = StopCadence(body.reason, request_actor(request))
    await signal_journey(client, prospect_id, Sig.STOP_CADENCE, stop)
    return {"status": "stopping", "journey_id": journey_id(prospect_id)}


def past_contacting(prospect_id: str, state: JourneyState) -> AppError:
    deal = f"its deal {state.deal_id}" if state.deal_id else "its deal"
    return conflict(
        "journey_past_contacting",
        f"prospect {prospect_id}'s journey is at {state.stage}: its cadence is over, so a stop "
        f"would change nothing; {deal} decides how the run ends (close it on deals: POST "
        "/deals/{deal_id}/close)",
        [{"field": "prospect_id", "problem": f"journey at stage {state.stage}"}],
    )


# --- many journeys --------------------------------------------------------------------------


async def _cadence_journeys(cadence_id: str, session: Session) -> list[str]:
    """The prospects of the cadence's journeys (404 for a cadence that does not exist)."""
    await service.get_cadence(session, cadence_id)
    return await service.prospects_where(session, cadence_id=cadence_id)


async def _rep_journeys(rep_id: str, session: Session) -> list[str]:
    return await service.prospects_where(session, rep_id=rep_id)


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
    rep meanwhile lost it then). 404: unknown rep (a mistyped id resumed nobody, silently)."""
    reps: RepDirectory = request.app.state.reps
    await reps.rep(rep_id)
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

ToVersion = Annotated[int | None, Query(ge=1, le=INT32_MAX)]
PageLimit = Annotated[
    int,
    Query(
        ge=1,
        le=migration.MAX_LIMIT,
        description=f"journeys per page (default {migration.DEFAULT_LIMIT}, "
        f"at most {migration.MAX_LIMIT}): each is read from Temporal",
    ),
]


class MigrationResult(BulkResult):
    to_version: int


@router.get("/cadences/{cadence_id}/migration")
async def migration_dry_run(
    cadence_id: str,
    request: Request,
    session: Session,
    link: Linked,
    to_version: ToVersion = None,
    limit: PageLimit = migration.DEFAULT_LIMIT,
    after: After = None,
) -> dict[str, Any]:
    """What moving the running journeys to `to_version` (default: the latest) would do: how
    many there are (`journeys`, from outreach's rows), and a page of them, each read from its
    journey (`items`; those past contacting or stopped are left out: they would not move)."""
    target = await service.cadence_snapshot(session, cadence_id, to_version)
    rows = await migration.candidates_page(session, cadence_id, target.version, after, limit)
    items = await migration.plan(_client(request), target, list(rows))
    by_step: dict[str, int] = {}
    for item in items:
        by_step[str(item["at_step"])] = by_step.get(str(item["at_step"]), 0) + 1
    link(rows)
    return {
        "to_version": target.version,
        "journeys": await migration.count(session, cadence_id, target.version),
        "by_step": by_step,
        "items": items,
    }


@router.post("/cadences/{cadence_id}/migration", response_model=MigrationResult, status_code=202)
async def migration_apply(
    cadence_id: str, request: Request, session: Session, to_version: ToVersion = None
) -> MigrationResult:
    """Asks every running journey of the cadence on an older version to move to `to_version`
    (default: the latest) from its next touch on (migration.py: bounded, 202 with the
    operation; GET /journey-operations/{id} follows it)."""
    target = await service.cadence_snapshot(session, cadence_id, to_version)
    pids = await migration.prospects(session, cadence_id, target.version)
    moved = await for_journey(target, request.app.state.settings, _client(request))
    sig = Sig.MIGRATE_CADENCE
    result = await signal_journeys(request, session, migration.OPERATION, pids, sig, moved)
    return MigrationResult(to_version=target.version, **result.model_dump())
