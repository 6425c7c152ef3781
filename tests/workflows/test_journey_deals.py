"""The journey's deal-stage rules over virtual time (time-skipping test server): the qualification
timeout's escalation and outcome, meeting briefs, reminders, reschedules, cancellations and
no-shows, and the decision deadline's last-chance task.

Activities are the recording doubles of test_journey; the real ones are exercised end to end in
tests/integration/test_deals_journey.py against the Temporal dev server.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import WorkflowHandle

from services.deals.closing import reopen
from services.deals.models import Deal
from shared.contracts.journey import (
    CloseRepTasks,
    DealClosed,
    DealReopened,
    DealStageMoved,
    DecisionDeadline,
    JourneyState,
    MeetingChanged,
    MeetingScheduled,
    OpenObjection,
    OpenObjections,
    QualificationRecorded,
    Referrer,
    ReplyReceived,
    Stage,
    StopCadence,
    system_actor,
    thanks_workflow_id,
)
from shared.contracts.names import Query, Sig
from tests.support.eventually import eventually
from tests.support.journey_harness import DAY, Harness, cadence

HOUR = 3600


async def presenting(h: Harness, **overrides: Any) -> WorkflowHandle[Any, Any]:
    handle = await h.start(**overrides)
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    return handle


def reminder_keys(h: Harness) -> list[str]:
    return [t.touch_key for t in h.rec.touches if t.kind == "meeting_reminder"]


# --- qualification timeout ----------------------------------------------------------------------


async def test_timeout_notifies_the_manager_then_nurtures(harness: Harness) -> None:
    harness.rec.manager_id = "mgr-1"
    handle = await harness.start(cadence=cadence(qualification_timeout_outcome="nurture"))
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "tell me more"))
    assert await handle.result() == "nurture"

    kinds = [t.kind for t in harness.rec.tasks]
    assert kinds == ["qualify", "qualification_reminder", "escalation"]
    notice = harness.rec.tasks[2]
    assert notice.rep_id == "mgr-1"  # the manager's task, not the rep's
    assert "Ada Lovelace" in notice.title and "deal-1" in notice.body
    assert notice.context["rep_id"] == "r1"
    cause = f"qualification timeout: no verdict after {5 * DAY} s"
    assert [(t.outcome, t.cause) for t in harness.rec.timeouts] == [("nurture", cause)]
    assert harness.rec.stage_path()[-2:] == ["qualifying", "nurture"]
    assert harness.rec.stages[-1].cause == cause
    # the deal's history has the reminder and the escalation, each with its cause
    causes = [n.cause for n in harness.rec.notes]
    assert causes[0] == f"qualification reminder sent to the rep: no verdict after {2 * DAY} s"
    assert causes[1].startswith("escalated to manager Mia Manager")
    # in that order, at the reminder point
    reminder_at = datetime.fromisoformat(harness.rec.notes[0].at)
    qualifying_at = datetime.fromisoformat(harness.rec.stages[1].at)
    assert reminder_at - qualifying_at >= timedelta(days=2)


async def test_timeout_without_a_manager_disqualifies_by_default(harness: Harness) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM1", "ok"))
    assert await handle.result() == "disqualified"
    assert "escalation" not in [t.kind for t in harness.rec.tasks]
    assert [t.outcome for t in harness.rec.timeouts] == ["disqualified"]
    assert harness.rec.stages[-1].cause.startswith("qualification timeout: no verdict after")
    assert len(harness.rec.notes) == 1  # the reminder only
    # outreach hears why, to close the qualify tasks with that reason (issue 10)
    last = harness.rec.entered[-1]
    assert (last.stage, last.journey_id) == ("disqualified", handle.id)
    assert last.reason.startswith("disqualified: qualification timeout: no verdict after")


# --- meetings -----------------------------------------------------------------------------------


async def test_meeting_brief_and_one_reminder_per_offset(harness: Harness) -> None:
    snapshot = cadence(meeting_reminders_seconds=[DAY, HOUR])
    handle = await presenting(harness, cadence=snapshot)
    now = await harness.env.get_current_time()
    starts = (now + timedelta(days=3)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await harness.env.sleep(timedelta(days=4))
    prepare = next(t for t in harness.rec.tasks if t.kind == "prepare_meeting")
    assert "BRIEF for m1" in prepare.body
    assert prepare.context["meeting_id"] == "m1" and prepare.context["fact.company"]
    assert harness.rec.briefs[0].contact.first_name == "Ada"
    assert reminder_keys(harness) == [f"meeting-m1-r0-{DAY}", f"meeting-m1-r0-{HOUR}"]
    reminder = next(t for t in harness.rec.touches if t.kind == "meeting_reminder")
    assert reminder.channels == ["email", "sms"]
    await handle.terminate()


async def test_an_older_cadence_keeps_its_single_reminder(harness: Harness) -> None:
    handle = await presenting(harness, cadence=cadence(meeting_reminder_seconds=2 * HOUR))
    now = await harness.env.get_current_time()
    starts = (now + timedelta(days=1)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await harness.env.sleep(timedelta(days=2))
    assert reminder_keys(harness) == [f"meeting-m1-r0-{2 * HOUR}"]
    await handle.terminate()


async def test_a_meeting_booked_late_gets_only_the_reminders_still_ahead(harness: Harness) -> None:
    handle = await presenting(harness, cadence=cadence(meeting_reminders_seconds=[DAY, HOUR]))
    now = await harness.env.get_current_time()
    starts = now + timedelta(minutes=30)
    # the prospect's send window opens only after the meeting: the reminder must not wait
    harness.rec.defer_once["meeting_reminder"] = (starts + timedelta(hours=8)).isoformat()
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts.isoformat(), "Call")
    )
    await harness.env.sleep(timedelta(days=1))
    # the 24 h reminder was long past: skipped; the 1 h one tried once and not after start
    assert reminder_keys(harness) == [f"meeting-m1-r0-{HOUR}"]
    await handle.terminate()


async def test_a_meeting_booked_within_a_reminders_lead_skips_it_for_the_next(
    harness: Harness,
) -> None:
    """Booked 76 minutes ahead (the booking page's first slot), reminders a day and an hour
    before: the day's reminder is not sent at once, seconds after the invitation; the hour's
    goes at its time. Moved to two hours later, the same: only the hour's, of the new time."""
    handle = await presenting(harness, cadence=cadence(meeting_reminders_seconds=[DAY, HOUR]))
    now = await harness.env.get_current_time()
    starts = now + timedelta(minutes=76)
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts.isoformat(), "Call")
    )
    await harness.env.sleep(timedelta(minutes=10))
    assert reminder_keys(harness) == []
    moved = starts + timedelta(hours=2)
    await handle.signal(
        Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved.isoformat(), "Call", 1)
    )
    await harness.env.sleep(timedelta(hours=4))
    assert reminder_keys(harness) == [f"meeting-m1-r1-{HOUR}"]
    assert harness.rec.went_at[f"meeting-m1-r1-{HOUR}"] >= moved - timedelta(hours=1)
    await handle.terminate()


