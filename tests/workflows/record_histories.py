"""Record journey histories for test_replay.py:
`.venv/bin/python tests/workflows/record_histories.py [SET [NAME ...]]`.

Run it when a guarded (workflow.patched) change lands, with scenarios that take the new paths;
the histories it writes then keep those paths replayable, and workflows/journey/versions.py names
the history that covers each patch. SET (default: the newest) picks which scenarios to record:
- v3: referral reminders, referrer thanks, closing old preparation tasks, a rep change.
- v4: every path of the journey as it was before it became a package (issue 9), recorded so that
  the split (and any later refactoring) is proven to issue the very same commands.
- v5: issue 10's guarded changes: pauses that stack and hold every sales message, a meeting
  reminder that cannot go becoming the rep's task, a touch whose template cannot render,
  colleagues found by email domain, a run's end reported
  to outreach and later runs started at qualifying (a late reply) and presenting (a reopened deal),
  tasks that follow the stages, deal moves that reach the journey, closing on every decided deal,
  a won deal reopened while its journey asks for referrals.
- v6: issue 13's guarded change: a touch that went late (a provider retried, a pause) delays the
  rest of the cadence by as much.
- v7: the review of 2026-12-06: a meeting booked while qualifying (planned at once, moved, holding
  the timeout), a later run's first stage told to outreach, replies after the first as tasks, a
  send window outreach's lagging clock has not reached yet, a lost deal reopened while its run
  records the loss, a won deal reopened while the referrals stage is being recorded; (review of
  2026-12-06, second) a repeated close and a stale move dropped by a reopening, a verdict taken from
  the deal's stage at the timeout, replies told while the
  run ends; (review of 2026-12-06, third) a zone change that moves the step the journey waits
  for; (review of 2026-12-06, fourth) a referral link used while a reminder waits for its window.
- v8: the review of 2026-12-07: a reply heard with a stop.
- v9: the review of 2026-12-07, second: a reopened deal re-arms its meetings' reminders and its
  deadline, a booking heard again or late, a verdict heard while the reminder is made, a
  reopening of a close the journey never heard, a referrer's thanks handed over at the run's end,
  a missed meeting's re-booking message dropped once the deal is won.
- v10: the reviews of 2026-12-07, third and fourth: a verdict taken from the deal's events, a
  decided deal's meetings asked about, a migration kept at a reply, a referral asked by an
  earlier run, a passed decision deadline moved or cleared closing its last-chance task, a
  reopened deal's meetings ahead prepared again (not those cancelled while it was closed).
NAMEs (history file stems) record only those scenarios of the set: a new patch's history is
added without re-recording (and so changing) the histories already stored.
"""

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, ".")
from temporalio.testing import WorkflowEnvironment

from shared.contracts.journey import (
    CadenceSnapshot,
    ContactChanged,
    DealClosed,
    DealReopened,
    DealStageMoved,
    DecisionDeadline,
    MeetingChanged,
    MeetingScheduled,
    ObjectionLogged,
    OpenObjection,
    OpenObjections,
    PauseJourney,
    PauseKind,
    QualificationRecorded,
    Referrer,
    RepAssigned,
    ReplyReceived,
    ResumeJourney,
    Stage,
    StopCadence,
)
from shared.contracts.names import Sig
from tests.support import journey_harness as tj
from tests.support.fixtures import binary

OUT = Path("tests/workflows/histories")
DAY, HOUR = tj.DAY, 3600
Scenario = Callable[[WorkflowEnvironment, tj.Harness, Any], Awaitable[None]]
ONLY = set(sys.argv[2:])  # history names to record; empty: the whole set


async def record(
    env: WorkflowEnvironment,
    name: str,
    scenario: Scenario,
    prepare: Callable[[tj.Recorder], None] = lambda rec: None,
    **start: Any,
) -> None:
    if ONLY and name not in ONLY:
        return
    h = tj.Harness(env, f"hist-{name}-")
    prepare(h.rec)
    async with h:
        handle = await h.start(**start)
        await scenario(env, h, handle)
        result = await handle.result()
        history = await handle.fetch_history()
    (OUT / f"{name}.json").write_text(history.to_json())
    print(name, result, len(history.events), [t.kind for t in h.rec.touches])


