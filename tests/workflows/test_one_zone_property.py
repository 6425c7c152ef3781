"""The cadence simulator and the real journey send at the same moments (issue 10, point 7).

Hypothesis draws random cadences (channels, business days, offsets, send windows, holidays),
prospects (an explicit zone, a phone number the zone is inferred from, both, neither) and start
times; the virtual clock of the time-skipping server runs across years of them, so clock changes
(DST) fall inside many cadences. Each example runs the real ProspectJourney workflow; the only
stand-ins are the activities at the services' boundary: the outreach send activity, which applies
outreach's own send-window rule (`next_allowed`, `window_for`, `substitute_channel`) at the
server's time and records what went out when, and the stage recorder. The contact is made by
outreach's own `contact_from_json`, as at enrollment, so the zone the journey counts business
days in is the one `shared.timezones.prospect_zone` resolves. The simulator
(`services.outreach.cadences.simulation.timeline`) must name the same send time for every
channel of every touch.

The examples are drawn first (derandomized: the same ones on every run), then run one workflow
each on one worker set: a failure names the example that broke.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import strategies as st
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.outreach.activities import substitute_channel
from services.outreach.cadences.send_window import next_allowed, window_for
from services.outreach.cadences.simulation import timeline
from services.outreach.prospects import contact_from_json
from shared.contracts.journey import (
    CadenceSnapshot,
    CadenceStep,
    ChannelOutcome,
    Contact,
    JourneyInput,
    SendWindow,
    StageChange,
    TouchRequest,
    TouchResult,
    journey_id,
)
from shared.contracts.names import Act
from shared.contracts.queues import TaskQueues
from shared.timezones import prospect_zone
from tests.support.fixtures import binary
from tests.support.fuzz import JOURNEY_EXAMPLES, drawn
from workflows.journey import ProspectJourney

EXAMPLES = JOURNEY_EXAMPLES  # 100 in `make test`, more in `make fuzz` (tests/support/fuzz.py)
# Every journey starts after it, at a random minute of four years (half a minute past it, so
# that no due time sits on a window's edge and the server's milliseconds cannot tip it over).
BASE = datetime(2030, 1, 7, 0, 0, 30, tzinfo=UTC)
HOUR, DAY = 3600, 86400
TOLERANCE = timedelta(seconds=5)
TASK_CHANNELS = ("call_task", "social_task")
# (explicit zone, phone): explicit zones with and without DST (north, south, half-hour shifts),
# zones inferred from one-zone numbers, a number spanning many zones, and no zone at all
PROSPECTS: list[tuple[str, str | None]] = [
    ("America/New_York", "+14155550100"),
    ("Europe/Berlin", None),
    ("Australia/Sydney", "+4930123456"),
    ("Australia/Lord_Howe", None),
    ("America/St_Johns", None),
    ("Asia/Kolkata", "+919812345678"),
    ("Pacific/Auckland", None),
    ("America/Sao_Paulo", None),
    ("UTC", "+61291234567"),
    ("", "+61291234567"),  # Sydney, from the number: the Saturday against Monday
    ("", "+4930123456"),  # Berlin
    ("", "+14155550100"),  # Los Angeles
    ("", "+18005550100"),  # US toll-free: every US zone at once, UTC's calendar
    ("Mars/Olympus", "+33612345678"),  # an invalid zone: the phone's (Paris)
    ("", None),  # nothing known: the conservative window
]


@dataclass
class Example:
    prospect: int
    start_minute: int  # minutes after BASE the journey starts
    before_dst: int | None  # else: days before the prospect's next clock change it starts
    steps: list[tuple[str, int, int]]  # (channel, business days, offset in minutes)
    days: list[int]
    hours: tuple[int, int]
    holiday_days: list[int]  # days after the start whose local date is a holiday


windows = st.tuples(st.integers(0, 23), st.integers(1, 24)).map(
    lambda h: (min(h), max(h)) if h[0] != h[1] else (h[0], h[0] + 1)
)
examples = st.builds(
    Example,
    prospect=st.integers(0, len(PROSPECTS) - 1),
    start_minute=st.integers(0, 4 * 365 * 24 * 60),
    before_dst=st.one_of(st.none(), st.integers(0, 9)),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["email", "sms", "email", "sms", "call_task"]),
            st.integers(0, 6),
            st.integers(0, 3 * 24 * 4).map(lambda q: q * 15),
        ),
        min_size=1,
        max_size=5,
    ),
    days=st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True),
    hours=windows,
    holiday_days=st.lists(st.integers(0, 20), max_size=4),
)


@dataclass
class Outreach:
    """The stand-ins at the services' boundary: sends decided by outreach's window rule at the
    test server's time, with a ledger (a repeat of a sent channel is `already_sent`)."""

    sent: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    starts: dict[str, datetime] = field(default_factory=dict)

    def activities(self) -> tuple[list[Any], list[Any]]:
        @activity.defn(name=Act.SEND_TOUCH)
        async def send_touch(req: TouchRequest) -> TouchResult:
            now = activity.info().current_attempt_scheduled_time
            window = window_for(req.kind, req.send_window)
            outcomes, defer = [], None
            for step in req.steps:
                channel = substitute_channel(step.channel, req.contact)
                key = (req.journey_id, req.touch_key, channel)
                if key in self.sent:
                    outcomes.append(ChannelOutcome(channel, "already_sent"))
                    continue
                if channel in TASK_CHANNELS:
                    self.sent[key] = now
                    outcomes.append(ChannelOutcome(channel, "task_created"))
                    continue
                c = req.contact
                allowed = next_allowed(now, c.timezone, channel, window, c.phone)
                if allowed <= now:
                    self.sent[key] = now
                    outcomes.append(ChannelOutcome(channel, "sent"))
                else:
                    outcomes.append(ChannelOutcome(channel, "deferred", allowed.isoformat()))
                    defer = min(defer or allowed, allowed)
            return TouchResult(outcomes, defer.isoformat() if defer else None)

        @activity.defn(name=Act.RECORD_STAGE)
        async def record_stage(change: StageChange) -> None:
            if change.to_stage == "contacting":
                self.starts[change.key.rsplit(":", 1)[0]] = datetime.fromisoformat(change.at)

        @activity.defn(dynamic=True)
        async def bookkeeping(args: Sequence[RawValue]) -> None:
            """Every other activity of the journey (a run's end, tasks following the stage, ...):
            this test compares send times, the rest only has to succeed. Registered on each
            queue, so an activity the journey gains later cannot leave a journey retrying."""

        return [send_touch, bookkeeping], [record_stage, bookkeeping]