async def test_reschedule_replaces_the_reminders_and_cancel_stops_them(harness: Harness) -> None:
    handle = await presenting(harness, cadence=cadence(meeting_reminders_seconds=[DAY, HOUR]))
    now = await harness.env.get_current_time()
    first = (now + timedelta(days=3)).isoformat()
    moved = (now + timedelta(days=5)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", first, "A"))
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m2", "deal-1", first, "B"))
    await harness.env.sleep(timedelta(days=1))
    await handle.signal(
        Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "A", revision=1)
    )
    # a repeated (stale) signal of the same revision changes nothing
    await handle.signal(
        Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "A", revision=1)
    )
    await handle.signal(Sig.MEETING_CANCELLED, MeetingChanged("m2", "deal-1", first, "B"))
    await harness.env.sleep(timedelta(days=6))
    assert reminder_keys(harness) == [f"meeting-m1-r1-{DAY}", f"meeting-m1-r1-{HOUR}"]
    prepares = [t.key.split(":", 1)[1] for t in harness.rec.tasks if t.kind == "prepare_meeting"]
    assert prepares == ["prepare_meeting:m1", "prepare_meeting:m2", "prepare_meeting:m1:r1"]
    # the old preparation task of the moved meeting and the cancelled one's are closed
    wid = handle.id
    moved = [c for c in harness.rec.closed_tasks if ":prepare_meeting:" in c.key_prefix]
    closed = [(c.key_prefix, c.keep_key) for c in moved]
    assert closed == [
        (f"{wid}:prepare_meeting:m1", f"{wid}:prepare_meeting:m1:r1"),
        (f"{wid}:prepare_meeting:m2", None),
    ]
    assert "cancelled" in moved[1].reason
    await handle.terminate()


async def five_minutes_before_the_reminder(
    h: Harness,
) -> tuple[WorkflowHandle[Any, Any], datetime]:
    """Presenting, meeting m1 in 3 h with a 1 h reminder, 5 minutes before that reminder.
    Returns the handle and m1's start."""
    handle = await presenting(h, cadence=cadence(meeting_reminders_seconds=[HOUR]))
    now = await h.env.get_current_time()
    first = now + timedelta(hours=3)
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", first.isoformat(), "A")
    )
    await h.env.sleep(first - timedelta(hours=1, minutes=5) - now)
    return handle, first


async def test_a_moved_meeting_s_old_reminder_stops_while_deals_is_away(
    harness: Harness,
) -> None:
    """The move comes 5 minutes before the old time's 1 h reminder, and the new brief fails for
    minutes (deals away): the old reminder must not go out meanwhile."""
    harness.rec.failing_moved_brief_attempts = 12  # about 7 minutes of retries
    handle, first = await five_minutes_before_the_reminder(harness)
    moved = (first + timedelta(days=1)).isoformat()
    await handle.signal(
        Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "A", revision=1)
    )
    await harness.env.sleep(timedelta(days=2))
    assert reminder_keys(harness) == [f"meeting-m1-r1-{HOUR}"]
    assert [b.meeting_id for b in harness.rec.briefs] == ["m1", "m1"]  # the move's, at last
    await handle.terminate()


async def busy_with_another_meeting(h: Harness, handle: WorkflowHandle[Any, Any]) -> None:
    """A second meeting is booked whose brief fails for about 6 minutes (deals away): presenting
    waits on it, and the deal's next events wait behind it."""
    h.rec.failing_brief_attempts["m2"] = 12
    later = await h.env.get_current_time() + timedelta(days=10)
    await handle.signal(
        Sig.MEETING_SCHEDULED, MeetingScheduled("m2", "deal-1", later.isoformat(), "B")
    )


async def test_a_meeting_moved_while_presenting_is_busy_gets_no_reminder_of_its_old_time(
    harness: Harness,
) -> None:
    """Moved 5 minutes before the old time's 1 h reminder, while presenting waits on another
    meeting's brief for minutes: the old reminder must not go out meanwhile."""
    handle, first = await five_minutes_before_the_reminder(harness)
    await busy_with_another_meeting(harness, handle)
    moved = (first + timedelta(days=1)).isoformat()
    await handle.signal(
        Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "A", revision=1)
    )
    await harness.env.sleep(timedelta(days=2))
    assert reminder_keys(harness) == [f"meeting-m1-r1-{HOUR}"]
    prepares = [t.key.split(":", 1)[1] for t in harness.rec.tasks if t.kind == "prepare_meeting"]
    assert prepares == ["prepare_meeting:m1", "prepare_meeting:m2", "prepare_meeting:m1:r1"]
    await handle.terminate()