async def won_with_reminders(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    now = await env.get_current_time()
    at = lambda d: (now + timedelta(days=d)).isoformat()  # noqa: E731
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", at(3), "Demo"))
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", at(4), "Demo", 1))
    await handle.signal(Sig.REP_ASSIGNED, RepAssigned("r2", "Nia New", "nia@example.com", None))
    await handle.signal(
        Sig.OBJECTION_LOGGED, ObjectionLogged("o1", "deal-1", "price", "too much", ["ROI"])
    )
    await env.sleep(timedelta(days=4))
    await handle.signal(Sig.MEETING_HELD, MeetingChanged("m1", "deal-1", at(4), "Demo", 1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


async def referred_thanks(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    now = await env.get_current_time()
    await handle.signal(
        Sig.MEETING_SCHEDULED,
        MeetingScheduled("m1", "deal-1", (now + timedelta(days=2)).isoformat(), "Intro"),
    )
    await env.sleep(timedelta(days=3))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


async def main_v3(env: WorkflowEnvironment) -> None:
    await record(env, "journey_won_reminders_rep_change_v3", won_with_reminders)
    await record(
        env,
        "journey_referred_thanks_v3",
        referred_thanks,
        start_stage=Stage.QUALIFYING,
        referrer=Referrer("p-ref", "Grace Hopper", "ref-1"),
    )


# --- v4: every path, recorded from the journey before it became a package ----------------------


async def later(env: WorkflowEnvironment, **delta: float) -> str:
    """An ISO time `delta` after the test server's now (its clock runs ahead of the wall's)."""
    return (await env.get_current_time() + timedelta(**delta)).isoformat()


async def qualified(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))


async def no_reply_deferred_sms_new_rep(
    env: WorkflowEnvironment, h: tj.Harness, handle: Any
) -> None:
    """Contacting: the first SMS waits for its window (the cadence's wait loop), a rep change,
    every step, then nurture."""
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.REP_ASSIGNED, RepAssigned("r2", "Nia New", "nia@example.com", None))


async def paused_migrated(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Contacting: a pause until resume, a pause until a date, a migration to a longer cadence."""
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.PAUSE, PauseJourney("rep on vacation"))
    await env.sleep(timedelta(days=3))
    await handle.signal(Sig.RESUME)
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.PAUSE, PauseJourney("out of office", until=await later(env, days=1)))
    await env.sleep(timedelta(days=2))
    v2 = tj.cadence(
        version=2,
        steps=[
            *tj.cadence().steps,
            tj.CadenceStep("email", 8 * DAY, "Last try", "Still there?"),
        ],
        nurture_after_seconds=HOUR,
    )
    await handle.signal(Sig.MIGRATE_CADENCE, v2)


async def stopped(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.STOP_CADENCE, StopCadence("hard bounce"))


async def reply_pauses_company_then_disqualified(
    env: WorkflowEnvironment, h: tj.Harness, handle: Any
) -> None:
    await env.sleep(timedelta(hours=2))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM1", "who is this?"))
    await env.sleep(timedelta(days=3))  # past the qualification reminder
    await handle.signal(
        Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["budget: none"])
    )


async def reply_then_silence(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "tell me more"))


async def verdict_races_the_timeout(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """The deals API recorded a verdict just before the deadline: the timeout leaves the deal in
    qualifying and the journey waits for the verdict's signal."""
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "tell me more"))
    await env.sleep(timedelta(days=6))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "went quiet"))


