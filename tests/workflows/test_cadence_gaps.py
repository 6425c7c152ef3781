"""A late touch keeps the cadence's gaps (issue 13): after a pause, an outage or a provider that
answered slowly, the touches after it and the wait for a reply after the last one are delayed as
much, instead of the overdue touches going out at once. A send window is the cadence's plan, not
lateness: it moves nothing (the simulator's timeline, tests/workflows/test_one_zone_property.py).

The default cadence of tests/support/journey_harness.py: step-0 (email + SMS) at once, step-1
two days later, step-2 four days after the start, nurture three days after the last step.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import strategies as st
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from shared.contracts.journey import CadenceSnapshot, CadenceStep, PauseJourney
from shared.contracts.names import Query, Sig
from tests.support.fuzz import JOURNEY_EXAMPLES, drawn
from tests.support.journey_harness import Harness, cadence

TWO_DAYS, THREE_DAYS = timedelta(days=2), timedelta(days=3)
# what a send the doubles answer at once may add to a gap (workflow tasks, activity dispatch)
SLACK = timedelta(seconds=30)
EPSILON = timedelta(seconds=1)  # the server's clock readings of one moment, as the doubles see it
GAP_EXAMPLES = max(20, JOURNEY_EXAMPLES // 5)  # 20 in make test, 200 in make fuzz


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
    # step-1 was due on day 2 and went at the resume, on day 5 and an hour: its lateness. The
    # test's sleeps count from its own reading of the clock, which step-0's send (the start of
    # step-1's two days) may follow by a few milliseconds: the lateness may be as much less
    lateness = timedelta(days=3, hours=1)
    assert lateness - EPSILON <= delay < lateness + SLACK, delay
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


async def test_a_window_outreach_s_clock_has_not_reached_is_asked_again_a_second_later(
    harness: Harness,
) -> None:
    """Outreach's clock is 2 s behind the server's: at the window's opening by the server's clock
    it still defers the touch until that opening, a moment already past for the journey. Each
    new try waits a second instead of following at once until the clocks agree."""
    harness.rec.lagging_window = (timedelta(hours=1), timedelta(seconds=2))
    handle = await harness.start()
    await harness.env.sleep(timedelta(hours=2))
    tries = [t for t in harness.rec.touches if t.touch_key == "step-0"]
    # at enrolment, at the opening, then a second apart until outreach's clock reaches it
    assert 3 <= len(tries) <= 5, len(tries)
    opens = harness.rec.first_tried["step-0"] + timedelta(hours=1)
    assert harness.rec.went_at["step-0"] - opens >= timedelta(seconds=2)
    await handle.terminate()


# --- the rule as a property: random cadences, retried sends and pauses -----------------------


@dataclass
class Case:
    gaps_hours: list[int]  # between consecutive touches (the first goes at enrolment)
    nurture_hours: int
    failing: list[int]  # per touch: attempts of its send that fail first (retried, late)
    pause: tuple[int, int] | None  # (minutes after the start, minutes long)


cases = st.integers(1, 4).flatmap(
    lambda n: st.builds(
        Case,
        gaps_hours=st.lists(st.integers(1, 72), min_size=n - 1, max_size=n - 1),
        nurture_hours=st.integers(1, 72),
        failing=st.lists(st.integers(0, 7), min_size=n, max_size=n),
        pause=st.one_of(
            st.none(), st.tuples(st.integers(0, 6 * 24 * 60), st.integers(1, 5 * 24 * 60))
        ),
    )
)


def cadence_of(case: Case) -> CadenceSnapshot:
    offsets = list(itertools.accumulate(case.gaps_hours, initial=0))
    steps = [CadenceStep("email", hours * 3600, f"Touch {i}") for i, hours in enumerate(offsets)]
    return cadence(steps=steps, nurture_after_seconds=case.nurture_hours * 3600)


async def test_no_gap_is_ever_shorter_than_the_cadence_says(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    """Whatever makes touches late (a provider failing up to 7 attempts, a pause of up to five
    days at any moment), the next touch is first tried the cadence's gap after the previous one
    went, or at the resume when it fell due while paused, never sooner and not later; the
    nurture decision keeps its wait after the last touch the same way."""
    for n, case in enumerate(drawn(cases, GAP_EXAMPLES)):
        async with Harness(temporal_skipping, f"{queue_prefix}g{n}-") as h:
            for i, attempts in enumerate(case.failing):
                h.rec.failing_attempts[f"step-{i}"] = attempts
            start = await temporal_skipping.get_current_time()
            handle = await h.start(cadence=cadence_of(case))
            held: tuple[datetime, datetime] | None = None
            if case.pause is not None:
                after, minutes = case.pause
                await temporal_skipping.sleep(timedelta(minutes=after))
                paused = await temporal_skipping.get_current_time()
                # a pause drawn after the journey ended pauses nothing (a closed workflow)
                with contextlib.suppress(RPCError):
                    await handle.signal(Sig.PAUSE, PauseJourney("property"))
                    await temporal_skipping.sleep(timedelta(minutes=minutes))
                    await handle.signal(Sig.RESUME)
                    held = (paused, await temporal_skipping.get_current_time())
            assert await handle.result() == "nurture", case
            rec = h.rec
            keys = [f"step-{i}" for i in range(len(case.failing))]
            waits = [timedelta(hours=g) for g in case.gaps_hours]
            pairs = [
                (rec.went_at[a], rec.first_tried[b], wait)
                for (a, b), wait in zip(itertools.pairwise(keys), waits, strict=True)
            ]
            pairs.append(
                (rec.went_at[keys[-1]], nurtured_at(h), timedelta(hours=case.nurture_hours))
            )
            for went, next_at, wait in pairs:
                due = went + wait
                assert next_at - due >= -EPSILON, (case, start, went, next_at)
                allowed = due
                if held is not None and held[0] <= due + EPSILON <= held[1] + SLACK:
                    allowed = max(due, held[1])  # a pause held that moment: at the resume
                assert next_at - allowed < SLACK, (case, start, went, next_at, held)