async def test_a_meeting_cancelled_while_presenting_is_busy_gets_no_more_reminders(
    harness: Harness,
) -> None:
    handle, first = await five_minutes_before_the_reminder(harness)
    await busy_with_another_meeting(harness, handle)
    await handle.signal(
        Sig.MEETING_CANCELLED, MeetingChanged("m1", "deal-1", first.isoformat(), "A")
    )
    await harness.env.sleep(timedelta(days=2))
    assert reminder_keys(harness) == []
    await handle.terminate()


# --- meetings booked while the deal is still qualifying ----------------------------------------


async def booked_while_qualifying(
    h: Harness, starts_in: timedelta, **overrides: Any
) -> WorkflowHandle[Any, Any]:
    """What the booking link tells a journey whose deal stays qualifying (the gate not passed):
    a reply by "booking link", then the meeting (services/deals/meetings/public.py)."""
    handle = await h.start(**overrides)
    await h.env.sleep(timedelta(minutes=5))
    starts = await h.env.get_current_time() + starts_in
    actor = system_actor("booking link")
    booked = ReplyReceived("booking link", "booking-m1", "booked", actor)
    await handle.signal(Sig.REPLY_RECEIVED, booked)
    await handle.signal(
        Sig.MEETING_SCHEDULED,
        MeetingScheduled("m1", "deal-1", starts.isoformat(), "Intro call", 0, actor),
    )
    return handle


async def test_a_meeting_booked_while_qualifying_is_prepared_and_reminded(
    harness: Harness,
) -> None:
    snapshot = cadence(meeting_reminders_seconds=[DAY, HOUR])
    handle = await booked_while_qualifying(harness, timedelta(days=2), cadence=snapshot)
    await harness.env.sleep(timedelta(days=2, hours=1))  # past the meeting, before the timeout
    assert await stage_of(handle) == "qualifying"
    prepare = [t for t in harness.rec.tasks if t.kind == "prepare_meeting"]
    assert len(prepare) == 1 and "BRIEF for m1" in prepare[0].body
    assert reminder_keys(harness) == [f"meeting-m1-r0-{DAY}", f"meeting-m1-r0-{HOUR}"]
    # the verdict after the meeting: presenting does not plan the meeting a second time
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await harness.env.sleep(timedelta(hours=1))
    assert await stage_of(handle) == "presenting"
    assert [t.kind for t in harness.rec.tasks].count("prepare_meeting") == 1
    assert len(harness.rec.briefs) == 1
    await handle.terminate()


async def test_a_meeting_booked_past_the_timeout_holds_it_until_a_day_after(
    harness: Harness,
) -> None:
    """Booked for day 7 of a 5-day qualification timeout: no timeout before the meeting; with
    no verdict a day after it, the timeout's outcome applies."""
    handle = await booked_while_qualifying(harness, timedelta(days=7))
    await harness.env.sleep(timedelta(days=7, hours=12))
    assert await stage_of(handle) == "qualifying"
    assert harness.rec.timeouts == []
    assert await handle.result() == "disqualified"
    decided = datetime.fromisoformat(harness.rec.stages[-1].at)
    prepare = next(t for t in harness.rec.tasks if t.kind == "prepare_meeting")
    meeting = datetime.fromisoformat(prepare.context["meeting_starts_at"])
    assert timedelta(days=1) <= decided - meeting < timedelta(days=1, hours=1)


async def test_a_verdict_after_a_booked_meeting_beats_the_held_timeout(harness: Harness) -> None:
    handle = await booked_while_qualifying(harness, timedelta(days=7))
    await harness.env.sleep(timedelta(days=7, hours=3))
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    await harness.env.sleep(timedelta(days=3))
    assert await stage_of(handle) == "presenting"
    assert harness.rec.timeouts == []
    await handle.terminate()


async def test_a_cancelled_booking_no_longer_holds_the_timeout(harness: Harness) -> None:
    handle = await booked_while_qualifying(harness, timedelta(days=7))
    await harness.env.sleep(timedelta(days=1))
    meeting = next(t for t in harness.rec.tasks if t.kind == "prepare_meeting")
    starts = meeting.context["meeting_starts_at"]
    await handle.signal(Sig.MEETING_CANCELLED, MeetingChanged("m1", "deal-1", starts, "Intro call"))
    assert await handle.result() == "disqualified"
    qualifying_at = datetime.fromisoformat(harness.rec.stages[1].at)
    decided = datetime.fromisoformat(harness.rec.stages[-1].at)
    assert decided - qualifying_at < timedelta(days=5, hours=1)  # the timeout as configured
    assert reminder_keys(harness) == []


async def test_no_show_gives_a_follow_up_task_and_a_rebooking_touch(harness: Harness) -> None:
    handle = await presenting(harness)
    now = await harness.env.get_current_time()
    starts = (now + timedelta(hours=2)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await harness.env.sleep(timedelta(hours=3))
    await handle.signal(Sig.MEETING_NO_SHOW, MeetingChanged("m1", "deal-1", starts, "Demo"))
    await handle.signal(Sig.MEETING_NO_SHOW, MeetingChanged("m1", "deal-1", starts, "Demo"))
    await harness.env.sleep(timedelta(minutes=1))  # the re-booking message goes
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "went dark"))
    assert await handle.result() == "lost"
    follow_ups = [t for t in harness.rec.tasks if t.kind == "no_show"]
    assert len(follow_ups) == 1 and "did not come" in follow_ups[0].body
    rebook = [t for t in harness.rec.touches if t.kind == "meeting_rebook"]
    assert [t.touch_key for t in rebook] == ["rebook-m1-r0"]
    assert rebook[0].channels == ["email", "sms"]
    closed = [c.key_prefix.split(":", 1)[1] for c in harness.rec.closed_tasks]
    assert closed == ["qualif", "prepare_meeting:m1"]