async def meetings_deadline_lost(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Presenting: meetings booked, moved, cancelled, missed and held (late, ignored), objections,
    a decision deadline set, repeated, moved and passed (last chance), then lost."""
    await qualified(env, h, handle)
    await handle.signal(
        Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", await later(env, days=20))
    )
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", await later(env, days=3), "Demo")
    )
    await handle.signal(
        Sig.OBJECTION_LOGGED, ObjectionLogged("o1", "deal-1", "price", "too much", ["ROI"])
    )
    await env.sleep(timedelta(days=1))
    m1 = MeetingChanged("m1", "deal-1", await later(env, days=3), "Demo", 1)
    await handle.signal(Sig.MEETING_RESCHEDULED, m1)
    await handle.signal(Sig.MEETING_RESCHEDULED, m1)  # a client's retry: ignored
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m2", "deal-1", await later(env, days=2), "Call")
    )
    await handle.signal(
        Sig.MEETING_CANCELLED, MeetingChanged("m2", "deal-1", await later(env, days=2), "Call")
    )
    deadline = DecisionDeadline("deal-1", await later(env, days=6))
    await handle.signal(Sig.DECISION_DEADLINE, deadline)
    await handle.signal(Sig.DECISION_DEADLINE, deadline)  # the same again: the timer runs on
    await handle.signal(
        Sig.OBJECTION_LOGGED, ObjectionLogged("o2", "deal-1", "timing", "next quarter", [])
    )
    await env.sleep(timedelta(days=4))
    await handle.signal(Sig.MEETING_NO_SHOW, m1)
    await handle.signal(Sig.MEETING_HELD, m1)  # late: the meeting is over
    await env.sleep(timedelta(days=3))  # the deadline passes undecided
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", None))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "chose a competitor"))


async def won_held_deferred_referrals(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Closing: a meeting with two reminders (the first deferred by some hours), held, won with
    a decision deadline still armed; the referral ask and a reminder wait for their windows."""
    await qualified(env, h, handle)
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", await later(env, days=9)))
    starts = await later(env, days=3)
    h.rec.defer_once["meeting_reminder"] = await later(env, days=2, hours=12)
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await env.sleep(timedelta(days=3, hours=1))
    await handle.signal(Sig.MEETING_HELD, MeetingChanged("m1", "deal-1", starts, "Demo"))
    h.rec.defer_once["referral_ask"] = await later(env, days=7, hours=6)
    h.rec.defer_once["referral_reminder"] = await later(env, days=10, hours=6)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


async def referred_deferred_thanks(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """A referred prospect: the warm introduction and the referrer's thanks wait for windows."""
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    h.rec.defer_once["referrer_thanks_meeting"] = await later(env, hours=8)
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", await later(env, days=2), "Intro")
    )
    await env.sleep(timedelta(days=3))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


async def record_intake(env: WorkflowEnvironment, name: str) -> None:
    """The referral intake's own history (it starts the referred prospect's journey)."""
    h = tj.Harness(env, f"hist-{name}-")
    async with h:
        handle = await env.client.start_workflow(
            tj.ReferralIntake.run,
            h.intake_input(),
            id=f"intake-{name}",
            task_queue=h.queues.journeys,
        )
        await handle.result()
        history = await handle.fetch_history()
        child = env.client.get_workflow_handle(tj.journey_id("p-referred"))
        await child.signal(
            Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no need"])
        )
        await child.result()
    (OUT / f"{name}.json").write_text(history.to_json())
    print(name, len(history.events))


def defer_first_sms(rec: tj.Recorder) -> None:
    rec.defer_first_sms_until = "2100-01-01T00:00:00+00:00"  # beyond: the reply/stop decides


async def main_v4(env: WorkflowEnvironment) -> None:
    await record(
        env,
        "journey_no_reply_deferred_new_rep_v4",
        no_reply_deferred_sms_new_rep,
        lambda rec: setattr(rec, "defer_first_sms_until", "2000-01-01T00:00:00+00:00"),
    )
    await record(env, "journey_paused_migrated_v4", paused_migrated)
    await record(env, "journey_stopped_while_deferred_v4", stopped, defer_first_sms)
    await record(
        env,
        "journey_reply_pauses_company_disqualified_v4",
        reply_pauses_company_then_disqualified,
        cadence=tj.cadence(pause_company_on_reply=True),
        contact={"company": "Analytical Engines"},
    )
    await record(
        env,
        "journey_timeout_escalation_nurture_v4",
        reply_then_silence,
        lambda rec: setattr(rec, "manager_id", "mgr-1"),
        cadence=tj.cadence(qualification_timeout_outcome="nurture"),
    )
    await record(env, "journey_timeout_no_manager_disqualified_v4", reply_then_silence)
    await record(
        env,
        "journey_verdict_races_timeout_lost_v4",
        verdict_races_the_timeout,
        lambda rec: setattr(rec, "timeout_stage", "qualifying"),
    )

    def objections(rec: tj.Recorder) -> None:
        rec.open_objections = OpenObjections(
            "deal-1", "objections", False, [OpenObjection("o1", "price", "too much", "ROI")]
        )

    await record(env, "journey_meetings_deadline_lost_v4", meetings_deadline_lost, objections)
    await record(
        env,
        "journey_won_held_deferred_referrals_v4",
        won_held_deferred_referrals,
        lambda rec: setattr(rec, "open_objections", OpenObjections("deal-1", "won", True, [])),
        cadence=tj.cadence(meeting_reminders_seconds=[DAY, 2 * HOUR]),
    )
    await record(
        env,
        "journey_referred_deferred_thanks_v4",
        referred_deferred_thanks,
        lambda rec: rec.defer_once.update(warm_intro="2100-01-01T00:00:00+00:00"),
        start_stage=Stage.QUALIFYING,
        referrer=Referrer("p-ref", "Grace Hopper", "ref-1"),
    )


# --- v5: issue 10 (pauses stack and hold every sales message; reminders go or say why) -------


async def paused_intro(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """A referred prospect's introduction held by two stacked pauses (the manual one came with
    the start): lifting the manual one leaves the rep's; the introduction goes after both."""
    await handle.signal(Sig.PAUSE, PauseJourney("rep away", kind=PauseKind.REP))
    await env.sleep(timedelta(hours=10))  # the window opened during the pauses
    await handle.signal(Sig.RESUME, ResumeJourney(PauseKind.MANUAL))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.RESUME, ResumeJourney(PauseKind.REP))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no"]))


async def meeting_reminder_task(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """A meeting whose only reminder may not go before the meeting starts: the rep's task."""
    await qualified(env, h, handle)
    starts = await later(env, days=2)
    h.rec.hold_once["meeting_reminder"] = await later(env, days=2, hours=3)
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await env.sleep(timedelta(days=2, hours=1))
    await handle.signal(Sig.MEETING_HELD, MeetingChanged("m1", "deal-1", starts, "Demo"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))


async def no_reply(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Nothing from the prospect: the cadence runs to its end (the journey ends by itself)."""


async def restarted_then_disqualified(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(
        Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no budget"])
    )


async def reopened_then_lost(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-9", False, "went with a rival"))


async def deal_moves_closing_won(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """The rep moves the deal to objections, then to closing (a repeat is ignored), and wins."""
    await qualified(env, h, handle)
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "objections"))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


async def closed_from_presenting_lost(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await qualified(env, h, handle)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget after all"))


async def won_reopened_won_again(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Won; the referral request goes; the deal is reopened (reminders cancelled), moved to
    closing and won again (no second request)."""
    await qualified(env, h, handle)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await env.sleep(timedelta(days=8))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed again"))


async def main_v5(env: WorkflowEnvironment) -> None:
    await record(
        env,
        "journey_paused_intro_v5",
        paused_intro,
        start_signal=(Sig.PAUSE, PauseJourney("on hold", kind=PauseKind.MANUAL)),
        start_stage=Stage.QUALIFYING,
        referrer=Referrer("p-ref", "Grace Hopper", "ref-1"),
    )
    await record(
        env,
        "journey_meeting_reminder_task_v5",
        meeting_reminder_task,
        cadence=tj.cadence(meeting_reminders_seconds=[HOUR]),
    )
    # point 8: the second touch's template cannot render; the rep gets a task, the cadence
    # goes on (Patch.TEMPLATE_FAILURE_TASK)
    await record(
        env,
        "journey_template_failure_v5",
        no_reply,
        lambda rec: setattr(rec, "template_error_touch", "step-1"),
    )
    # point 12: a prospect without a company name replies; colleagues are found by the work
    # domain of their address (Patch.COLLEAGUES_BY_DOMAIN)
    await record(
        env,
        "journey_reply_pauses_domain_colleagues_v5",
        reply_pauses_company_then_disqualified,
        cadence=tj.cadence(pause_company_on_reply=True),
        contact={"company": "", "email": "ada@engines.example"},
    )
    # points 1, 2, 11: a run's end reported to outreach (Patch.RUN_END_REPORTED); later runs
    # start at qualifying (a late reply) and at presenting (a reopened deal)
    await record(env, "journey_nurture_run_end_v5", no_reply)
    await record(
        env,
        "journey_late_reply_run2_disqualified_v5",
        restarted_then_disqualified,
        start_stage=Stage.QUALIFYING,
        run=2,
        start_cause="late reply by email: still interested",
    )
    await record(
        env,
        "journey_reopened_run3_lost_v5",
        reopened_then_lost,
        start_stage=Stage.PRESENTING,
        run=3,
        deal_id="deal-9",
        start_cause="deal reopened",
    )
    # points 3, 4: tasks follow the stages (Patch.TASKS_FOLLOW_STAGE), deal moves and closing
    # reach the journey (Patch.DEAL_STAGE_TRUTH)
    await record(env, "journey_timeout_disqualified_tasks_v5", reply_then_silence)
    await record(env, "journey_stopped_tasks_v5", stopped)
    await record(env, "journey_deal_moves_closing_won_v5", deal_moves_closing_won)
    await record(env, "journey_closed_from_presenting_lost_v5", closed_from_presenting_lost)
    # point 4: a won deal reopened while the journey runs (Patch.DEAL_REOPENED_RUNNING)
    await record(env, "journey_won_reopened_won_again_v5", won_reopened_won_again)


# --- v6: issue 13 (a late touch keeps the cadence's gaps) ----------------------------------


async def paused_over_two_steps(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Paused after the first touch until two more fell due: after the resume one goes, the
    next keeps its gap, the nurture deadline its wait."""
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.PAUSE, PauseJourney("rep on vacation"))
    await env.sleep(timedelta(days=5))
    await handle.signal(Sig.RESUME)


def provider_fails_first_touch(rec: tj.Recorder) -> None:
    rec.failing_attempts["step-0"] = 6  # retried for about a minute: every later touch moves


async def main_v6(env: WorkflowEnvironment) -> None:
    await record(env, "journey_late_touch_keeps_gaps_v6", no_reply, provider_fails_first_touch)
    await record(env, "journey_paused_keeps_gaps_v6", paused_over_two_steps)


# --- v7: review of 2026-12-06 ------------------------------------------------------------------


async def booked_while_qualifying(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Booked through the link (the gate not passed) for day 6 of a 5-day timeout, moved to day
    7 while qualifying, a second reply by email; the verdict comes the day of the meeting after
    the held timeout; then lost."""
    actor = "system:booking link"
    await env.sleep(timedelta(hours=1))
    starts = await later(env, days=6)
    await handle.signal(
        Sig.REPLY_RECEIVED, ReplyReceived("booking link", "booking-m1", "booked", actor)
    )
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Intro", 0, actor)
    )
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m2", "Can we move it?"))
    moved = await later(env, days=6)
    await handle.signal(
        Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "Intro", revision=1)
    )
    await env.sleep(timedelta(days=6, hours=2))
    await handle.signal(Sig.MEETING_HELD, MeetingChanged("m1", "deal-1", moved, "Intro", 1))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget after all"))


async def late_reply_run_replies_again(
    env: WorkflowEnvironment, h: tj.Harness, handle: Any
) -> None:
    await env.sleep(timedelta(hours=2))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM9", "still there?"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(
        Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no budget"])
    )


async def reopened_while_losing(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Closed lost; reopened while the run records the loss; won after all."""
    await qualified(env, h, handle)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await asyncio.wait_for(h.rec.stage_held.wait(), 60)
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    h.rec.release_stage.set()
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed after all"))


async def link_used_during_reminder(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Won; the first referral reminder's text waits for the client's window and the client
    uses the link meanwhile (naming nobody stored): the text is dropped, no second reminder."""
    await qualified(env, h, handle)
    h.rec.defer_once["referral_reminder"] = await later(env, days=20)
    h.rec.use_link_at = "referral_reminder"
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


def hold_lost(rec: tj.Recorder) -> None:
    rec.hold_stage = Stage.LOST


async def reopened_during_referral_record(
    env: WorkflowEnvironment, h: tj.Harness, handle: Any
) -> None:
    """Won; reopened while the referrals stage is being recorded; lost after all."""
    await qualified(env, h, handle)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await h.rec.reopen_while_held(handle, "objections")
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget after all"))


def hold_referrals(rec: tj.Recorder) -> None:
    rec.hold_stage = Stage.REFERRALS


def lagging_window(rec: tj.Recorder) -> None:
    """The first touch's window opens an hour after its first try by the server's clock;
    outreach's clock is 2 s behind."""
    rec.lagging_window = (timedelta(hours=1), timedelta(seconds=2))


async def moved_while_busy(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Presenting waits on a second meeting's brief (deals away for minutes) while the first
    meeting moves and the decision deadline moves, each minutes before its timer; lost later."""
    await qualified(env, h, handle)
    now = await env.get_current_time()
    first = now + timedelta(hours=3)
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", first.isoformat(), "A")
    )
    await handle.signal(
        Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", (first - timedelta(hours=1)).isoformat())
    )
    await env.sleep(first - timedelta(hours=1, minutes=5) - now)
    later = (first + timedelta(days=10)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m2", "deal-1", later, "B"))
    moved = (first + timedelta(days=1)).isoformat()
    await handle.signal(Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "A", 1))
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", moved))
    await env.sleep(timedelta(days=2))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))


async def booked_within_the_day(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Qualified; a meeting booked 76 minutes ahead (reminders a day and an hour before), moved
    two hours later ten minutes on; held; lost."""
    await qualified(env, h, handle)
    now = await env.get_current_time()
    starts = now + timedelta(minutes=76)
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts.isoformat(), "Call")
    )
    await env.sleep(timedelta(minutes=10))
    moved = (starts + timedelta(hours=2)).isoformat()
    await handle.signal(Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "Call", 1))
    await env.sleep(timedelta(hours=4))
    await handle.signal(Sig.MEETING_HELD, MeetingChanged("m1", "deal-1", moved, "Call", 1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))


