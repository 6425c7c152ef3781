"""Later runs of a prospect's journey (come back, issue 10) on the time-skipping server: the run's
rows are keyed apart from the first run's, a late reply's run starts at qualifying, a reopened
deal's run at presenting, every run reports how it ended, and a later run's first stage reaches
the prospect's task cards."""

from __future__ import annotations

from shared.contracts.journey import DealClosed, QualificationRecorded, Stage, journey_id
from shared.contracts.names import Sig
from tests.support.journey_harness import Harness


async def test_a_first_run_keeps_its_keys_and_reports_its_end(harness: Harness) -> None:
    handle = await harness.start()
    assert await handle.result() == Stage.NURTURE
    base = handle.id
    assert all(c.key.startswith(f"{base}:") for c in harness.rec.stages)
    assert {t.journey_id for t in harness.rec.touches} == {base}
    [end] = harness.rec.run_ends
    assert (end.run, end.outcome, end.cadence_id) == (1, Stage.NURTURE, "c1")
    # a first run's prospect has no task at its first stage: outreach hears the later ones
    assert [e.stage for e in harness.rec.entered] == [Stage.NURTURE]


async def test_a_late_reply_run_starts_at_qualifying_with_its_own_keys(harness: Harness) -> None:
    handle = await harness.start(
        start_stage=Stage.QUALIFYING, run=2, start_cause="late reply by sms: call me"
    )
    await handle.signal(
        Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no budget"])
    )
    assert await handle.result() == Stage.DISQUALIFIED
    run_key = f"{handle.id}.r2"
    assert harness.rec.stage_path() == ["qualifying", "disqualified"]
    assert harness.rec.stages[0].cause == "late reply by sms: call me"
    assert all(c.key.startswith(f"{run_key}:") for c in harness.rec.stages)
    assert harness.rec.touches == []  # no cadence: the prospect came back by themselves
    assert [d.journey_id for d in harness.rec.deals] == [run_key]  # a deal of its own
    qualify = next(t for t in harness.rec.tasks if t.kind == "qualify")
    assert qualify.key.startswith(f"{run_key}:") and "call me" in qualify.body
    assert [(e.run, e.outcome) for e in harness.rec.run_ends] == [(2, Stage.DISQUALIFIED)]
    # outreach heard both stages: the earlier runs' open tasks show the stage the prospect is in
    assert [(e.stage, e.journey_id) for e in harness.rec.entered] == [
        ("qualifying", run_key),
        ("disqualified", run_key),
    ]


async def test_a_reopened_deal_run_carries_on_at_presenting(harness: Harness) -> None:
    handle = await harness.start(start_stage=Stage.PRESENTING, run=3, deal_id="deal-9")
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-9", False, "a rival"))
    assert await handle.result() == Stage.LOST
    assert harness.rec.stage_path() == ["presenting", "closing", "lost"]
    assert harness.rec.deals == []  # the reopened deal, not a new one
    assert [e.stage for e in harness.rec.entered] == ["presenting", "closing", "lost"]
    assert handle.id == journey_id(harness.rec.stages[0].prospect_id)
    assert [(e.run, e.outcome) for e in harness.rec.run_ends] == [(3, Stage.LOST)]


async def test_a_reopened_deal_won_again_in_a_new_run_does_not_ask_the_client_again(
    harness: Harness,
) -> None:
    """Run 2 won the deal and asked for referrals, then ended; the deal reopened came back as
    run 3 and was won again: the client got a second request, its reminders and a second
    thanks task. Outreach tells run 3 that an earlier run's win asked them."""
    handle = await harness.start(
        start_stage=Stage.PRESENTING, run=3, deal_id="deal-9", referral_asked_before=True
    )
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-9", True, "came back"))
    assert await handle.result() == Stage.WON
    assert harness.rec.asks == []
    assert [t.kind for t in harness.rec.tasks if t.kind == "thank_client"] == []
    assert harness.rec.stage_path()[-1] == "referrals"
    assert harness.rec.stages[-1].cause == "referral request sent at an earlier win"
