"""A booking through a link of a journey run that is no longer running is a late reply (deals
asks: POST /internal/prospects/{id}/late-bookings, before it books anything).

The answer names the run whose deal the booking goes on: the prospect's running run (a newer run
started since the link was sent: it hears the booking as a reply), or the run the late reply
started at qualifying (`late_reply: restart_at_qualifying`: that run carries the booked deal,
whose key it opens by). `run_key` null: no run takes it (the default policy, a won client, the
do-not-contact list, never enrolled): deals books nothing, and the rep has the late reply's task
with the time asked for. Idempotent: the task's key is the booking's, and a repeat finds the run
it started running.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from services.outreach.cadences import runs
from services.outreach.late_replies import LateEvents, LateReply
from shared.contracts.journey import run_key
from shared.db import Session
from shared.requests import InternalModel

CHANNEL = "booking link"


class LateBookingIn(InternalModel):
    journey_key: str = Field(min_length=1, max_length=128, description="the link's run key")
    asked: str = Field(min_length=1, max_length=200, description="the time picked, as words")
    key: str = Field(min_length=1, max_length=150, description="the booking's: its task's key")


class LateBooking(BaseModel):
    run_key: str | None = Field(description="the run the booking goes to; null: none")
    outcome: str = Field(description="running | restarted | late_reply_task | ...")
    detail: str = ""


router = APIRouter(tags=["replies"])


@router.post("/internal/prospects/{prospect_id}/late-bookings", response_model=LateBooking)
async def late_booking(
    prospect_id: str, body: LateBookingIn, request: Request, session: Session
) -> LateBooking:
    state = request.app.state
    row = await runs.current_run(session, prospect_id)
    if row is not None and row.outcome is None:
        status = await runs.run_status(state.temporal, row)
        if status.state == runs.RunState.RUNNING and status.outcome is None:
            key = run_key(prospect_id, row.run)
            return LateBooking(run_key=key, outcome="running", detail=f"run {row.run} runs")
    await session.commit()  # read only: the late reply writes in sessions of its own
    late: LateEvents = state.late
    text = f"asked to meet on {body.asked}, through the booking link of an earlier message"
    done, run = await late.reply(LateReply(prospect_id, CHANNEL, text, f"booking:{body.key}"))
    return LateBooking(
        run_key=run_key(prospect_id, run) if run else None,
        outcome=done["outcome"],
        detail=done["outcome_detail"],
    )