def brief_of_m2_fails(rec: tj.Recorder) -> None:
    rec.failing_brief_attempts["m2"] = 12


async def repeated_close_reopened(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Won, the close repeated (the client's retry) and a stale move to closing queued after
    it; reopened to objections while asked for referrals: the repeats are dropped; lost."""
    await qualified(env, h, handle)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await env.sleep(timedelta(days=8))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget after all"))


async def reply_while_run_ends(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Lost; a reply (and the relay's repeat of it) while the run reports its end."""
    await qualified(env, h, handle)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await asyncio.wait_for(h.rec.run_end_held.wait(), 60)
    reply = ReplyReceived("email", "m2", "wait, we found budget")
    await handle.signal(Sig.REPLY_RECEIVED, reply)
    await handle.signal(Sig.REPLY_RECEIVED, reply)
    h.rec.release_run_end.set()


def hold_run_end(rec: tj.Recorder) -> None:
    rec.hold_run_end = True


async def reply_task_at_run_end(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """A reply's task is being made (outreach slow) when the deal is lost: it is finished after
    the run's end report, before the run ends."""
    await qualified(env, h, handle)
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM2", "send the contract"))
    await asyncio.wait_for(h.rec.task_held.wait(), 60)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    while not h.rec.run_ends:
        await asyncio.sleep(0.05)
    h.rec.release_task.set()


def hold_reply_task(rec: tj.Recorder) -> None:
    rec.hold_task_kind = "reply"


async def verdict_from_deal_stage(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Replied; the deal passed the gate to presenting but its verdict signal was lost (only
    the move came); at the timeout deals answers presenting: an hour on, qualified; won."""
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "presenting"))
    await env.sleep(timedelta(days=30))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))


def deal_past_the_gate(rec: tj.Recorder) -> None:
    rec.timeout_stage = Stage.PRESENTING


async def zone_change_while_waiting(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Ada in Los Angeles, enrolled on a Thursday evening there (Friday in Tokyo): a new phone
    in the same zone (nothing re-planned), then an import moves her to Tokyo while step-1 waits
    for her Friday: it goes on her Monday in Tokyo instead; nurture."""
    await env.sleep(timedelta(hours=1))
    await handle.signal(
        Sig.CONTACT_CHANGED,
        ContactChanged("ada@example.com", "+13105550111", tj.LA, tj.LA),
    )
    await env.sleep(timedelta(hours=1))
    await handle.signal(
        Sig.CONTACT_CHANGED,
        ContactChanged("ada@example.com", "+13105550111", tj.TOKYO, tj.TOKYO),
    )


async def main_v7(env: WorkflowEnvironment) -> None:
    await record(
        env,
        "journey_booked_while_qualifying_v7",
        booked_while_qualifying,
        cadence=tj.cadence(meeting_reminders_seconds=[DAY, HOUR]),
    )
    await record(
        env,
        "journey_late_reply_run2_later_reply_v7",
        late_reply_run_replies_again,
        start_stage=Stage.QUALIFYING,
        run=2,
        start_cause="late reply by email: let's talk",
    )
    await record(env, "journey_lagging_window_v7", no_reply, lagging_window)
    await record(
        env,
        "journey_reopened_while_losing_v7",
        reopened_while_losing,
        hold_lost,
        cadence=tj.cadence(referral_reminders=0),
    )
    await record(
        env,
        "journey_reopened_during_referral_record_v7",
        reopened_during_referral_record,
        hold_referrals,
        cadence=tj.cadence(referral_delay_seconds=1, referral_reminders=0),
    )
    await record(
        env,
        "journey_moved_while_busy_v7",
        moved_while_busy,
        brief_of_m2_fails,
        cadence=tj.cadence(meeting_reminders_seconds=[HOUR]),
    )
    await record(
        env,
        "journey_booked_within_the_day_v7",
        booked_within_the_day,
        cadence=tj.cadence(meeting_reminders_seconds=[DAY, HOUR]),
    )
    await record(env, "journey_repeated_close_reopened_v7", repeated_close_reopened)
    await record(env, "journey_reply_while_run_ends_v7", reply_while_run_ends, hold_run_end)
    await record(env, "journey_reply_task_at_run_end_v7", reply_task_at_run_end, hold_reply_task)
    await record(
        env,
        "journey_verdict_from_deal_stage_v7",
        verdict_from_deal_stage,
        deal_past_the_gate,
        cadence=tj.cadence(referral_reminders=0),
    )
    await record(env, "journey_won_link_used_during_reminder_v7", link_used_during_reminder)
    await tj.sleep_until_local(env, tj.TOKYO, 4, 10)  # a Friday, 10:00 in Tokyo
    await record(
        env,
        "journey_zone_change_replans_step_v7",
        zone_change_while_waiting,
        cadence=tj.business_days_cadence(),
        contact={"timezone": tj.LA, "zone": tj.LA},
    )


async def reply_with_stop(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """A reply and a stop heard together, while the contacting stage's record is in flight."""
    await asyncio.wait_for(h.rec.stage_held.wait(), 60)
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "Call me Tuesday"))
    await handle.signal(Sig.STOP_CADENCE, StopCadence("unsubscribe link"))
    h.rec.release_stage.set()


def hold_contacting(rec: tj.Recorder) -> None:
    rec.hold_stage = Stage.CONTACTING


async def main_v8(env: WorkflowEnvironment) -> None:
    await record(env, "journey_reply_with_stop_v8", reply_with_stop, hold_contacting)


# --- v9: the review of 2026-12-07, second ---------------------------------------------------


async def presenting_now(handle: Any) -> None:
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))


async def reopened_deal_rearms(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await presenting_now(handle)
    now = await env.get_current_time()
    at = lambda d: (now + timedelta(days=d)).isoformat()  # noqa: E731
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", at(10), "Demo"))
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", at(12)))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await env.sleep(timedelta(days=8))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    await env.sleep(timedelta(days=5))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "went elsewhere"))


async def repeated_meeting(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await presenting_now(handle)
    now = await env.get_current_time()
    booked = MeetingScheduled("m1", "deal-1", (now + timedelta(days=3)).isoformat(), "Demo")
    await handle.signal(Sig.MEETING_SCHEDULED, booked)
    await handle.signal(Sig.MEETING_SCHEDULED, booked)
    await env.sleep(timedelta(days=1))
    moved = MeetingChanged("m1", "deal-1", (now + timedelta(days=5)).isoformat(), "Demo", 1)
    await handle.signal(Sig.MEETING_RESCHEDULED, moved)
    await handle.signal(Sig.MEETING_SCHEDULED, booked)
    await env.sleep(timedelta(days=5))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))


async def verdict_during_reminder(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "tell me more"))
    result = asyncio.create_task(handle.result())  # time skips to the reminder meanwhile
    await asyncio.wait_for(h.rec.task_held.wait(), 60)
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no"]))
    h.rec.release_task.set()
    await result


