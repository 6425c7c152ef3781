"""Races of the journey's edges (review of 2026-12-06, second), on the time-skipping server.

A deal event heard before a reopening (a close repeated by the client's retry, a stale stage
move) never decides the reopened deal (Patch.REOPENING_DROPS_STALE_DEAL_EVENTS); a reply the
run accepted while it ends (its last stage record, its end report) still becomes the rep's task
(Patch.REPLIES_TOLD_AFTER_RUN_END); a deal whose verdict never reached the journey is not left
in qualifying for ever: at the timeout, its stage is its verdict
(Patch.VERDICT_FROM_DEAL_STAGE); and a deal heard moving on or closing, its verdict lost, is
qualified at once (Patch.VERDICT_FROM_DEAL_EVENTS).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType

from shared.contracts.journey import (
    DealClosed,
    DealReopened,
    DealStageMoved,
    JourneyState,
    QualificationRecorded,
    ReplyReceived,
    Stage,
)
from shared.contracts.names import Query, Sig
from tests.support.eventually import eventually
from tests.support.journey_harness import Harness, cadence
from tests.workflows.test_journey_deals import presenting

# --- a reopening drops the deal events heard before it ----------------------------------------


async def test_a_repeated_close_does_not_close_the_reopened_deal(harness: Harness) -> None:
    """The close's HTTP answer was lost: the client repeats POST /close and deals signals the
    same close again (services/deals/closing/api.py). Reopened later, the deal stays open."""
    handle = await presenting(harness)  # the referral reminders keep the stage going
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=8))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    await harness.env.sleep(timedelta(hours=1))
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert (state.stage, state.finished) == ("objections", False)
    # the deal's next close decides it
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget after all"))
    assert await handle.result() == "lost"
    assert harness.rec.stage_path()[2:] == [
        "presenting",
        "closing",
        "won",
        "referrals",
        "objections",
        "closing",
        "lost",
    ]
    assert harness.rec.stages[-1].cause == "closed lost: no budget after all"


async def test_a_repeated_loss_does_not_close_the_deal_reopened_while_losing(
    harness: Harness,
) -> None:
    harness.rec.hold_stage = "lost"
    handle = await presenting(harness, cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await asyncio.wait_for(harness.rec.stage_held.wait(), 60)
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    harness.rec.release_stage.set()
    await harness.env.sleep(timedelta(hours=1))
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert (state.stage, state.finished) == ("objections", False)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed after all"))
    assert await handle.result() == "won"
    assert harness.rec.stage_path()[2:] == [
        "presenting",
        "closing",
        "lost",
        "objections",
        "closing",
        "won",
        "referrals",
    ]


async def test_a_stage_move_heard_before_the_reopening_does_not_move_the_reopened_deal(
    harness: Harness,
) -> None:
    """A move to closing retried after the win (its first signal failed) is queued when the deal
    is reopened to objections: the reopening says where the deal is."""
    handle = await presenting(harness, cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=1))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    await harness.env.sleep(timedelta(hours=1))
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert (state.stage, state.finished) == ("objections", False)
    # a move heard after the reopening still counts
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed again"))
    assert await handle.result() == "won"
    assert harness.rec.stage_path()[2:] == [
        "presenting",
        "closing",
        "won",
        "objections",
        "closing",
        "won",
        "referrals",
    ]
    assert harness.rec.stages[6].cause.startswith("deal deal-1")  # the later move, not the close


# --- every reply the run accepted reaches the rep ---------------------------------------------


def reply_tasks(h: Harness) -> list[tuple[str, str, str]]:
    return [(t.kind, t.key, t.context["reply"]) for t in h.rec.tasks if t.kind.endswith("reply")]


async def test_a_reply_while_the_run_reports_its_end_becomes_a_task(harness: Harness) -> None:
    """The run is still open while it reports its end: the inbox relay's signal is accepted (it
    routes a reply to the late-replies path only when the journey is gone), so the run tells
    the rep."""
    harness.rec.hold_run_end = True
    handle = await presenting(harness)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await asyncio.wait_for(harness.rec.run_end_held.wait(), 60)
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m2", "wait, we found budget"))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m2", "wait, we found budget"))
    harness.rec.release_run_end.set()
    assert await handle.result() == "lost"
    assert reply_tasks(harness) == [("reply", f"{handle.id}:reply:m2", "wait, we found budget")]
    task = next(t for t in harness.rec.tasks if t.kind == "reply")
    assert task.context["stage"] == "lost"
    assert [e.outcome for e in harness.rec.run_ends] == ["lost"]


async def test_a_reply_task_in_flight_when_the_run_ends_is_not_cancelled(
    harness: Harness,
) -> None:
    """The rep's task for a reply is being made (outreach slow) while the deal closes: the run
    ends only once it is made, instead of cancelling it with the run's timers."""
    harness.rec.hold_task_kind = "reply"
    handle = await presenting(harness)
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM2", "send the contract"))
    await asyncio.wait_for(harness.rec.task_held.wait(), 60)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))

    async def ended() -> bool:
        return bool(harness.rec.run_ends)

    await eventually(ended, "the run's end reported")
    harness.rec.release_task.set()
    assert await handle.result() == "lost"
    history = await handle.fetch_history()
    # before: the end of the run cancelled the task's activity (it may never have landed)
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED not in kinds
    assert reply_tasks(harness) == [("reply", f"{handle.id}:reply:SM2", "send the contract")]


