"""A prospect's zone that changes while their journey waits for a cadence step (an import fills
it in: contact_changed) re-plans that step on the new zone's business days. It kept the due time
of the old zone: moved from Los Angeles to Tokyo, the prospect got the step on their Saturday.

Each journey starts on a Friday at 10:00 in Tokyo, Thursday evening in Los Angeles, so one
business day later is Monday in Tokyo and Friday (Saturday in Tokyo) in Los Angeles.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from shared.contracts.journey import ContactChanged
from shared.contracts.names import Query, Sig
from shared.contracts.plan import add_business_days
from tests.support.journey_harness import (
    LA,
    TOKYO,
    Harness,
    business_days_cadence,
    sleep_until_local,
)
from workflows.journey.versions import Patch

FRIDAY, MONDAY, TUESDAY = 4, 0, 1
# what a send the doubles answer at once may add (workflow tasks, activity dispatch)
SLACK = timedelta(seconds=30)


def due(start: datetime, days: int, zone: str) -> datetime:
    """`days` business days after `start` in `zone` (the cadence's plan, no holidays)."""
    return add_business_days(start, days, zone)


async def start_on_tokyo_friday(
    harness: Harness, zone: str, last: int = 2
) -> tuple[WorkflowHandle[Any, Any], datetime]:
    """Start a journey on the next Friday 10:00 in Tokyo (virtual time) whose prospect is in
    `zone` (`business_days_cadence(last)`); returns it with its start."""
    start = await sleep_until_local(harness.env, TOKYO, FRIDAY, 10)
    handle = await harness.start(
        contact={"timezone": zone, "zone": zone}, cadence=business_days_cadence(last)
    )
    return handle, start


def local(when: datetime, zone: str) -> tuple[int, int]:
    """(weekday, hour) of `when` on the clock of `zone`."""
    there = when.astimezone(ZoneInfo(zone))
    return there.weekday(), there.hour


async def move(handle: WorkflowHandle[Any, Any], zone: str) -> None:
    await handle.signal(
        Sig.CONTACT_CHANGED, ContactChanged("ada@example.com", "+14155550100", zone, zone)
    )


async def test_a_prospect_moved_to_tokyo_gets_the_waiting_step_on_their_monday(
    harness: Harness,
) -> None:
    handle, start = await start_on_tokyo_friday(harness, LA)
    await harness.env.sleep(timedelta(hours=1))
    assert list(harness.rec.went_at) == ["step-0"]
    await move(handle, TOKYO)
    await harness.env.sleep(timedelta(minutes=1))
    state = await handle.query(Query.STATE)
    assert state["timezone"] == TOKYO
    monday = due(start, 1, TOKYO)
    assert local(monday, TOKYO) == (MONDAY, 10)
    assert timedelta(0) <= datetime.fromisoformat(state["next_touch_due"]) - monday < SLACK
    assert await handle.result() == "nurture"
    went = harness.rec.went_at
    # before the fix: Friday 17:00 in Los Angeles, Saturday 10:00 in Tokyo
    assert local(went["step-1"], TOKYO) == (MONDAY, 10), went["step-1"]
    assert timedelta(0) <= went["step-1"] - monday < SLACK
    assert timedelta(0) <= went["step-2"] - due(start, 2, TOKYO) < SLACK, went["step-2"]
    assert local(went["step-2"], TOKYO) == (TUESDAY, 10)
    assert [t.touch_key for t in harness.rec.touches] == ["step-0", "step-1", "step-2"]
    state = await handle.query(Query.STATE)
    assert state["cadence_delay_seconds"] < SLACK.total_seconds()  # moved, not late


async def test_a_step_already_due_in_the_new_zone_goes_at_once_and_the_gaps_stay_whole(
    harness: Harness,
) -> None:
    """In Tokyo, step-1 is due on Monday; moved to Los Angeles on Saturday noon (UTC), it was
    due there on Friday evening: it goes at once, late by as much as a pause would make it, so
    the next step keeps the cadence's gap from it."""
    handle, start = await start_on_tokyo_friday(harness, TOKYO)
    moved = start + timedelta(days=1, hours=11)  # Saturday 12:00 UTC
    await harness.env.sleep(moved - await harness.env.get_current_time())
    assert list(harness.rec.went_at) == ["step-0"]
    await move(handle, LA)
    assert await handle.result() == "nurture"
    went = harness.rec.went_at
    # before the fix: Monday 10:00 in Tokyo, two days later
    assert timedelta(0) <= went["step-1"] - moved < SLACK, went["step-1"]
    la_step_1 = due(start, 1, LA)  # Friday, at the start's time in Los Angeles
    assert la_step_1 < moved < due(start, 1, TOKYO)
    late = went["step-1"] - la_step_1
    # step-2 is due on Monday evening in Los Angeles, moved as much as step-1 went late
    la_step_2 = due(start, 2, LA)
    assert timedelta(0) <= went["step-2"] - (la_step_2 + late) < SLACK, went["step-2"]
    state = await handle.query(Query.STATE)
    assert abs(state["cadence_delay_seconds"] - late.total_seconds()) < SLACK.total_seconds()


async def test_a_change_that_keeps_the_zone_re_plans_nothing(harness: Harness) -> None:
    """A new phone number in the same zone: the step keeps its timer (no command added)."""
    handle, start = await start_on_tokyo_friday(harness, LA)
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(
        Sig.CONTACT_CHANGED, ContactChanged("ada@example.com", "+13105550111", LA, LA)
    )
    assert await handle.result() == "nurture"
    assert timedelta(0) <= harness.rec.went_at["step-1"] - due(start, 1, LA) < SLACK
    await assert_no_re_plan(handle)


async def test_a_zone_change_during_the_wait_for_a_reply_keeps_the_nurture_time(
    harness: Harness,
) -> None:
    """After the last step went, moving the prospect does not move when the journey gives up
    waiting for a reply: a day after the last step went, whatever the zone says of its due."""
    handle, start = await start_on_tokyo_friday(harness, LA, last=1)
    la_last = due(start, 1, LA)  # Friday evening in Los Angeles
    await harness.env.sleep(la_last + timedelta(hours=1) - await harness.env.get_current_time())
    assert list(harness.rec.went_at) == ["step-0", "step-1"]
    await move(handle, TOKYO)  # in Tokyo, step-1 would have been due on Monday
    assert await handle.result() == "nurture"
    nurtured = datetime.fromisoformat(harness.rec.stages[-1].at)
    gave = nurtured - harness.rec.went_at["step-1"]
    assert timedelta(days=1) <= gave < timedelta(days=1) + SLACK, gave
    await assert_no_re_plan(handle)


async def assert_no_re_plan(handle: WorkflowHandle[Any, Any]) -> None:
    history = await handle.fetch_history()
    cancelled = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED]
    assert not cancelled
    markers = [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert not [m for m in markers if Patch.ZONE_CHANGE_REPLANS_STEP.value.encode() in m]