def hold_reminder_with_manager(rec: tj.Recorder) -> None:
    rec.manager_id = "mgr-1"
    rec.hold_task_kind = "qualification_reminder"


async def stale_reopening(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    await presenting_now(handle)
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))


async def thanks_outlive_run(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """A referred prospect's meeting, the referrer's thanks waiting for their window, and the
    deal lost meanwhile: the run hands the thanks over to ThankReferrer."""
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    h.rec.hold_once["referrer_thanks_meeting"] = await later(env, hours=8)
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", await later(env, days=2), "Intro")
    )
    while not any(t.kind == "referrer_thanks_meeting" for t in h.rec.touches):
        await asyncio.sleep(0.05)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))


async def rebooking_stops(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """A missed meeting's re-booking message waits for its window; the deal is won meanwhile."""
    await presenting_now(handle)
    starts = await later(env, hours=2)
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await env.sleep(timedelta(hours=3))
    h.rec.hold_once["meeting_rebook"] = await later(env, hours=8)
    await handle.signal(Sig.MEETING_NO_SHOW, MeetingChanged("m1", "deal-1", starts, "Demo"))
    while not any(t.kind == "meeting_rebook" for t in h.rec.touches):
        await asyncio.sleep(0.05)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed after all"))


async def won_verdict_unheard(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Replied; the gate's signal was lost, then the deal was won: qualified at the close."""
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed", "admin (k1)"))


async def decided_with_meeting_ahead(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """Won with a kickoff ten days ahead (the rep is asked about it), reopened (the question
    closed), lost (asked again)."""
    await presenting_now(handle)
    ahead = await later(env, hours=240)
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", ahead, "Kickoff"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "went elsewhere"))


async def migration_while_paused_then_reply(
    env: WorkflowEnvironment, h: tj.Harness, handle: Any
) -> None:
    """Paused past step-2's due time, moved to v2 (nurture at a day's timeout), replied."""
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.PAUSE, PauseJourney("on leave"))
    await env.sleep(timedelta(days=3))
    v2 = tj.cadence(
        version=2,
        qualification_reminder_seconds=DAY // 2,
        qualification_timeout_seconds=DAY,
        qualification_timeout_outcome="nurture",
    )
    await handle.signal(Sig.MIGRATE_CADENCE, v2)
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "Tell me more"))


