"""Races of the journey's edges (review of 2026-12-07), on the time-skipping server.

A deal event heard before a reopening (a close repeated by the client's retry, a stale stage
move) never decides the reopened deal (Patch.REOPENING_DROPS_STALE_DEAL_EVENTS).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from shared.contracts.journey import (
    DealClosed,
    DealReopened,
    DealStageMoved,
    JourneyState,
)
from shared.contracts.names import Query, Sig
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