async def missed_and_rebooking_waits(h: Harness) -> WorkflowHandle[Any, Any]:
    """Presenting; m1 missed, and its re-booking message told to wait 8 hours for a window."""
    handle = await presenting(h, cadence=cadence(referral_delay_seconds=30 * DAY))
    now = await h.env.get_current_time()
    starts = (now + timedelta(hours=2)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await h.env.sleep(timedelta(hours=3))
    h.rec.hold_once["meeting_rebook"] = (now + timedelta(hours=11)).isoformat()
    await handle.signal(Sig.MEETING_NO_SHOW, MeetingChanged("m1", "deal-1", starts, "Demo"))

    async def told_to_wait() -> bool:
        return any(t.kind == "meeting_rebook" for t in h.rec.touches)

    await eventually(told_to_wait, "the re-booking message told to wait")
    return handle


async def test_a_won_client_is_not_asked_to_rebook_the_meeting_they_missed(
    harness: Harness,
) -> None:
    handle = await missed_and_rebooking_waits(harness)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed after all"))
    await harness.env.sleep(timedelta(days=1))
    assert await stage_of(handle) == "won"
    rebook = [t for t in harness.rec.touches if t.kind == "meeting_rebook"]
    assert len(rebook) == 1  # told to wait, never sent
    await handle.terminate()


async def test_a_prospect_who_booked_again_is_not_asked_to_rebook(
    harness_alone: Harness,
) -> None:
    """On a server of its own: this sequence (the message waiting, then a new booking) left
    the test server's time skipping locked for the tests after it, with the code before the
    change too."""
    h = harness_alone
    handle = await missed_and_rebooking_waits(h)
    now = await h.env.get_current_time()
    again = (now + timedelta(days=2)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m2", "deal-1", again, "Demo"))
    await h.env.sleep(timedelta(days=1))
    assert len([t for t in h.rec.touches if t.kind == "meeting_rebook"]) == 1
    await handle.terminate()


# --- the decision deadline ----------------------------------------------------------------------


async def test_moved_deadline_rearms_the_last_chance_task(harness: Harness) -> None:
    harness.rec.open_objections = OpenObjections(
        "deal-1",
        "objections",
        False,
        [OpenObjection("o1", "price", "too expensive", "Show the ROI")],
    )
    handle = await presenting(harness)
    now = await harness.env.get_current_time()
    await handle.signal(
        Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", (now + timedelta(days=2)).isoformat())
    )
    later = (now + timedelta(days=4)).isoformat()
    await harness.env.sleep(timedelta(days=1))
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", later))
    await harness.env.sleep(timedelta(days=2))
    assert not [t for t in harness.rec.tasks if t.kind == "last_chance"]  # the first was moved
    await harness.env.sleep(timedelta(days=2))
    chances = [t for t in harness.rec.tasks if t.kind == "last_chance"]
    assert len(chances) == 1
    assert 'price: "too expensive" -> try: Show the ROI' in chances[0].body
    assert chances[0].context["deadline"] == later
    assert harness.rec.objection_checks == ["deal-1"]
    await handle.terminate()


async def test_a_deadline_moved_while_presenting_is_busy_gets_no_last_chance_at_the_old_one(
    harness: Harness,
) -> None:
    """Moved 5 minutes before it passes, while presenting waits on a meeting's brief for
    minutes: no last-chance task for the deadline that is gone."""
    handle = await presenting(harness)
    now = await harness.env.get_current_time()
    first = now + timedelta(hours=2)
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", first.isoformat()))
    await harness.env.sleep(first - timedelta(minutes=5) - now)
    await busy_with_another_meeting(harness, handle)
    later = (first + timedelta(days=1)).isoformat()
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", later))
    await harness.env.sleep(timedelta(days=2))
    chances = [t for t in harness.rec.tasks if t.kind == "last_chance"]
    assert [t.context["deadline"] for t in chances] == [later]
    await handle.terminate()


async def test_a_passed_deadline_moved_or_cleared_closes_its_last_chance_task(
    harness: Harness,
) -> None:
    """The deadline passed (the rep got their last chance), then the client asked for another
    week, then the deadline was cleared: the task of the deadline that is gone closes each
    time, and a deadline still ahead closes nothing."""
    harness.rec.open_objections = OpenObjections("deal-1", "presenting", False, [])
    handle = await presenting(harness)
    now = await harness.env.get_current_time()
    first = (now + timedelta(days=1)).isoformat()
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", first))
    await harness.env.sleep(timedelta(hours=2))
    ahead = (now + timedelta(days=2)).isoformat()
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", ahead))
    await harness.env.sleep(timedelta(days=3))
    chances = [t for t in harness.rec.tasks if t.kind == "last_chance"]
    assert [t.context["deadline"] for t in chances] == [ahead]
    assert closes(harness) == []  # moved before it passed: nothing to close

    week = (now + timedelta(days=10)).isoformat()
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", week))
    wid = handle.id

    async def closed() -> bool:
        return len(closes(harness)) == 1

    await eventually(closed, "the passed deadline's last chance closed")
    (moved,) = closes(harness)
    assert moved.key_prefix == f"{wid}:last_chance:deal-1:"
    assert moved.reason == f"the decision deadline moved to {week}"
    assert chances[0].key.startswith(moved.key_prefix)  # the passed one's task: closed
    due = datetime.fromisoformat(week).strftime("%Y%m%dT%H%M%S")
    assert moved.keep_key == f"{moved.key_prefix}{due}"  # the new one's, were it made first

    await harness.env.sleep(timedelta(days=8))  # the week passed too: its own last chance
    chances = [t for t in harness.rec.tasks if t.kind == "last_chance"]
    assert [t.key for t in chances][1:] == [moved.keep_key]
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", None))

    async def closed_again() -> bool:
        return len(closes(harness)) == 2

    await eventually(closed_again, "the cleared deadline's last chance closed")
    cleared = closes(harness)[1]
    assert (cleared.key_prefix, cleared.reason, cleared.keep_key) == (
        moved.key_prefix,
        "the decision deadline was cleared",
        None,
    )
    await handle.terminate()


def closes(h: Harness) -> list[CloseRepTasks]:
    return [c for c in h.rec.closed_tasks if ":last_chance:" in c.key_prefix]


async def test_a_decided_deal_gets_no_last_chance(harness: Harness) -> None:
    handle = await presenting(harness, cadence=cadence(referral_delay_seconds=30 * DAY))
    now = await harness.env.get_current_time()
    await handle.signal(
        Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", (now + timedelta(days=2)).isoformat())
    )
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=3))
    assert harness.rec.objection_checks == []  # the timer stopped with the decision
    assert not [t for t in harness.rec.tasks if t.kind == "last_chance"]
    await handle.terminate()


