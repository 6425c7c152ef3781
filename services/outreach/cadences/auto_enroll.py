"""Auto-enrollment by fit tier: a cadence with `auto_enroll` takes every new prospect whose tier
is its `auto_enroll_min_tier` or better.

Prospecting decides *when* (it sees prospects created, imported and re-scored upward) and
outreach decides *where* (it owns cadences and enrollments): prospecting's outbox POSTs the
prospects and their tiers to POST /internal/auto-enrollments, retried until outreach answers
2xx. Outreach picks, per prospect, the auto-enrolling cadence with the strictest tier the
prospect meets (the oldest on a tie) and enrolls them. Idempotent: the enrollment is unique per
prospect. A prospect already enrolled is left as they are (running, or their run ended: a new
run is an enrolment's decision, with its minimum gap), except a run stored by an earlier attempt
whose start failed, which is started now.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.outreach import models
from services.outreach.cadences import runs, service
from services.outreach.cadences.enrollment import new_enrollment, start_journey
from services.outreach.consent import erasure
from services.outreach.prospects import ProspectDirectory
from shared.auth import require_api_key
from shared.db import Session
from shared.errors import AppError
from shared.requests import InternalModel

router = APIRouter(dependencies=[Depends(require_api_key)])
TIERS = "ABCD"  # best first
CONCURRENCY = 8


class Candidate(InternalModel):
    prospect_id: str = Field(min_length=1, max_length=64)
    tier: str = Field(pattern="^[ABCD]$", max_length=1)


class AutoEnrollIn(InternalModel):
    items: list[Candidate] = Field(max_length=1000)


class AutoEnrollOut(BaseModel):
    enrolled: dict[str, str] = Field(description="prospect id -> cadence id")
    skipped: dict[str, str] = Field(description="prospect id -> why not")


@dataclass(frozen=True)
class AutoCadence:
    cadence_id: str
    min_tier: str


async def auto_cadences(session: Session) -> list[AutoCadence]:
    """The auto-enrolling cadences (by their current version), strictest tier first."""
    c, v = models.Cadence, models.CadenceVersion
    # one statement, not one more per cadence: every new prospect's event asks
    current = await session.execute(
        select(c.id, v.definition)
        .join(v, (v.cadence_id == c.id) & (v.version == c.current_version))
        .order_by(c.created_at)
    )
    found = [
        AutoCadence(cadence_id, definition.get("auto_enroll_min_tier", "A"))
        for cadence_id, definition in current
        if definition.get("auto_enroll")
    ]
    return sorted(found, key=lambda c: TIERS.index(c.min_tier))  # stable: oldest first on ties


def cadence_for(cadences: list[AutoCadence], tier: str) -> AutoCadence | None:
    return next((c for c in cadences if TIERS.index(tier) <= TIERS.index(c.min_tier)), None)


async def _enroll_one(request: Request, candidate: Candidate, cadence: AutoCadence) -> str:
    """'' when enrolled (or already), else why not."""
    settings = request.app.state.settings
    directory: ProspectDirectory = request.app.state.prospects
    try:
        contact = await directory.contact(candidate.prospect_id)
    except AppError as err:
        if err.status == 404:
            return "no such prospect (erased or deleted)"
        raise
    async with request.app.state.sessions() as session:
        try:
            await erasure.refuse_erased_contact(
                session, settings.erasure_pepper.get_secret_value(), contact
            )
        except AppError:
            return "erased person"
        existing = await service.find_enrollment(session, candidate.prospect_id)
        if existing is not None:
            why = await _left_as_it_is(request, existing, cadence.cadence_id)
            if why is not None:
                return why
        version = existing.cadence_version if existing else None
        cadence_id = existing.cadence_id if existing else cadence.cadence_id
        snapshot = await service.cadence_snapshot(session, cadence_id, version)
        row = existing or await service.add_enrollment(
            session, new_enrollment(contact, cadence_id, snapshot.version)
        )
        if (row.cadence_id, row.cadence_version) != (cadence_id, snapshot.version):
            # a concurrent enrolment stored the run first: its cadence is the one that runs
            snapshot = await service.cadence_snapshot(session, row.cadence_id, row.cadence_version)
        await session.commit()
        run_id = await start_journey(request.app.state.temporal, settings, row, contact, snapshot)
        if row.run_id is None and run_id is not None:
            # the run's activities find their run by it (runs.calling_run_ended)
            await runs.remember_start(session, row.id, run_id)
            await session.commit()
    return ""


async def _left_as_it_is(request: Request, row: models.Enrollment, cadence_id: str) -> str | None:
    """Why an enrolled prospect gets nothing from this call ('' when running on `cadence_id`
    already), or None when their run was stored and never started. Starting the row of a run
    that ended started that run a second time, under its keys: the cadence again for a client,
    won or lost, whose tier was raised."""
    status = await runs.run_status(request.app.state.temporal, row)
    if status.state == runs.RunState.RUNNING:
        return "" if row.cadence_id == cadence_id else f"running on cadence {row.cadence_id}"
    if status.state == runs.RunState.ENDED or row.outcome is not None:
        return (
            f"enrolled before: run {row.run} ended ({row.outcome or 'outcome not reported'}); "
            "a new run is an enrolment's (POST /enrollments)"
        )
    if not runs.stored_not_started(row, "enrollment"):
        return f"run {row.run} ({row.origin}) is stored and is started by its own request"
    return None


@router.post("/internal/auto-enrollments", tags=["enrollments"])
async def auto_enroll(body: AutoEnrollIn, request: Request, session: Session) -> AutoEnrollOut:
    """Enroll each prospect in the auto-enrolling cadence their tier qualifies for (called by
    prospecting's outbox; 503 when a journey could not start: the whole call is retried)."""
    cadences = await auto_cadences(session)
    await session.commit()  # nothing written: end the read before the slow part
    enrolled: dict[str, str] = {}
    skipped: dict[str, str] = {}
    chosen = []
    for candidate in body.items:
        cadence = cadence_for(cadences, candidate.tier)
        if cadence is None:
            skipped[candidate.prospect_id] = (
                f"no auto-enrolling cadence takes tier {candidate.tier}"
            )
        else:
            chosen.append((candidate, cadence))
    # SQLite has one writer: taking turns there beats waiting on its lock
    sqlite = session.get_bind().dialect.name == "sqlite"
    limit = asyncio.Semaphore(1 if sqlite else CONCURRENCY)

    async def one(candidate: Candidate, cadence: AutoCadence) -> tuple[str, str, str]:
        async with limit:
            why = await _enroll_one(request, candidate, cadence)
            return candidate.prospect_id, cadence.cadence_id, why

    for prospect_id, cadence_id, why in await asyncio.gather(*(one(c, a) for c, a in chosen)):
        if why:
            skipped[prospect_id] = why
        else:
            enrolled[prospect_id] = cadence_id
    return AutoEnrollOut(enrolled=enrolled, skipped=skipped)