def cadence_of(example: Example, holidays: list[str]) -> CadenceSnapshot:
    phone = PROSPECTS[example.prospect][1]
    steps = [
        # without a phone a text would become a social task; the simulator is told no phone
        CadenceStep("email" if channel == "sms" and not phone else channel, minutes * 60, "Hi")
        for channel, _, minutes in example.steps
    ]
    for step, (_, days, _) in zip(steps, example.steps, strict=True):
        step.business_days = days
    return CadenceSnapshot(
        "c-prop",
        1,
        "Property",
        steps,
        send_window=SendWindow(example.days, *example.hours, holidays),
        nurture_after_seconds=HOUR,
    )


def next_clock_change(zone: str, after: datetime) -> datetime | None:
    """The first hour after `after` whose UTC offset differs in `zone` (None within a year)."""
    tz = prospect_zone(zone).tz
    offset = after.astimezone(tz).utcoffset()
    for day in range(1, 367):  # the day it changes, then its hour
        if (after + timedelta(days=day)).astimezone(tz).utcoffset() != offset:
            probe = after + timedelta(days=day - 1)
            while probe.astimezone(tz).utcoffset() == offset:
                probe += timedelta(hours=1)
            return probe
    return None


def start_of(example: Example, zone: str) -> datetime:
    start = BASE + timedelta(minutes=example.start_minute)
    change = next_clock_change(zone, start) if example.before_dst is not None else None
    if change is not None and example.before_dst is not None:
        start = change - timedelta(days=example.before_dst, minutes=example.start_minute % 1440)
    return max(start, BASE)


def crosses_dst(zone: str, start: datetime, end: datetime) -> bool:
    tz = prospect_zone(zone).tz
    return start.astimezone(tz).utcoffset() != end.astimezone(tz).utcoffset()