# --- one stage truth and tasks that follow (issue 10) -------------------------------------------


async def test_deal_moves_are_recorded_once_and_every_stage_tells_outreach(
    harness: Harness,
) -> None:
    handle = await presenting(harness)
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))  # a retry
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "qualifying"))  # no
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    assert await handle.result() == "lost"
    assert harness.rec.stage_path() == ["contacting", "qualifying", "presenting", "closing", "lost"]
    assert harness.rec.stages[3].cause == "deal deal-1: moved by the rep"
    entered = [(e.stage, e.reason) for e in harness.rec.entered]
    assert entered[-2:] == [
        ("closing", "closing: deal deal-1: moved by the rep"),
        ("lost", "lost: closed lost: no budget"),
    ]
    lasting = ["thank_client", "reply", "client_reply", "meeting_after_decision"]
    assert all(e.keep_kinds == lasting for e in harness.rec.entered)


# --- a won deal reopened while the journey asks for referrals (issue 10 point 4) ---------------


async def stage_of(handle: WorkflowHandle[Any, Any]) -> str:
    state = await handle.query(Query.STATE, result_type=JourneyState)
    return state.stage


async def test_won_deal_reopened_in_referrals_goes_back_and_wins_again(harness: Harness) -> None:
    handle = await presenting(harness)
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    # past the referral delay (7 days): the request went, the first reminder (3 days on) not
    await harness.env.sleep(timedelta(days=8))
    assert await stage_of(handle) == "referrals"
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    assert await stage_of(handle) == "objections"
    # the reminders that were due while the deal is open again never go
    await harness.env.sleep(timedelta(days=10))
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed again"))
    assert await handle.result() == "won"

    assert harness.rec.stage_path()[2:] == [
        "presenting",
        "closing",
        "won",
        "referrals",
        "objections",
        "closing",
        "won",
        "referrals",
    ]
    reopened = harness.rec.stages[6]
    assert reopened.from_stage == "referrals" and reopened.cause == "deal reopened"
    # leaving referrals told outreach, whose stage groups close the referral-ask tasks
    assert ("objections", "objections: deal reopened") in [
        (e.stage, e.reason) for e in harness.rec.entered
    ]
    kinds = [t.kind for t in harness.rec.touches]
    assert kinds.count("referral_ask") == 1  # the first win's request: not asked again
    assert "referral_reminder" not in kinds  # cancelled by the reopening
    assert [t.kind for t in harness.rec.tasks].count("thank_client") == 1
    assert "referral request sent at an earlier win" in harness.rec.stages[-1].cause


async def test_won_deal_reopened_before_the_request_asks_at_the_next_win(
    harness: Harness,
) -> None:
    handle = await presenting(harness, cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=1))  # within the referral delay: nothing asked yet
    assert await stage_of(handle) == "won"
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    assert await stage_of(handle) == "presenting"
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed after all"))
    assert await handle.result() == "won"

    assert harness.rec.stage_path()[2:] == [
        "presenting",
        "closing",
        "won",
        "presenting",
        "closing",
        "won",
        "referrals",
    ]
    assert [t.kind for t in harness.rec.touches].count("referral_ask") == 1
    assert harness.rec.stages[-1].cause == "referral request sent"


async def test_lost_deal_reopened_while_the_run_records_the_loss_goes_back(
    harness: Harness,
) -> None:
    """The rep closes the deal lost; while the run records the loss (prospecting slow) a manager
    reopens it. Deals sees the run still going and tells it, not a new run: the run follows the
    deal back to its stage instead of ending lost with the reopening unheard."""
    harness.rec.hold_stage = "lost"
    handle = await presenting(harness, cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await asyncio.wait_for(harness.rec.stage_held.wait(), 60)
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert (state.stage, state.finished) == ("lost", False)  # deals signals this run
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "objections"))
    harness.rec.release_stage.set()
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
    # outreach heard the way back: the prospect's task cards show the deal's stage again
    assert ("objections", "objections: deal reopened") in [
        (e.stage, e.reason) for e in harness.rec.entered
    ]
    assert [(e.run, e.outcome) for e in harness.rec.run_ends] == [(1, "won")]