async def won_again_after_an_earlier_win(
    env: WorkflowEnvironment, h: tj.Harness, handle: Any
) -> None:
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-9", True, "came back"))


async def deadline_passed_then_moved(env: WorkflowEnvironment, h: tj.Harness, handle: Any) -> None:
    """The decision deadline passed (the rep's last chance), was moved a week on, then
    cleared."""
    await presenting_now(handle)
    due = await later(env, hours=24)
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", due))
    await env.sleep(timedelta(days=2))
    await handle.signal(
        Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", await later(env, hours=168))
    )
    await env.sleep(timedelta(days=1))
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", None))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "went elsewhere"))


async def reopened_after_meeting_cancelled(
    env: WorkflowEnvironment, h: tj.Harness, handle: Any
) -> None:
    """Won with a kickoff ten days ahead; the rep cancelled it (the keep or cancel question);
    the deal reopened, then lost."""
    await presenting_now(handle)
    ahead = await later(env, hours=240)
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", ahead, "Kickoff"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await env.sleep(timedelta(days=1))
    cancelled = MeetingChanged("m1", "deal-1", ahead, "Kickoff")
    await handle.signal(Sig.MEETING_CANCELLED, cancelled)
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "went elsewhere"))


async def record_undecided(env: WorkflowEnvironment, name: str, scenario: Scenario) -> None:
    """A deal left undecided at its deadline, referrals asked a month after a win."""
    await record(
        env, name, scenario, undecided, cadence=tj.cadence(referral_delay_seconds=30 * DAY)
    )


