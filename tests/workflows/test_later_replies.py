"""What the prospect writes after their first reply, while the journey runs (workflows/journey/
replies.py), on the time-skipping server: each email or text becomes a task for the rep."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from shared.contracts.journey import (
    DealClosed,
    QualificationRecorded,
    ReplyReceived,
    StopCadence,
    system_actor,
)
from shared.contracts.names import Query, Sig
from tests.support.journey_harness import Harness


def replies(h: Harness) -> list[tuple[str, str, str]]:
    return [
        (t.kind, t.context["channel"], t.context["reply"])
        for t in h.rec.tasks
        if t.kind in ("reply", "client_reply")
    ]


async def test_a_second_reply_while_qualifying_is_a_task_with_its_text(harness: Harness) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "tell me more"))
    await harness.env.sleep(timedelta(hours=1))
    second = ReplyReceived("sms", "SM2", "Actually, call me on Tuesday")
    await handle.signal(Sig.REPLY_RECEIVED, second)
    await handle.signal(Sig.REPLY_RECEIVED, second)  # the relay's retry: one task
    # not the prospect writing: the rep's own call outcome, and a booking through the link
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("call_task", "task:t1", "connected: ok"))
    await handle.signal(
        Sig.REPLY_RECEIVED,
        ReplyReceived("booking link", "booking-m1", "booked", system_actor("booking link")),
    )
    await harness.env.sleep(timedelta(hours=1))
    assert replies(harness) == [("reply", "sms", "Actually, call me on Tuesday")]
    task = next(t for t in harness.rec.tasks if t.kind == "reply")
    assert task.key == f"{handle.id}:reply:SM2"
    assert task.title == "Ada Lovelace replied by sms (qualifying)"
    assert task.context["stage"] == "qualifying"
    # the first reply is the qualify task's, not one of these
    qualify = next(t for t in harness.rec.tasks if t.kind == "qualify")
    assert "tell me more" in qualify.body
    state = await handle.query(Query.STATE)
    assert state["stage"] == "qualifying"
    await handle.terminate()


async def test_a_won_client_s_reply_while_asked_for_referrals_reaches_the_rep(
    harness: Harness,
) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=8))  # the referral request went out
    long_id = "<" + "x" * 200 + "@mail.example.com>"  # longer than a task key holds
    await handle.signal(
        Sig.REPLY_RECEIVED, ReplyReceived("email", long_id, "Happy to: try my colleague Bo")
    )
    await harness.env.sleep(timedelta(hours=1))
    assert replies(harness) == [("client_reply", "email", "Happy to: try my colleague Bo")]
    task = next(t for t in harness.rec.tasks if t.kind == "client_reply")
    assert task.title == "Ada Lovelace (a client) replied by email"
    assert task.context["stage"] == "referrals" and len(task.key) < 200
    await handle.terminate()


async def test_a_reply_in_a_run_started_at_qualifying_reaches_the_rep(harness: Harness) -> None:
    """A late reply's run starts past contacting: the prospect's next reply is not one the
    journey acts on either."""
    handle = await harness.start(start_stage="qualifying", run=2, start_cause="late reply")
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m7", "Is Friday ok?"))
    await harness.env.sleep(timedelta(hours=1))
    assert replies(harness) == [("reply", "email", "Is Friday ok?")]
    assert next(t for t in harness.rec.tasks if t.kind == "reply").key == f"{handle.id}.r2:reply:m7"
    await handle.terminate()


async def test_a_reply_heard_with_a_stop_is_the_reps_to_answer(harness: Harness) -> None:
    """The prospect replies and a stop comes at the same moment (here both while the contacting
    stage's record is in flight; a touch in flight does the same): the stop ends the cadence
    (nurture), and the reply, which the journey will not act on, becomes the rep's task. Before,
    it was neither qualified nor told."""
    harness.rec.hold_stage = "contacting"
    handle = await harness.start()
    await asyncio.wait_for(harness.rec.stage_held.wait(), 60)
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "Call me Tuesday"))
    await handle.signal(Sig.STOP_CADENCE, StopCadence("unsubscribe link"))
    harness.rec.release_stage.set()
    assert await handle.result() == "nurture"
    assert replies(harness) == [("reply", "email", "Call me Tuesday")]