async def test_a_reopening_heard_after_the_run_finished_gets_a_new_run(
    harness: Harness,
) -> None:
    """Deals saw the run of the lost deal still going and reopened the deal; its signal landed
    after the run's last look for reopenings, while it reported its end. The run accepts it but
    ends lost: deals finds that out (the closed run's state: finished, the reopening heard and
    not followed) and a new run takes the deal, as for any ended run."""
    harness.rec.hold_run_end = True
    handle = await presenting(harness, cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await asyncio.wait_for(harness.rec.run_end_held.wait(), 60)
    prospect_id = handle.id.removeprefix("journey-")
    deal = Deal(id="deal-1", prospect_id=prospect_id, stage="objections")

    async def release_once_told() -> None:
        async def heard() -> bool:
            state = await handle.query(Query.STATE, result_type=JourneyState)
            return state.reopenings_heard == 1

        await eventually(heard, "the run told of the reopening")
        harness.rec.release_run_end.set()

    release = asyncio.create_task(release_once_told())
    run_id = handle.result_run_id or ""
    try:
        assert not await reopen.told_run_follows(harness.env.client, deal, run_id, "admin")
        await release
    finally:
        release.cancel()  # a failure above must not leave it polling the journey
    assert await handle.result() == "lost"
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert (state.finished, state.reopenings_heard, state.reopenings_handled) == (True, 1, 0)


async def test_a_run_told_of_a_reopening_while_recording_the_loss_follows_it(
    harness: Harness,
) -> None:
    """Told before its last look (still recording the loss), the run follows the reopening:
    deals starts no new run."""
    harness.rec.hold_stage = "lost"
    handle = await presenting(harness, cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    await asyncio.wait_for(harness.rec.stage_held.wait(), 60)
    deal = Deal(id="deal-1", prospect_id=handle.id.removeprefix("journey-"), stage="objections")
    run_id = handle.result_run_id or ""
    assert await reopen.told_run_follows(harness.env.client, deal, run_id, "admin")
    harness.rec.release_stage.set()
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed after all"))
    assert await handle.result() == "won"
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert (state.reopenings_heard, state.reopenings_handled) == (1, 1)
    assert await reopen.reopening_followed(harness.env.client, deal.prospect_id, run_id)


# --- issue 14: stage actor ------------------------------------------------------------------------


async def test_each_stage_change_names_who_caused_it(harness: Harness) -> None:
    """The signal's actor (a key holder, a provider's webhook) is the stage change's; the
    journey's own moves name their reason as a system actor."""
    rep, admin = "rep r1 (key_r1)", "admin (cfg_abc)"
    handle = await harness.start()
    await handle.signal(
        Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes", "system:reply via mailgun")
    )
    await handle.signal(
        Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, [], actor=rep)
    )
    await handle.signal(Sig.DEAL_STAGE_MOVED, DealStageMoved("deal-1", "closing", actor=rep))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget", admin))
    assert await handle.result() == "lost"
    assert [(s.to_stage, s.actor) for s in harness.rec.stages] == [
        ("contacting", "system:enrollment"),
        ("qualifying", "system:reply via mailgun"),
        ("presenting", rep),
        ("closing", rep),
        ("lost", admin),
    ]


async def test_a_stopped_cadence_names_who_stopped_it(harness: Harness) -> None:
    handle = await harness.start()
    await handle.signal(Sig.STOP_CADENCE, StopCadence("asked by phone", "ops (cfg_abc)"))
    assert await handle.result() == "nurture"
    assert (harness.rec.stages[-1].to_stage, harness.rec.stages[-1].actor) == (
        "nurture",
        "ops (cfg_abc)",
    )


async def test_a_timeout_and_a_sender_from_before_actors_name_the_system(
    harness: Harness,
) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM1", "ok"))  # no actor
    assert await handle.result() == "disqualified"
    assert [(s.to_stage, s.actor) for s in harness.rec.stages][1:] == [
        ("qualifying", "system:reply"),
        ("disqualified", "system:qualification timeout"),
    ]


# --- found in review (2026-12-07, second): what a reopening, a repeat and a late verdict do ------


async def test_a_reopened_deal_gets_back_its_meetings_reminders_and_its_deadline(
    harness: Harness,
) -> None:
    """The close stopped the reminders of a meeting still ahead and the decision deadline's
    watch; reopened, the deal has both again (not the reminders whose time passed meanwhile)."""
    harness.rec.open_objections = OpenObjections("deal-1", "presenting", False, [])
    snapshot = cadence(
        meeting_reminders_seconds=[3 * DAY, DAY, HOUR], referral_delay_seconds=30 * DAY
    )
    handle = await presenting(harness, cadence=snapshot)
    now = await harness.env.get_current_time()
    starts = (now + timedelta(days=10)).isoformat()
    deadline = (now + timedelta(days=12)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Demo"))
    await handle.signal(Sig.DECISION_DEADLINE, DecisionDeadline("deal-1", deadline))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=8))  # the 3-day reminder's time passes while won
    assert reminder_keys(harness) == []
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    assert await stage_of(handle) == "presenting"
    await harness.env.sleep(timedelta(days=5))
    assert reminder_keys(harness) == [f"meeting-m1-r0-{DAY}", f"meeting-m1-r0-{HOUR}"]
    chances = [t for t in harness.rec.tasks if t.kind == "last_chance"]
    assert [t.context["deadline"] for t in chances] == [deadline]
    # the close closed the meeting's preparation (the journey left the deal's stages): the
    # reopened deal gives the rep one again, under a key of its own
    prepares = [t for t in harness.rec.tasks if t.kind == "prepare_meeting"]
    keys = [t.key.removeprefix(f"{handle.id}:") for t in prepares]
    assert keys == ["prepare_meeting:m1", "prepare_meeting:m1:reopened1"]
    again = prepares[1]
    assert again.context["meeting_starts_at"] == starts
    assert again.due_at == (datetime.fromisoformat(starts) - timedelta(hours=2)).isoformat()
    await handle.terminate()


