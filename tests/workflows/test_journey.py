"""The journey's logic over days of virtual time (time-skipping test server, with the recording
doubles and the `harness` fixture of tests/support/journey_harness.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from shared.contracts.journey import (
    CadenceStep,
    DealClosed,
    JourneyState,
    LinkReferral,
    MeetingScheduled,
    ObjectionLogged,
    PauseJourney,
    QualificationRecorded,
    RepAssigned,
    ReplyReceived,
    journey_id,
)
from shared.contracts.names import Query, Sig
from shared.contracts.plan import touch_groups
from tests.support.journey_harness import DAY, Harness, cadence
from workflows.referral_intake import ReferralIntake


def test_touch_groups_put_same_offset_steps_together() -> None:
    groups = touch_groups(cadence().steps)
    assert [[s.channel for s in g] for g in groups] == [["email", "sms"], ["email"], ["call_task"]]


async def test_no_reply_runs_every_step_then_nurture(harness: Harness) -> None:
    handle = await harness.start()
    assert await handle.result() == "nurture"
    assert [t.touch_key for t in harness.rec.touches] == ["step-0", "step-1", "step-2"]
    assert [s.channel for s in harness.rec.touches[0].steps] == ["email", "sms"]
    assert harness.rec.stage_path() == ["contacting", "nurture"]
    # the nurture decision came nurture_after_seconds after the last step (4 + 3 days)
    first, last = harness.rec.stages[0].at, harness.rec.stages[-1].at
    from datetime import datetime

    elapsed = datetime.fromisoformat(last) - datetime.fromisoformat(first)
    assert timedelta(days=7) <= elapsed < timedelta(days=7, hours=1)


async def test_a_new_rep_signs_the_messages_from_then_on(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(timedelta(days=1))
    await handle.signal(
        Sig.REP_ASSIGNED, RepAssigned("r2", "Nia New", "nia@example.com", "+14155550111")
    )
    assert await handle.result() == "nurture"
    reps = [(t.touch_key, t.contact.rep_id, t.contact.rep_name) for t in harness.rec.touches]
    assert reps[0] == ("step-0", "r1", "")
    assert reps[1:] == [("step-1", "r2", "Nia New"), ("step-2", "r2", "Nia New")]


async def test_a_signal_sent_with_the_start_is_taken_before_the_run_begins(
    harness: Harness,
) -> None:
    # signal-with-start delivers the signal (and a query may come) before the run method starts:
    # the journey's state must exist by then
    v2 = cadence(
        version=2, steps=[CadenceStep("email", 0, "Hi", "v2 hello")], nurture_after_seconds=60
    )
    handle = await harness.start(start_signal=(Sig.MIGRATE_CADENCE, v2))
    state = await handle.query(Query.STATE)
    assert state["cadence_version"] == 2
    assert await handle.result() == "nurture"
    assert [t.steps[0].subject for t in harness.rec.touches] == ["v2 hello"]


async def test_reply_stops_touches_and_opens_a_deal(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(timedelta(days=1))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "Tell me more"))
    await harness.env.sleep(timedelta(days=10))
    state = await handle.query(Query.STATE)
    assert [t.touch_key for t in harness.rec.touches] == ["step-0"]
    assert harness.rec.stage_path()[:2] == ["contacting", "qualifying"]
    assert (
        harness.rec.deals and harness.rec.deals[0].prospect_id == harness.rec.stages[0].prospect_id
    )
    kinds = [t.kind for t in harness.rec.tasks]
    assert kinds[:2] == ["qualify", "qualification_reminder"]
    assert "Tell me more" in harness.rec.tasks[0].body
    # 10 days without a verdict: past the 5-day timeout, so the deal was expired
    assert harness.rec.expired == ["deal-1"]
    assert harness.rec.stage_path()[-1] == "disqualified"
    assert state["finished"] if isinstance(state, dict) else state.finished


async def test_deferred_channel_is_retried_at_the_window(harness: Harness) -> None:
    harness.rec.defer_first_sms_until = "2000-01-01T00:00:00+00:00"  # in the past: retry at once
    handle = await harness.start(cadence=cadence(nurture_after_seconds=60))
    await handle.result()
    assert [t.touch_key for t in harness.rec.touches][:2] == ["step-0", "step-0"]


async def test_full_path_to_referrals(harness: Harness) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await handle.signal(
        Sig.MEETING_SCHEDULED,
        MeetingScheduled("m1", "deal-1", "2100-01-01T10:00:00+00:00", "Demo"),
    )
    await handle.signal(
        Sig.OBJECTION_LOGGED,
        ObjectionLogged("o1", "deal-1", "price", "too expensive", ["Show ROI"]),
    )
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    assert await handle.result() == "won"
    assert harness.rec.stage_path() == [
        "contacting",
        "qualifying",
        "presenting",
        "objections",
        "closing",  # a deal decided from objections passes through closing (issue 10)
        "won",
        "referrals",
    ]
    # every stage after the first told outreach, so tasks follow the journey
    assert [e.stage for e in harness.rec.entered] == harness.rec.stage_path()[1:]
    kinds = [t.kind for t in harness.rec.tasks]
    assert {"qualify", "prepare_meeting", "objection", "thank_client"} <= set(kinds)
    objection_task = next(t for t in harness.rec.tasks if t.kind == "objection")
    assert "Show ROI" in objection_task.body
    assert (
        harness.rec.asks
        and harness.rec.asks[0].client_prospect_id == harness.rec.stages[0].prospect_id
    )
    ask_touch = next(t for t in harness.rec.touches if t.kind == "referral_ask")
    assert ask_touch.variables["referral_link"] == "http://referrals.test/r/tok"
    # the ask waited for the referral delay after the win
    from datetime import datetime

    won_at = datetime.fromisoformat(harness.rec.stages[-2].at)
    asked_at = datetime.fromisoformat(harness.rec.stages[-1].at)
    assert asked_at - won_at >= timedelta(days=7)


async def test_not_qualified_ends_disqualified(harness: Harness) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "hi"))
    await handle.signal(
        Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["budget: none"])
    )
    assert await handle.result() == "disqualified"
    assert "budget: none" in harness.rec.stages[-1].cause
    assert harness.rec.expired == []
    # the rep's qualify task (and a reminder, had there been one) is closed by the verdict
    assert [c.key_prefix for c in harness.rec.closed_tasks] == [f"{handle.id}:qualif"]


async def test_referral_intake_starts_a_journey_at_qualifying(queue_prefix: str) -> None:
    # A server of its own: the test server keeps time skipping locked after an abandoned
    # child workflow, which would stall the tests that share the session's server.
    from tests.support.fixtures import binary

    temporal_skipping = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    async with temporal_skipping, Harness(temporal_skipping, queue_prefix) as h:
        pid = await temporal_skipping.client.execute_workflow(
            ReferralIntake.run,
            h.intake_input(),
            id=f"intake-{uuid.uuid4().hex}",
            task_queue=h.queues.journeys,
        )
        assert pid == "p-referred"
        assert h.rec.referred[0].rep_id == "r1"
        assert h.rec.linked == [LinkReferral("ref1", "p-referred")]
        child = temporal_skipping.client.get_workflow_handle(journey_id("p-referred"))
        await child.signal(
            Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no need"])
        )
        assert await child.result() == "disqualified"
        assert h.rec.stage_path()[0] == "qualifying"
        # ids only (issue 11): the referrer's name never enters this person's records
        assert "Ada Lovelace" not in h.rec.stages[0].cause
        intro = next(t for t in h.rec.touches if t.kind == "warm_intro")
        assert intro.variables["referrer_prospect_id"] == h.rec.stages[0].cause.split()[-1]


async def test_pause_holds_touches_until_resume(harness: Harness) -> None:
    from datetime import datetime

    handle = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.PAUSE, PauseJourney("rep on vacation"))
    await harness.env.sleep(timedelta(days=5))  # step-1 (day 2) fell due while paused
    assert [t.touch_key for t in harness.rec.touches] == ["step-0"]
    state = await handle.query(Query.STATE)
    assert state["paused"] is True
    await handle.signal(Sig.RESUME)
    await harness.env.sleep(timedelta(minutes=1))
    assert [t.touch_key for t in harness.rec.touches][:2] == ["step-0", "step-1"]
    assert await handle.result() == "nurture"
    # step-2 was due on day 4 (during the pause): it keeps its gap after step-1 instead of
    # going out with it (tests/workflows/test_cadence_gaps.py)
    first = datetime.fromisoformat(harness.rec.stages[0].at)
    assert datetime.fromisoformat(harness.rec.stages[-1].at) - first >= timedelta(days=5)


async def test_pause_until_a_date_resumes_by_itself(harness: Harness) -> None:

    handle = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    # the test server's clock runs ahead of the wall clock; use its notion of now
    now = await harness.env.get_current_time()
    back = (now + timedelta(days=3)).isoformat()
    await handle.signal(Sig.PAUSE, PauseJourney("out of office", until=back))
    await harness.env.sleep(timedelta(days=2, hours=12))
    assert [t.touch_key for t in harness.rec.touches] == ["step-0"]
    await harness.env.sleep(timedelta(days=1))
    assert [t.touch_key for t in harness.rec.touches][:2] == ["step-0", "step-1"]
    # a journey left running would fire timers with no worker and stall time skipping
    await handle.terminate()


async def test_stop_ends_the_cadence_in_nurture(harness: Harness) -> None:
    from shared.contracts.journey import StopCadence

    handle = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.STOP_CADENCE, StopCadence("hard bounce"))
    assert await handle.result() == "nurture"
    assert [t.touch_key for t in harness.rec.touches] == ["step-0"]
    assert harness.rec.stages[-1].cause == "cadence stopped: hard bounce"


async def test_migration_applies_the_new_version_from_the_next_touch(harness: Harness) -> None:
    handle = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    v2 = cadence(
        version=2,
        steps=[
            CadenceStep("email", 0, "Hi", "Hello"),
            CadenceStep("sms", 0, "Hi"),
            CadenceStep("email", 3600 * 5, "New follow-up", "v2 follow-up"),
        ],
        nurture_after_seconds=60,
    )
    older = cadence(version=1)
    await handle.signal(Sig.MIGRATE_CADENCE, older)  # not newer: ignored
    await handle.signal(Sig.MIGRATE_CADENCE, v2)
    state = await handle.query(Query.STATE)
    assert state["cadence_version"] == 2
    assert await handle.result() == "nurture"
    assert [t.touch_key for t in harness.rec.touches] == ["step-0", "step-1"]
    assert harness.rec.touches[1].steps[0].subject == "v2 follow-up"


async def test_a_migration_accepted_before_the_reply_rules_the_rest_of_the_journey(
    harness: Harness,
) -> None:
    """Paused, the journey holds its due follow-up; it takes v2 meanwhile (its state, then its
    enrollment, say v2), and the reply comes before the follow-up went: it went on with v1's
    qualification rules."""
    handle = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.PAUSE, PauseJourney("on leave"))
    await harness.env.sleep(timedelta(days=3))  # step-2 fell due: held by the pause
    v2 = cadence(
        version=2,
        qualification_reminder_seconds=DAY // 2,
        qualification_timeout_seconds=DAY,
        qualification_timeout_outcome="nurture",
    )
    await handle.signal(Sig.MIGRATE_CADENCE, v2)
    assert (await handle.query(Query.STATE))["cadence_version"] == 2
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "Tell me more"))
    assert await handle.result() == "nurture"  # v1's outcome: disqualified
    assert harness.rec.stages[-1].cause == f"qualification timeout: no verdict after {DAY} s"
    assert [t.touch_key for t in harness.rec.touches] == ["step-0"]


async def test_a_journey_past_contacting_or_stopped_keeps_its_version(harness: Harness) -> None:
    # the move is asked of every running journey of the cadence without reading each first:
    # the journey decides, and one whose cadence is over says it stays on its version (what
    # outreach's enrollment then follows, services/outreach/cadences/migration.py)
    from shared.contracts.journey import StopCadence

    v2 = cadence(version=2)
    replied = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    await replied.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "Tell me more"))
    await harness.env.sleep(timedelta(minutes=1))
    await replied.signal(Sig.MIGRATE_CADENCE, v2)
    state = await replied.query(Query.STATE)
    assert state["stage"] == "qualifying" and state["cadence_version"] == 1

    stopped = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    await stopped.signal(Sig.STOP_CADENCE, StopCadence("asked by phone"))
    await stopped.signal(Sig.MIGRATE_CADENCE, v2)
    assert (await stopped.query(Query.STATE))["cadence_version"] == 1
    # both run to their ends as they would have (a journey left running holds up the next test)
    assert await stopped.result() == "nurture"
    assert await replied.result() == "disqualified"


async def test_business_days_skip_the_weekend_in_the_prospects_zone(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    from datetime import datetime

    from shared.contracts.plan import add_business_days

    friday_evening = datetime.fromisoformat("2026-11-27T18:00:00-05:00")
    due = add_business_days(friday_evening, 1, "America/New_York")
    assert due.isoformat() == "2026-11-30T23:00:00+00:00"  # Monday 18:00 in New York
    assert add_business_days(friday_evening, 1, "America/New_York", ["2026-11-30"]).day == 1
    # across the end of daylight saving time the local hour stays the same
    before = datetime.fromisoformat("2026-10-30T09:00:00-04:00")
    after = add_business_days(before, 1, "America/New_York")
    assert after.isoformat() == "2026-11-02T14:00:00+00:00"  # 09:00 EST


def test_variants_split_stably_and_by_weight() -> None:
    from collections import Counter

    from shared.contracts.journey import StepVariant
    from shared.contracts.plan import choose_variant, personalise

    variants = [StepVariant("A", "body A", "subj A", 3), StepVariant("B", "body B", "subj B", 1)]
    picks = Counter(choose_variant(f"p{i}", "0.0", variants).name for i in range(4000))
    assert 2800 < picks["A"] < 3200 and picks["A"] + picks["B"] == 4000
    assert {choose_variant("same", "0.0", variants).name for _ in range(10)} == {
        choose_variant("same", "0.0", variants).name
    }
    step = CadenceStep("email", 0, "", "", variants=variants)
    (resolved,) = personalise("p1", 0, [step])
    assert resolved.variant in ("A", "B") and resolved.body == f"body {resolved.variant}"


async def test_a_deferred_referral_ask_is_sent_when_it_may_be(harness: Harness) -> None:
    now = await harness.env.get_current_time()
    harness.rec.defer_once["referral_ask"] = (now + timedelta(days=20)).isoformat()
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    assert await handle.result() == "won"
    asks = [t for t in harness.rec.touches if t.kind == "referral_ask"]
    assert len(asks) == 2  # deferred once (quiet hours), then sent at the window


async def won(harness: Harness) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    assert await handle.result() == "won"


async def test_no_referral_reminder_once_the_link_is_used(harness: Harness) -> None:
    """The client sent the form naming nobody who could be stored (themselves, people erased)
    or the ask was closed: the link now opens a "used" page, so a reminder asking them to use
    it is not sent."""
    harness.rec.link_used = True
    await won(harness)
    kinds = [t.kind for t in harness.rec.touches]
    assert "referral_ask" in kinds and "referral_reminder" not in kinds, kinds


async def test_a_reminder_waiting_for_its_window_is_dropped_once_the_link_is_used(
    harness: Harness,
) -> None:
    """The first reminder's text waits for the client's send window; meanwhile the client uses
    the link: the text is not sent when the window opens, and no second reminder follows."""
    now = await harness.env.get_current_time()
    harness.rec.defer_once["referral_reminder"] = (now + timedelta(days=20)).isoformat()
    harness.rec.use_link_at = "referral_reminder"
    await won(harness)
    reminders = [t.touch_key for t in harness.rec.touches if t.kind == "referral_reminder"]
    assert reminders == ["referral-reminder-1"], reminders  # the email; the text never went


async def test_a_touch_whose_template_cannot_render_fails_once_and_the_cadence_goes_on(
    harness: Harness,
) -> None:
    """Issue 10: a TemplateError is not retried; the step is marked failed, the rep gets a task
    to fix the template, and the next touches still go out."""
    harness.rec.template_error_touch = "step-1"
    handle = await harness.start()
    assert await handle.result() == "nurture"
    assert [t.touch_key for t in harness.rec.touches] == ["step-0", "step-1", "step-2"]
    [fix] = [t for t in harness.rec.tasks if t.kind == "template"]
    assert fix.title.startswith("Fix template of step 1: step-1 sms body")
    assert fix.key.endswith(":template:step-1")
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert [(f.step, f.reason) for f in state.failed_steps] == [
        (1, "step-1 sms body: 'str object' has no attribute 'x'")
    ]
