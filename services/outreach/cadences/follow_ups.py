"""The end of a journey run, and what follows it: re-engagement by a follow-up cadence.

The journey tells outreach how each run ended (activity `outreach.record_run_end`): the run's
enrollment row keeps the outcome. A prospect nurtured by a cadence that names a
`follow_up_cadence_id` gets a `follow_ups` row due `follow_up_after_seconds` later: the
due-table, processed by outreach's user of the one relay (shared.relay), so it survives
restarts and is retried with backoff while prospecting or Temporal is away. When due, the
prospect is enrolled in the follow-up cadence as a new run, with the checks of any enrollment
(erased person, do-not-contact, consent on every channel we can reach them on); a refused one
keeps its reason (GET /follow-ups). A follow-up is cancelled when the prospect was enrolled by
hand meanwhile (the current run is not the nurtured one).

A referred journey's run is started by outreach as well (cadences/referred_runs.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from services.outreach import models
from services.outreach.cadences import runs, schemas, service
from services.outreach.cadences.enrollment import start_journey
from services.outreach.prospects import ProspectDirectory
from shared.activity_boundary import activity_boundary
from shared.app import run_during_lifespan
from shared.auth import require_api_key
from shared.contracts.journey import RunEnded, Stage
from shared.contracts.names import Act
from shared.db import Session
from shared.errors import AppError
from shared.ids import IdFilter
from shared.paging import MAX_LIMIT, After, Limit, Linked, page, where_given
from shared.relay import LeasedTable, Outcome, Relay, RelayTiming, done, give_up, retry
from shared.settings import Settings

log = logging.getLogger(__name__)

PENDING, ENROLLED, REFUSED, CANCELLED = "pending", "enrolled", "refused", "cancelled"


# --- the journey's side: a run ended ------------------------------------------------------------


class RunActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity_boundary(Act.RECORD_RUN_END)
    async def record_run_end(self, session: AsyncSession, end: RunEnded) -> None:
        """Idempotent: a retry finds the outcome recorded and the follow-up due already."""
        at = datetime.fromisoformat(end.at)
        e = models.Enrollment
        row = await session.scalar(
            select(e).where(e.prospect_id == end.prospect_id, e.run == end.run)
        )
        if row is not None and row.outcome is None:
            # written under the row's lock: an activity of the run holding it
            # (runs.calling_run_ended) commits its task or claim first, later ones see the end
            row.outcome, row.ended_at = end.outcome, at
        if end.outcome != Stage.NURTURE or not end.cadence_id:
            return
        definition = await service.get_cadence(session, end.cadence_id)
        if definition.follow_up_cadence_id is None:
            return
        due = at + timedelta(seconds=definition.follow_up_after_seconds)
        try:
            async with session.begin_nested():
                session.add(
                    models.FollowUp(
                        prospect_id=end.prospect_id,
                        after_run=end.run,
                        from_cadence_id=end.cadence_id,
                        cadence_id=definition.follow_up_cadence_id,
                        due_at=due,
                        next_attempt_at=due,
                        status=PENDING,
                    )
                )
        except IntegrityError:
            pass  # a retried activity: the follow-up is due already


# --- the relay: enrolling due follow-ups ---------------------------------------------------------


@dataclass(frozen=True)
class DueFollowUp:
    id: str
    prospect_id: str
    after_run: int
    cadence_id: str
    attempts: int


@dataclass(frozen=True)
class FollowUpTiming(RelayTiming):
    lease: float = 60.0


async def _load(session: AsyncSession, ids: Sequence[Any]) -> list[DueFollowUp]:
    f = models.FollowUp
    rows = await session.scalars(select(f).where(f.id.in_(ids)).order_by(f.due_at, f.id))
    return [
        DueFollowUp(r.id, r.prospect_id, r.after_run, r.cadence_id, r.attempts) for r in rows.all()
    ]


TABLE: LeasedTable[DueFollowUp] = LeasedTable.of(
    models.FollowUp,
    pending=lambda: models.FollowUp.status == PENDING,
    order_by=(models.FollowUp.next_attempt_at, models.FollowUp.id),
    load=_load,
    due_since=models.FollowUp.due_at,  # written at the nurture, due weeks later
)


class FollowUpRelay(Relay[DueFollowUp]):
    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        client: Callable[[], Client],
        prospects: Callable[[], ProspectDirectory],
        settings: Settings,
        timing: FollowUpTiming | None = None,
    ) -> None:
        super().__init__(
            "follow-up relay", sessions, TABLE, self._enroll, timing or FollowUpTiming()
        )
        self._client = client
        self._prospects = prospects
        self._settings = settings

    async def _enroll(self, item: DueFollowUp) -> Outcome:
        try:
            # the person as they come back: one whose rep left while they were nurtured goes to
            # an active rep first, as any come back does (harmless when no run follows)
            contact = await self._prospects().comeback(item.prospect_id)
        except AppError as err:
            if err.status == 404:
                return give_up(f"{err.code}: {err}", status=CANCELLED, reason="prospect is gone")
            return retry(f"prospecting: {err}")
        async with self._sessions()() as session:
            current = await runs.current_run(session, item.prospect_id)
            # the run an earlier attempt of this follow-up stored, its start failed: see it
            # through (its checks were passed; the journey checks consent at every send)
            ours = (
                current is not None
                and current.run == item.after_run + 1
                and runs.stored_not_started(current, runs.FOLLOW_UP)
            )
            if current is None or (current.run != item.after_run and not ours):
                return done(status=CANCELLED, reason="the prospect was enrolled again meanwhile")
            if not ours:
                why = await runs.refusal(session, item.prospect_id, contact.email, contact.phone)
                if why is not None:
                    return done(status=REFUSED, reason=why.detail)
            try:
                planned = await runs.plan_run(
                    session,
                    self._client(),
                    self._settings,
                    contact,
                    runs.NewRun(
                        item.prospect_id, item.cadence_id, origin=runs.FOLLOW_UP, hold_to_gap=False
                    ),
                )
            except AppError as err:
                if err.status == 503:
                    return retry(str(err))
                return done(status=REFUSED, reason=f"{err.code}: {err}")
            await session.commit()
            try:
                run_id = await start_journey(
                    self._client(), self._settings, planned.row, contact, planned.snapshot
                )
            except AppError as err:
                return retry(str(err))  # the row is stored: the retry reaches the same run
            await runs.remember_start(session, planned.row.id, run_id)
            await session.commit()
            return done(status=ENROLLED, run=planned.row.run, reason="")


def install_relay(app: FastAPI, settings: Settings, timing: FollowUpTiming | None = None) -> None:
    """app.state.follow_ups, its loop running while the app's lifespan does."""
    relay = FollowUpRelay(
        lambda: app.state.sessions,
        lambda: app.state.temporal,
        lambda: app.state.prospects,
        settings,
        timing,
    )
    app.state.follow_ups = relay
    run_during_lifespan(app, relay)


async def cancel_pending(session: AsyncSession, prospect_id: str, reason: str) -> None:
    """A manual enrollment or an opt-out takes the place of a pending follow-up."""
    f = models.FollowUp
    await session.execute(
        update(f)
        .where(f.prospect_id == prospect_id, f.status == PENDING)
        .values(status=CANCELLED, reason=reason, updated_at=datetime.now(UTC))
    )


# --- the API -------------------------------------------------------------------------------------

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["enrollments"])


@router.get("/follow-ups", response_model=list[schemas.FollowUp])
async def list_follow_ups(
    session: Session,
    link: Linked,
    prospect_id: IdFilter = None,
    status: str | None = Query(
        None, pattern="^(pending|enrolled|refused|cancelled)$", max_length=9
    ),
    limit: Limit = MAX_LIMIT,  # what one answer held before it paged
    after: After = None,
) -> list[models.FollowUp]:
    """Re-engagements scheduled by follow-up cadences, with what became of each, earliest due
    first; the Link header's `after` for the next page."""
    f = models.FollowUp
    query = where_given(select(f), (f.prospect_id, prospect_id), (f.status, status))
    order = [f.due_at, f.id]
    return link(await page(session, query, order, after=after, limit=limit, what="follow-up"))