async def test_a_meeting_cancelled_while_the_deal_was_won_is_not_prepared_at_its_reopening(
    harness: Harness,
) -> None:
    """Won with a kickoff ahead, the rep asked whether to keep it cancels it; the deal is
    reopened: no preparation task for the cancelled meeting (before, one was made and closed
    again at once, its notice sent)."""
    handle = await presenting(harness, cadence=cadence(referral_delay_seconds=30 * DAY))
    now = await harness.env.get_current_time()
    starts = (now + timedelta(days=10)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Kickoff"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=1))
    cancelled = MeetingChanged("m1", "deal-1", starts, "Kickoff")
    await handle.signal(Sig.MEETING_CANCELLED, cancelled)
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    assert await stage_of(handle) == "presenting"
    await harness.env.sleep(timedelta(hours=1))
    prepares = [t.key.removeprefix(f"{handle.id}:") for t in harness.rec.tasks]
    assert [k for k in prepares if k.startswith("prepare_meeting:")] == ["prepare_meeting:m1"]
    await handle.terminate()


async def test_a_booking_heard_again_or_late_plans_nothing_more(harness: Harness) -> None:
    """The booking page reloaded sends the booking again, and a late one can come after its
    move: planned again, the late one put back the old time and its reminders then stopped as
    the meeting had moved on, so the meeting got none at all."""
    handle = await presenting(harness, cadence=cadence(meeting_reminders_seconds=[DAY, HOUR]))
    now = await harness.env.get_current_time()
    first, moved = (now + timedelta(days=3)).isoformat(), (now + timedelta(days=5)).isoformat()
    booked = MeetingScheduled("m1", "deal-1", first, "Demo")
    await handle.signal(Sig.MEETING_SCHEDULED, booked)
    await handle.signal(Sig.MEETING_SCHEDULED, booked)  # the page reloaded
    await harness.env.sleep(timedelta(days=1))
    await handle.signal(
        Sig.MEETING_RESCHEDULED, MeetingChanged("m1", "deal-1", moved, "Demo", revision=1)
    )
    await handle.signal(Sig.MEETING_SCHEDULED, booked)  # late: before the move
    await harness.env.sleep(timedelta(days=5))
    assert reminder_keys(harness) == [f"meeting-m1-r1-{DAY}", f"meeting-m1-r1-{HOUR}"]
    assert [b.meeting_id for b in harness.rec.briefs] == ["m1", "m1"]  # booked, moved
    prepares = [t.key.split(":", 1)[1] for t in harness.rec.tasks if t.kind == "prepare_meeting"]
    assert prepares == ["prepare_meeting:m1", "prepare_meeting:m1:r1"]
    await handle.terminate()


async def test_a_verdict_heard_while_the_reminder_is_made_escalates_nothing(
    harness: Harness,
) -> None:
    harness.rec.manager_id = "mgr-1"
    harness.rec.hold_task_kind = "qualification_reminder"
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "tell me more"))
    result = asyncio.create_task(handle.result())  # time skips to the reminder meanwhile
    await asyncio.wait_for(harness.rec.task_held.wait(), 60)
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no"]))
    harness.rec.release_task.set()
    assert await result == "disqualified"
    assert [t.kind for t in harness.rec.tasks] == ["qualify", "qualification_reminder"]
    assert not [n for n in harness.rec.notes if "escalated" in n.cause]


async def test_a_reopening_of_a_close_the_journey_never_heard_is_not_followed(
    harness: Harness,
) -> None:
    """The close's signal was lost and the client reopened the deal instead of repeating it:
    the journey, still presenting, heard only the reopening. At the deal's next close it went
    back to presenting at once and waited there for ever, its deal closed."""
    handle = await presenting(harness, cadence=cadence(referral_reminders=0))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    assert await handle.result() == "lost"
    assert harness.rec.stage_path()[-3:] == ["presenting", "closing", "lost"]
    state = await handle.query(Query.STATE, result_type=JourneyState)
    assert (state.reopenings_heard, state.reopenings_handled) == (1, 1)