@dataclass
class Run:
    number: int
    example: Example
    contact: Contact
    cadence: CadenceSnapshot
    handle: WorkflowHandle[Any, Any]
    begins: datetime


async def start_all(env: WorkflowEnvironment, queues: TaskQueues) -> list[Run]:
    """Every example's journey, started at once, each delayed to its own start time."""
    now = await env.get_current_time()
    assert now < BASE, "the test server's clock is past the examples' start times"
    gate = asyncio.Semaphore(16)

    async def start(number: int, example: Example) -> Run:
        explicit, phone = PROSPECTS[example.prospect]
        contact = contact_from_json(
            {"id": f"prop-{number}", "first_name": "Ada", "email": "ada@example.com"}
            | {"timezone": explicit, "phone": phone}
        )
        begins = start_of(example, contact.zone)
        local_day = begins.astimezone(prospect_zone(contact.zone).tz)
        holidays = sorted(
            {(local_day + timedelta(days=d)).date().isoformat() for d in example.holiday_days}
        )
        snapshot = cadence_of(example, holidays)
        async with gate:
            handle = await env.client.start_workflow(
                ProspectJourney.run,
                JourneyInput(contact, snapshot, queues),
                id=journey_id(contact.prospect_id),
                task_queue=queues.journeys,
                start_delay=begins - now,
            )
        return Run(number, example, contact, snapshot, handle, begins)

    return list(
        await asyncio.gather(
            *(start(n, e) for n, e in enumerate(drawn(examples, EXAMPLES, derandomize=True)))
        )
    )


@pytest.fixture
async def own_clock() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own: its clock starts at the wall clock's, before
    BASE, whatever the suite's shared server went through (the examples' dates are fixed)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    yield env
    await env.shutdown()


async def test_the_simulator_and_the_journey_send_at_the_same_moments(
    own_clock: WorkflowEnvironment, queue_prefix: str
) -> None:
    env, queues = own_clock, TaskQueues.with_prefix(queue_prefix)
    outreach = Outreach()
    sends, stages = outreach.activities()
    workers = [
        # the real workflow code, without the sandbox's per-run module imports (determinism is
        # covered by the replay tests; here the sandbox would only cost time)
        Worker(
            env.client,
            task_queue=queues.journeys,
            workflows=[ProspectJourney],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
        Worker(env.client, task_queue=queues.outreach, activities=sends),
        Worker(env.client, task_queue=queues.prospecting, activities=stages),
    ]
    for worker in workers:
        await worker.__aenter__()
    began = time.monotonic()
    compared = crossing = 0
    worst = timedelta(0)
    try:
        runs = await start_all(env, queues)
        # the last to start first: waiting for it lets the server skip through all the others
        for run in sorted(runs, key=lambda r: r.begins, reverse=True):
            assert await run.handle.result() == "nurture"
        for run in runs:
            explicit, phone = PROSPECTS[run.example.prospect]
            jid, pid = run.handle.id, run.contact.prospect_id
            started = outreach.starts[jid]
            planned = timeline(run.cadence, started, explicit, phone, pid)
            for touch in planned["touches"]:
                for send in touch["sends"]:
                    channel = substitute_channel(send["channel"], run.contact)
                    got = outreach.sent.get((jid, f"step-{touch['touch']}", channel))
                    want = datetime.fromisoformat(send["send_at_utc"])
                    context = (run.number, run.example, run.cadence.send_window, touch, got)
                    assert got is not None, context
                    # the same moment: the server's clock moves on by milliseconds per task
                    assert abs(got - want) < TOLERANCE, context
                    worst = max(worst, abs(got - want))
                    compared += 1
            end = datetime.fromisoformat(planned["touches"][-1]["sends"][-1]["send_at_utc"])
            crossing += crosses_dst(planned["timezone"], started, end)
    finally:
        for worker in workers:
            await worker.__aexit__(None, None, None)
    print(
        f"\n{EXAMPLES} journeys, {compared} sends compared (worst gap {worst}), {crossing} "
        f"across a clock change, in {time.monotonic() - began:.1f} s"
    )
    assert crossing >= EXAMPLES // 10  # the examples do cross clock changes