def reminded_thrice() -> CadenceSnapshot:
    """Meetings reminded 3 days, a day and an hour ahead; referrals a month after a win."""
    return tj.cadence(
        meeting_reminders_seconds=[3 * DAY, DAY, HOUR], referral_delay_seconds=30 * DAY
    )


def with_manager(rec: tj.Recorder) -> None:
    rec.manager_id = "mgr-1"


def undecided(rec: tj.Recorder) -> None:
    rec.open_objections = OpenObjections("deal-1", "presenting", False, [])


async def main_v9(env: WorkflowEnvironment) -> None:
    await record(
        env,
        "journey_reopened_deal_rearms_v9",
        reopened_deal_rearms,
        undecided,
        cadence=reminded_thrice(),
    )
    await record(
        env,
        "journey_repeated_meeting_ignored_v9",
        repeated_meeting,
        cadence=tj.cadence(meeting_reminders_seconds=[DAY, HOUR]),
    )
    await record(
        env,
        "journey_verdict_stops_escalation_v9",
        verdict_during_reminder,
        hold_reminder_with_manager,
    )
    await record(
        env,
        "journey_stale_reopening_ignored_v9",
        stale_reopening,
        cadence=tj.cadence(referral_reminders=0),
    )
    await record(
        env,
        "journey_rebooking_stops_v9",
        rebooking_stops,
        cadence=tj.cadence(referral_delay_seconds=DAY, referral_reminders=0),
    )
    # last: the ThankReferrer it starts outlives it on this server
    await record(
        env,
        "journey_thanks_outlive_run_v9",
        thanks_outlive_run,
        start_stage=Stage.QUALIFYING,
        referrer=Referrer("p-ref", "Grace Hopper", "ref-1"),
    )


