"""A late touch keeps the cadence's gaps (issue 13): after a pause, an outage or a provider that
answered slowly, the touches after it and the wait for a reply after the last one are delayed as
much, instead of the overdue touches going out at once. A send window is the cadence's plan, not
lateness: it moves nothing (the simulator's timeline, tests/workflows/test_one_zone_property.py).

The default cadence of tests/support/journey_harness.py: step-0 (email + SMS) at once, step-1
two days later, step-2 four days after the start, nurture three days after the last step.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.contracts.journey import PauseJourney
from shared.contracts.names import Query, Sig
from tests.support.journey_harness import Harness

TWO_DAYS, THREE_DAYS = timedelta(days=2), timedelta(days=3)
# what a send the doubles answer at once may add to a gap (workflow tasks, activity dispatch)
SLACK = timedelta(seconds=30)


def nurtured_at(harness: Harness) -> datetime:
    last = harness.rec.stages[-1]
    assert last.to_stage == "nurture"
    return datetime.fromisoformat(last.at)


async def test_a_touch_the_provider_sent_late_delays_the_rest_by_as_much(
    harness: Harness,
) -> None:
    start = await harness.env.get_current_time()
    # the provider fails step-0's first attempts: retried with backoff, it goes minutes late
    harness.rec.failing_attempts["step-0"] = 8
    handle = await harness.start()
    assert await handle.result() == "nurture"
    rec = harness.rec
    late = rec.went_at["step-0"] - start
    assert late > timedelta(minutes=2), late  # the retries' backoff: 1+2+4+...+60+60 s
    # the gaps stay whole (before the change, step-1 went at start + 2 days: 2 days - late)
    for gap in rec.gaps("step-0", "step-1", "step-2"):
        assert TWO_DAYS <= gap < TWO_DAYS + SLACK, gap
    assert THREE_DAYS <= nurtured_at(harness) - rec.went_at["step-2"] < THREE_DAYS + SLACK


async def test_after_a_pause_the_overdue_touch_goes_and_the_next_keeps_its_gap(
    harness: Harness,
) -> None:
    handle = await harness.start()
    await harness.env.sleep(timedelta(hours=1))
    await handle.signal(Sig.PAUSE, PauseJourney("rep on vacation"))
    await harness.env.sleep(timedelta(days=5))  # step-1 (day 2) and step-2 (day 4) fell due
    assert list(harness.rec.went_at) == ["step-0"]
    await handle.signal(Sig.RESUME)
    await harness.env.sleep(timedelta(minutes=1))
    state = await handle.query(Query.STATE)  # what GET /journeys/{id} shows
    delay = timedelta(seconds=state["cadence_delay_seconds"])
    # step-1 was due on day 2 and went at the resume, on day 5 and an hour: its lateness
    assert timedelta(days=3, hours=1) <= delay < timedelta(days=3, hours=1) + SLACK, delay
    next_due = datetime.fromisoformat(state["next_touch_due"])  # step-2's, moved as much
    assert await handle.result() == "nurture"
    rec = harness.rec
    assert timedelta(0) <= rec.went_at["step-2"] - next_due < SLACK
    resumed = rec.went_at["step-1"]  # the first overdue touch goes at the resume
    assert resumed - rec.went_at["step-0"] >= timedelta(days=5)
    # step-2 is not sent with it: two days after it, as the cadence spaces them
    (gap,) = rec.gaps("step-1", "step-2")
    assert TWO_DAYS <= gap < TWO_DAYS + SLACK, gap
    assert THREE_DAYS <= nurtured_at(harness) - rec.went_at["step-2"] < THREE_DAYS + SLACK


async def test_waiting_for_the_send_window_moves_no_later_touch(harness: Harness) -> None:
    start = await harness.env.get_current_time()
    # step-0's text may only go ten hours later (quiet hours): the email goes at once
    harness.rec.defer_first_sms_until = (start + timedelta(hours=10)).isoformat()
    handle = await harness.start()
    assert await handle.result() == "nurture"
    rec = harness.rec
    assert rec.went_at["step-0"] - start >= timedelta(hours=10)  # the repeat for the text
    for key, days in (("step-1", 2), ("step-2", 4)):
        offset = rec.went_at[key] - start
        assert timedelta(days=days) <= offset < timedelta(days=days) + SLACK, (key, offset)
