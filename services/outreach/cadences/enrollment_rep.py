"""Prospecting's reassignment reaches the enrollment: POST /internal/prospects/{id}/rep (or, when
the prospect's rep left and nobody had room, POST /internal/prospects/{id}/unassigned); a rep's
new name, email or phone reaches their prospects' journeys: POST /internal/reps/{id}/signature.

The enrollment's rep_id is what pausing a rep's journeys selects by, so it must follow the
prospect. Called by prospecting's outbox relay (retried until 2xx); setting the same rep again
changes nothing. The running journey is told too (signal rep_assigned), so its messages are
signed by the new rep from then on, and it takes the new rep's pause: theirs while they are
paused, none when they are not (rep_pauses.py); a 503 when it cannot be told makes the outbox
retry.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.cadences import rep_pauses
from services.outreach.cadences.journey_operations import BulkResult, signal_journeys
from services.outreach.cadences.service import prospects_where
from services.outreach.tasks.reps import RepDirectory
from shared.auth import require_api_key
from shared.contracts.journey import PauseJourney, PauseKind, RepAssigned
from shared.contracts.names import Sig
from shared.db import Session, utcnow
from shared.journeys import tell_running_journey
from shared.rep_moves import RepMove
from shared.requests import InternalModel

router = APIRouter(dependencies=[Depends(require_api_key)])


class RepChanged(BaseModel):
    prospect_id: str
    rep_id: str
    enrollments: int = Field(description="enrollments updated (0: not enrolled, or already)")


@router.post("/internal/prospects/{prospect_id}/rep", tags=["enrollments"])
async def change_rep(
    prospect_id: str, body: RepMove, request: Request, session: Session
) -> RepChanged:
    count, enrolled = await _set_rep(session, prospect_id, body.rep_id)
    if enrolled:
        reps: RepDirectory = request.app.state.reps
        rep = await reps.rep(body.rep_id)  # 404 unknown, 503 prospecting away: retried
        signed = RepAssigned(rep.id, rep.name, rep.email, rep.phone)
        paused = rep_pauses.signal_for(await rep_pauses.pause_of(session, rep.id, utcnow()))
        # a finished journey needs no new rep
        await tell_running_journey(
            request.app.state.temporal, prospect_id, (Sig.REP_ASSIGNED, signed), paused
        )
    return RepChanged(prospect_id=prospect_id, rep_id=body.rep_id, enrollments=count)


async def _set_rep(session: AsyncSession, prospect_id: str, rep_id: str | None) -> tuple[int, bool]:
    """The prospect's enrollments given `rep_id` (committed): how many changed, and whether
    the prospect is enrolled at all."""
    e = models.Enrollment
    result = await session.execute(
        update(e)
        .where(e.prospect_id == prospect_id, e.rep_id.is_distinct_from(rep_id))
        .values(rep_id=rep_id)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    enrolled = await session.scalar(select(e.id).where(e.prospect_id == prospect_id).limit(1))
    return count, enrolled is not None


class RepGone(InternalModel):
    reason: str = Field(min_length=1, max_length=300)


class Unassigned(BaseModel):
    prospect_id: str
    paused: bool = Field(description="a running journey was paused (waits for a rep)")


@router.post("/internal/prospects/{prospect_id}/unassigned", tags=["enrollments"])
async def rep_gone(
    prospect_id: str, body: RepGone, request: Request, session: Session
) -> Unassigned:
    """The prospect's rep was deactivated and no active rep had room (prospecting's outbox,
    retried until 2xx): the enrollment has no rep, and the running journey waits with a `rep`
    pause naming why, instead of signing its messages with the departed rep's name, email and
    phone; it names no rep either, so a task it makes meanwhile (a reply's) waits unassigned,
    not in the departed rep's inbox, and moves to the rep the prospect is given. That
    reassignment, once a place is free, lifts the pause (change_rep: the new rep's own pause,
    none when they are at work)."""
    _, enrolled = await _set_rep(session, prospect_id, None)
    pause = PauseJourney(f"no rep: {body.reason}", None, PauseKind.REP)
    nobody = RepAssigned(None)
    paused = enrolled and await tell_running_journey(
        request.app.state.temporal, prospect_id, (Sig.PAUSE, pause), (Sig.REP_ASSIGNED, nobody)
    )
    return Unassigned(prospect_id=prospect_id, paused=paused)


@router.post(
    "/internal/reps/{rep_id}/signature",
    tags=["enrollments"],
    response_model=BulkResult,
    status_code=202,
)
async def rep_signature_changed(rep_id: str, request: Request, session: Session) -> BulkResult:
    """The rep's name, email or phone changed (prospecting's outbox, retried until 2xx): every
    running journey of their prospects is told (`rep_assigned`, the same rep), so its next
    message is signed with the new details, `{{ rep_phone }}` included. The details are read
    from prospecting now: a late or repeated delivery tells the latest. One bulk operation
    (`rep_signature`, GET /journey-operations/{id}); 404 for an unknown rep."""
    reps: RepDirectory = request.app.state.reps
    rep = await reps.rep(rep_id)
    signed = RepAssigned(rep.id, rep.name, rep.email, rep.phone)
    pids = await prospects_where(session, rep_id=rep_id)
    return await signal_journeys(request, session, "rep_signature", pids, Sig.REP_ASSIGNED, signed)