async def main_v10(env: WorkflowEnvironment) -> None:
    await record(
        env,
        "journey_verdict_from_deal_events_v10",
        won_verdict_unheard,
        with_manager,
        cadence=tj.cadence(referral_reminders=0),
    )
    await record_undecided(
        env, "journey_decided_deal_meetings_asked_v10", decided_with_meeting_ahead
    )
    await record(env, "journey_migration_kept_at_reply_v10", migration_while_paused_then_reply)
    await record(
        env,
        "journey_referral_asked_by_earlier_run_v10",
        won_again_after_an_earlier_win,
        start_stage=Stage.PRESENTING,
        run=3,
        deal_id="deal-9",
        referral_asked_before=True,
    )
    await record(
        env,
        "journey_deadline_change_closes_last_chance_v10",
        deadline_passed_then_moved,
        undecided,
    )
    await record(
        env,
        "journey_reopened_deal_prepares_meetings_v10",
        reopened_deal_rearms,
        undecided,
        cadence=reminded_thrice(),
    )
    await record_undecided(
        env, "journey_reopened_deal_skips_cancelled_meeting_v10", reopened_after_meeting_cancelled
    )


async def main(which: str) -> None:
    sets = {
        "v3": main_v3,
        "v4": main_v4,
        "v5": main_v5,
        "v6": main_v6,
        "v7": main_v7,
        "v8": main_v8,
        "v9": main_v9,
        "v10": main_v10,
    }
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    try:
        await sets[which](env)
    finally:
        await env.shutdown()
    # v4: the intake started the journey as its child; v7: outreach starts it as the next run
    intake = {"v4": "referral_intake_v4", "v7": "referral_intake_v7"}.get(which)
    if intake is not None and (not ONLY or intake in ONLY):
        # a server of its own: an abandoned child keeps the test server's time skipping locked
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=binary("temporal-test-server")
        )
        try:
            await record_intake(env, intake)
        finally:
            await env.shutdown()


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "v10"))