# --- a verdict that never came: the deal's stage at the timeout --------------------------------


async def past_the_gate_unheard(harness: Harness, deal_stage: str, **cadence_fields: Any) -> Any:
    """Replied; the deal moved on (to `deal_stage`) without its verdict reaching the journey (the
    request's signal failed, and its repeat was never made; a gate passed straight to presenting
    signals nothing else): deals answers that at the timeout."""
    harness.rec.timeout_stage = deal_stage
    handle = await harness.start(cadence=cadence(referral_reminders=0, **cadence_fields))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    return handle


async def test_a_deal_past_the_gate_whose_verdict_never_came_is_qualified_at_the_timeout(
    harness: Harness,
) -> None:
    handle = await past_the_gate_unheard(harness, Stage.PRESENTING)
    await harness.env.sleep(timedelta(days=30))
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert state.stage == "presenting", harness.rec.stage_path()
    # the moves and the close the deal tells from now on are followed
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    assert await handle.result() == "won"
    path = ["qualifying", "presenting", "closing", "won", "referrals"]
    assert harness.rec.stage_path()[1:] == path
    assert harness.rec.stages[2].actor == "system:deal stage"  # presenting: no rep's verdict


async def test_a_verdict_on_its_way_at_the_timeout_is_the_one_taken(harness: Harness) -> None:
    """The verdict's signal comes within the hour after the timeout: the rep's verdict stands,
    with its reasons and who recorded it."""
    handle = await past_the_gate_unheard(harness, Stage.PRESENTING)
    # the cadence's timeout is 5 days after the reply, an hour before the move
    await harness.env.sleep(timedelta(days=5, minutes=-30))
    verdict = QualificationRecorded("deal-1", True, ["budget confirmed"], "admin (k1)")
    await handle.signal(Sig.QUALIFICATION_RECORDED, verdict)
    await harness.env.sleep(timedelta(hours=2))
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert state.stage == "presenting"
    entry = harness.rec.stages[2]
    assert (entry.to_stage, entry.actor) == ("presenting", "admin (k1)"), entry


async def test_a_deal_disqualified_whose_verdict_never_came_disqualifies_at_the_timeout(
    harness: Harness,
) -> None:
    """The rep disqualified the deal and the signal was lost; the cadence's own timeout outcome
    is nurture: the rep's word, the deal's stage, decides."""
    handle = await past_the_gate_unheard(
        harness, Stage.DISQUALIFIED, qualification_timeout_outcome="nurture"
    )
    assert await asyncio.wait_for(handle.result(), 60) == "disqualified"
    assert harness.rec.stages[-1].actor == "system:deal stage"


async def test_a_deal_won_whose_verdict_never_came_is_followed_at_once(harness: Harness) -> None:
    """The gate's signal was lost, and the deal was then won: the journey waited for the
    timeout, reminding the rep to qualify a client and telling the manager that the prospect
    "has not qualified". The close says the gate was passed."""
    harness.rec.manager_id = "mgr-1"
    handle = await harness.start(cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed", "admin (k1)"))
    assert await handle.result() == "won"
    assert [t.kind for t in harness.rec.tasks if t.kind.startswith("q")] == ["qualify"]
    assert not [t for t in harness.rec.tasks if t.kind == "escalation"]
    assert not [n for n in harness.rec.notes if "qualification" in n.cause or "escalat" in n.cause]
    path = ["qualifying", "presenting", "closing", "won", "referrals"]
    assert harness.rec.stage_path()[1:] == path
    presenting = harness.rec.stages[2]
    assert (presenting.to_stage, presenting.actor) == ("presenting", "admin (k1)")


async def test_a_deal_moved_on_whose_verdict_never_came_follows_the_move(
    harness: Harness,
) -> None:
    harness.rec.manager_id = "mgr-1"
    handle = await harness.start(cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing", actor="rep (k2)"))

    async def closing() -> bool:
        # the state says closing as the journey enters it; the stage is recorded just after
        state = await handle.query(Query.STATE, result_type=JourneyState)
        return state.stage == "closing" and harness.rec.stage_path()[-1] == "closing"

    await eventually(closing, "the journey at closing, recorded")
    assert harness.rec.stage_path()[1:] == ["qualifying", "presenting", "closing"]
    assert harness.rec.stages[2].actor == "rep (k2)"
    # days on, past the cadence's qualification timeout: nothing of qualifying came back
    await harness.env.sleep(timedelta(days=10))
    assert [t.kind for t in harness.rec.tasks if t.kind.startswith("q")] == ["qualify"]
    assert not [t for t in harness.rec.tasks if t.kind == "escalation"]
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert state.stage == "closing"
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    assert await handle.result() == "lost"