async def test_a_referrers_thanks_waiting_for_their_window_outlives_a_run_that_ends(
    harness_alone: Harness,
) -> None:
    """Grace referred Ada; Ada books a meeting in the evening, the thanks waits for Grace's
    window, and the deal is lost before it opens: the run's end cancelled the thanks, and Grace
    was never thanked. Now ThankReferrer carries it on, on the run's ledger key."""
    now = await harness_alone.env.get_current_time()
    harness_alone.rec.hold_once["referrer_thanks_meeting"] = (now + timedelta(hours=8)).isoformat()
    handle = await harness_alone.start(
        start_stage=Stage.QUALIFYING, referrer=Referrer("p-ref", "Grace Hopper", "ref-1")
    )
    await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
    starts = (now + timedelta(days=2)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", starts, "Intro"))

    async def waiting() -> bool:
        return any(t.kind == "referrer_thanks_meeting" for t in harness_alone.rec.touches)

    await eventually(waiting, "the thanks told to wait for Grace's window")
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    assert await handle.result() == "lost"
    # (not `thanked == []` here: under load ThankReferrer, which the fake lets send at once,
    # thanked before this line ran; the run's own thanks show in the count below)

    thanks = harness_alone.env.client.get_workflow_handle(thanks_workflow_id("ref-1", "meeting"))
    assert await thanks.result() == "thanked for meeting"
    sends = [t for t in harness_alone.rec.touches if t.kind == "referrer_thanks_meeting"]
    assert len(sends) == 2  # told to wait, then sent: by the run, then by ThankReferrer
    assert {(t.journey_id, t.touch_key) for t in sends} == {(handle.id, "referrer-thanks-meeting")}
    assert sends[-1].contact.prospect_id == "p-ref"
    assert [(t.referral_id, t.event) for t in harness_alone.rec.thanked] == [("ref-1", "meeting")]


# --- meetings still ahead of a decided deal ----------------------------------------------------


def decided_meeting_tasks(h: Harness) -> list[tuple[str, str, str]]:
    return [
        (t.key.split(":", 1)[1], t.context["outcome"], t.context["meeting_id"])
        for t in h.rec.tasks
        if t.kind == "meeting_after_decision"
    ]


async def test_a_deal_lost_with_a_meeting_ahead_asks_the_rep_to_keep_or_cancel_it(
    harness: Harness,
) -> None:
    """The close cancels no meeting and stops its reminders, and the rep's preparation task
    closes with the stage: the meeting stood on both calendars, forgotten, with nobody asked.
    A meeting already held, or cancelled, asks nothing."""
    handle = await presenting(harness, cadence=cadence(meeting_reminders_seconds=[DAY]))
    now = await harness.env.get_current_time()
    held, ahead = (now + timedelta(hours=2)).isoformat(), (now + timedelta(days=10)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m0", "deal-1", held, "Intro"))
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", ahead, "Demo"))
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m2", "deal-1", ahead, "Other"))
    await harness.env.sleep(timedelta(hours=3))
    await handle.signal(Sig.MEETING_HELD, MeetingChanged("m0", "deal-1", held, "Intro"))
    await handle.signal(Sig.MEETING_CANCELLED, MeetingChanged("m2", "deal-1", ahead, "Other"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "no budget"))
    assert await handle.result() == "lost"
    assert decided_meeting_tasks(harness) == [("meeting_after_decision:m1:1", "lost", "m1")]
    task = next(t for t in harness.rec.tasks if t.kind == "meeting_after_decision")
    assert "POST /deals/deal-1/meetings/m1/cancel" in task.body, task.body
    # the loss closes the deal's tasks, not this one
    lost = [e for e in harness.rec.entered if e.stage == "lost"]
    assert lost and "meeting_after_decision" in lost[0].keep_kinds


async def test_a_won_deal_reopened_closes_the_question_of_its_meeting(harness: Harness) -> None:
    harness.rec.open_objections = OpenObjections("deal-1", "presenting", False, [])
    handle = await presenting(harness, cadence=cadence(referral_delay_seconds=30 * DAY))
    ahead = (await harness.env.get_current_time() + timedelta(days=10)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", ahead, "Kickoff"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=1))
    assert decided_meeting_tasks(harness) == [("meeting_after_decision:m1:1", "won", "m1")]
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    assert await stage_of(handle) == "presenting"

    async def closed() -> bool:
        prefix = f"{handle.id}:meeting_after_decision:"
        return any(c.key_prefix == prefix for c in harness.rec.closed_tasks)

    await eventually(closed, "the question closed at the reopening")
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", False, "went elsewhere"))
    assert await handle.result() == "lost"
    # decided again, asked again
    assert [k for k, _, _ in decided_meeting_tasks(harness)] == [
        "meeting_after_decision:m1:1",
        "meeting_after_decision:m1:2",
    ]


async def test_a_prospect_disqualified_with_a_meeting_booked_asks_the_rep_about_it(
    harness: Harness,
) -> None:
    handle = await harness.start()
    await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "yes"))
    ahead = (await harness.env.get_current_time() + timedelta(days=4)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", ahead, "Intro"))

    async def prepared() -> bool:
        return any(t.kind == "prepare_meeting" for t in harness.rec.tasks)

    await eventually(prepared, "the meeting planned while qualifying")
    await handle.signal(
        Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["no budget"])
    )
    assert await handle.result() == "disqualified"
    assert decided_meeting_tasks(harness) == [("meeting_after_decision:m1:0", "disqualified", "m1")]


async def test_a_meeting_cancelled_after_the_win_is_not_reminded_once_the_deal_is_reopened(
    harness: Harness,
) -> None:
    """Deals tells the run of a won deal (in referrals) that its meeting was cancelled: the
    reopening re-arms the reminders of the meetings still ahead, and re-armed this one's."""
    harness.rec.open_objections = OpenObjections("deal-1", "presenting", False, [])
    snapshot = cadence(meeting_reminders_seconds=[3 * DAY, DAY], referral_delay_seconds=30 * DAY)
    handle = await presenting(harness, cadence=snapshot)
    ahead = (await harness.env.get_current_time() + timedelta(days=10)).isoformat()
    await handle.signal(Sig.MEETING_SCHEDULED, MeetingScheduled("m1", "deal-1", ahead, "Kickoff"))
    await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
    await harness.env.sleep(timedelta(days=1))
    await handle.signal(Sig.MEETING_CANCELLED, MeetingChanged("m1", "deal-1", ahead, "Kickoff"))
    await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", "presenting"))
    assert await stage_of(handle) == "presenting"
    await harness.env.sleep(timedelta(days=10))
    assert reminder_keys(harness) == []
    await handle.terminate()
