"""Pauses that stack (issue 10, point 5) and meeting reminders that go or say why (point 6),
over virtual time on the time-skipping server, with the recording doubles of test_journey (the
reminder tests decide each send by outreach's own window rule at the server's time)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from shared.contracts.journey import (
    MeetingScheduled,
    PauseJourney,
    PauseKind,
    QualificationRecorded,
    Referrer,
    ReplyReceived,
    ResumeJourney,
    SendWindow,
    Stage,
)
from shared.contracts.names import Query, Sig
from tests.support.journey_harness import DAY, Harness, cadence

HOUR = 3600
BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS_9_17 = SendWindow(days=[0, 1, 2, 3, 4], start_hour=9, end_hour=17)


def touch_keys(h: Harness) -> list[str]:
    return [t.touch_key for t in h.rec.touches]


async def test_pauses_stack_and_a_resume_lifts_only_its_own(harness: Harness) -> None:
    env = harness.env
    handle = await harness.start()
    await env.sleep(timedelta(hours=1))
    back = (await env.get_current_time() + timedelta(days=4)).isoformat()
    await handle.signal(Sig.PAUSE, PauseJourney("out of office", back, PauseKind.OUT_OF_OFFICE))
    await handle.signal(Sig.PAUSE, PauseJourney("call first"))  # no kind: manual
    state = await handle.query(Query.STATE)
    assert state["paused"] is True
    assert state["pauses"] == [
        {"kind": "manual", "reason": "call first", "until": None},
        {"kind": "out_of_office", "reason": "out of office", "until": back},
    ]
    await handle.signal(Sig.RESUME)  # an old-style resume: the manual pause only
    await env.sleep(timedelta(days=3))  # step-1 (day 2) fell due: the out of office holds
    assert touch_keys(harness) == ["step-0"]
    state = await handle.query(Query.STATE)
    assert [p["kind"] for p in state["pauses"]] == ["out_of_office"] and state["paused"]
    # a resume of a kind that is not paused changes nothing
    await handle.signal(Sig.RESUME, ResumeJourney(PauseKind.CADENCE))
    await env.sleep(timedelta(hours=1))
    assert touch_keys(harness) == ["step-0"]
    await env.sleep(timedelta(days=1))  # the return date came: the held steps go
    assert touch_keys(harness)[:2] == ["step-0", "step-1"]
    assert (await handle.query(Query.STATE))["pauses"] == []
    await handle.terminate()


async def test_a_pause_holds_the_introduction_too(harness: Harness) -> None:
    env = harness.env
    handle = await harness.start(
        start_signal=(Sig.PAUSE, PauseJourney("rep away", kind=PauseKind.REP)),
        start_stage=Stage.QUALIFYING,
        referrer=Referrer("p-ref", "Grace Hopper", "ref-1"),
    )
    await env.sleep(timedelta(hours=6))
    assert "warm_intro" not in [t.kind for t in harness.rec.touches]
    assert harness.rec.stage_path() == ["qualifying"]  # the journey itself goes on
    await handle.signal(Sig.RESUME, ResumeJourney(PauseKind.MANUAL))  # not the rep's
    await env.sleep(timedelta(hours=1))
    assert "warm_intro" not in [t.kind for t in harness.rec.touches]
    await handle.signal(Sig.RESUME, ResumeJourney(PauseKind.REP))
    await env.sleep(timedelta(minutes=1))
    assert [t.kind for t in harness.rec.touches] == ["warm_intro"]
    await handle.terminate()


# --- meeting reminders --------------------------------------------------------------------------


async def monday_at(env: WorkflowEnvironment, hour: int, minute: int = 0) -> datetime:
    """A Monday, Berlin time, at least three days ahead of the server's clock."""
    day = (await env.get_current_time()).astimezone(BERLIN) + timedelta(days=3)
    day += timedelta(days=(7 - day.weekday()) % 7)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


async def presenting_in_berlin(h: Harness, **overrides: Any) -> WorkflowHandle[Any, Any]:
    h.rec.apply_windows = True
    handle = await h.start(
        contact={"timezone": "Europe/Berlin", "zone": "Europe/Berlin"},
        cadence=cadence(send_window=WORKDAYS_9_17, **overrides),
    )
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    return handle


async def test_a_monday_9am_meeting_under_a_weekday_window_gets_its_reminder(
    harness: Harness,
) -> None:
    """The day-before reminder falls on Sunday 09:00: outside the cadence's Mon-Fri 9-17 window
    (which used to hold it until the meeting, then drop it) but inside the quiet hours."""
    env = harness.env
    handle = await presenting_in_berlin(harness, meeting_reminders_seconds=[DAY])
    starts = await monday_at(env, 9)
    meeting = MeetingScheduled("m1", "deal-1", starts.isoformat(), "Demo")
    await handle.signal(Sig.MEETING_SCHEDULED, meeting)
    await env.sleep(starts - await env.get_current_time() + timedelta(hours=1))
    key = f"meeting-m1-r0-{DAY}"
    for channel in ("email", "sms"):
        went = datetime.fromisoformat(harness.rec.sent_at[f"{key}:{channel}"]).astimezone(BERLIN)
        assert (went.strftime("%A"), went.hour) == ("Sunday", 9)
    assert "remind_meeting" not in [t.kind for t in harness.rec.tasks]
    await handle.terminate()


async def test_a_reminder_that_quiet_hours_would_send_too_late_becomes_a_task(
    harness: Harness,
) -> None:
    """A 07:30 meeting's one-hour reminder is due at 06:30, and nothing may reach the prospect
    before 08:00: the rep gets a task saying so, in the prospect's time with the zone."""
    env = harness.env
    handle = await presenting_in_berlin(harness, meeting_reminders_seconds=[HOUR])
    starts = await monday_at(env, 7, 30)
    meeting = MeetingScheduled("m1", "deal-1", starts.isoformat(), "Early call")
    await handle.signal(Sig.MEETING_SCHEDULED, meeting)
    await env.sleep(starts - await env.get_current_time() + timedelta(hours=1))
    assert not any(k.startswith(f"meeting-m1-r0-{HOUR}") for k in harness.rec.sent_at)
    task = next(t for t in harness.rec.tasks if t.kind == "remind_meeting")
    assert task.title == "Remind Ada Lovelace of the meeting yourself"
    assert "at 07:30 (Europe/Berlin)" in task.body
    assert "before Monday" in task.body and "at 08:00 (Europe/Berlin)" in task.body
    assert task.context["meeting_id"] == "m1"
    await handle.terminate()


async def test_a_reminder_no_channel_may_carry_becomes_a_task(harness: Harness) -> None:
    env = harness.env
    handle = await presenting_in_berlin(harness, meeting_reminders_seconds=[DAY, HOUR])
    harness.rec.apply_windows = False
    harness.rec.refuse_kinds.add("meeting_reminder")
    starts = await monday_at(env, 11)
    meeting = MeetingScheduled("m1", "deal-1", starts.isoformat(), "Demo")
    await handle.signal(Sig.MEETING_SCHEDULED, meeting)
    await env.sleep(starts - await env.get_current_time() + timedelta(hours=1))
    tasks = [t for t in harness.rec.tasks if t.kind == "remind_meeting"]
    # both reminders were refused; one task for the meeting (the same key twice)
    assert {t.key for t in tasks} == {f"{handle.id}:remind_meeting:m1:r0"}
    assert "email: suppressed (opted out)" in tasks[0].body
    await handle.terminate()
