"""A booking through a link of a journey run that is no longer running is a late reply (deals
asks: POST /internal/prospects/{id}/late-bookings, before it books anything).

The answer names the run whose deal the booking goes on: the prospect's running run (a newer run
started since the link was sent: it hears the booking as a reply), or the run the late reply
started at qualifying (`late_reply: restart_at_qualifying`: that run carries the booked deal,
whose key it opens by). `run_key` null: no run takes it (the default policy, a won client, the
do-not-contact list, never enrolled): deals books nothing, and the rep has the late reply's task
with the time asked for. Idempotent: the task's key is the booking's, and a repeat finds the run
it started running.

GET of the same path tells, without doing anything, whether a booking through such a link would
be booked now (`books`): the booking page asks before it offers times as bookable, and says the
time picked is passed on to the rep when it would not be.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach.cadences import runs
from services.outreach.late_replies import RESTARTED, LateEvents, LateReply
from shared.contracts.journey import run_key
from shared.db import Session
from shared.requests import InternalModel

CHANNEL = "booking link"
RUNNING = "running"


class LateBookingIn(InternalModel):
    journey_key: str = Field(min_length=1, max_length=128, description="the link's run key")
    asked: str = Field(min_length=1, max_length=200, description="the time picked, as words")
    key: str = Field(min_length=1, max_length=150, description="the booking's: its task's key")


class LateBooking(BaseModel):
    run_key: str | None = Field(description="the run the booking goes to; null: none")
    outcome: str = Field(description="running | restarted | late_reply_task | ...")
    detail: str = ""


class LateBookingForecast(BaseModel):
    books: bool = Field(description="whether a booking would be booked now (else: passed on)")
    outcome: str = Field(description="what it would become, as `LateBooking.outcome`")


router = APIRouter(tags=["replies"])
PATH = "/internal/prospects/{prospect_id}/late-bookings"


async def _running_run(request: Request, session: AsyncSession, prospect_id: str) -> int | None:
    """The number of the prospect's run that runs now, if one does (the session's read ends:
    the late reply reads and writes in sessions of its own)."""
    row = await runs.current_run(session, prospect_id)
    await session.commit()
    if row is None or row.outcome is not None:
        return None
    status = await runs.run_status(request.app.state.temporal, row)
    running = status.state == runs.RunState.RUNNING and status.outcome is None
    return row.run if running else None


@router.get(PATH, response_model=LateBookingForecast)
async def foresee_late_booking(
    prospect_id: str, request: Request, session: Session
) -> LateBookingForecast:
    if await _running_run(request, session, prospect_id) is not None:
        return LateBookingForecast(books=True, outcome=RUNNING)
    late: LateEvents = request.app.state.late
    outcome = await late.foresee(prospect_id)
    return LateBookingForecast(books=outcome == RESTARTED, outcome=outcome)


@router.post(PATH, response_model=LateBooking)
async def late_booking(
    prospect_id: str, body: LateBookingIn, request: Request, session: Session
) -> LateBooking:
    state = request.app.state
    run = await _running_run(request, session, prospect_id)
    if run is not None:
        key = run_key(prospect_id, run)
        return LateBooking(run_key=key, outcome=RUNNING, detail=f"run {run} runs")
    late: LateEvents = state.late
    text = f"asked to meet on {body.asked}, through the booking link of an earlier message"
    done, run = await late.reply(LateReply(prospect_id, CHANNEL, text, f"booking:{body.key}"))
    return LateBooking(
        run_key=run_key(prospect_id, run) if run else None,
        outcome=done["outcome"],
        detail=done["outcome_detail"],
    )
