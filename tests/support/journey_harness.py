"""The journey on the time-skipping server with the services' activities replaced by recording
doubles registered under the same names (`Recorder`), and the `harness` fixture: workers for one
test's task queues, started before the test and stopped after it.

This tests the workflow's decisions; the real activities are covered by integration tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from services.outreach.cadences.send_window import next_allowed, window_for
from shared.contracts.errors import TEMPLATE_ERROR
from shared.contracts.journey import (
    CadenceRef,
    CadenceSnapshot,
    CadenceStep,
    ChannelOutcome,
    CloseRepTasks,
    Contact,
    CreateReferredProspect,
    DealNote,
    DealRef,
    DealReopened,
    DealStatus,
    JourneyInput,
    LinkReferral,
    MeetingBrief,
    MeetingBriefRequest,
    OpenDealRequest,
    OpenObjections,
    PauseColleagues,
    ProspectRef,
    QualificationTimeout,
    ReferralAsk,
    ReferralAskRef,
    ReferralAskRequest,
    ReferralAskStatus,
    ReferralIntakeInput,
    ReferredPerson,
    ReferredRun,
    ReferrerThanks,
    RepManager,
    RepRef,
    RepTaskRequest,
    RunEnded,
    Stage,
    StageChange,
    StageEntered,
    StartReferredRun,
    TouchRequest,
    TouchResult,
    journey_id,
)
from shared.contracts.names import Act, Sig
from shared.contracts.queues import TaskQueues
from tests.support.eventually import eventually
from tests.support.fixtures import binary
from workflows.journey import ProspectJourney
from workflows.referral_intake import ReferralIntake
from workflows.referrer_thanks import ThankReferrerWorkflow

DAY = 86400
LA, TOKYO = "America/Los_Angeles", "Asia/Tokyo"  # a day apart at the weekend, for zone changes


def cadence(**overrides: Any) -> CadenceSnapshot:
    values: dict[str, Any] = {
        "cadence_id": "c1",
        "version": 1,
        "name": "Outbound",
        "steps": [
            CadenceStep("email", 0, "Hi {{ first_name }}", "Hello"),
            CadenceStep("sms", 0, "Hi {{ first_name }}, it's {{ rep_name }}"),
            CadenceStep("email", 2 * DAY, "Following up", "Follow-up"),
            CadenceStep("call_task", 4 * DAY, "Call them"),
        ],
        "nurture_after_seconds": 3 * DAY,
        "qualification_reminder_seconds": 2 * DAY,
        "qualification_timeout_seconds": 5 * DAY,
        "meeting_reminder_seconds": DAY,
        "referral_delay_seconds": 7 * DAY,
    }
    values.update(overrides)
    return CadenceSnapshot(**values)


def business_days_cadence(last: int = 2) -> CadenceSnapshot:
    """step-0 at once, then one step each business day until day `last`; nurture a day
    after the last."""
    steps = [CadenceStep("email", 0, "Hi", "Hello")] + [
        CadenceStep("email", 0, f"Touch {n}", f"Touch {n}", business_days=n)
        for n in range(1, last + 1)
    ]
    return cadence(steps=steps, nurture_after_seconds=86400)


async def sleep_until_local(
    env: WorkflowEnvironment, zone: str, weekday: int, hour: int
) -> datetime:
    """Skip the server's clock to the next `weekday` (0 = Monday) at `hour`:00 in `zone`, so a
    journey started then meets a known calendar (a weekend one business day on); returns it."""
    now = (await env.get_current_time()).astimezone(ZoneInfo(zone))
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    at += timedelta(days=(weekday - at.weekday()) % 7)
    if at <= now + timedelta(minutes=1):
        at += timedelta(days=7)
    await env.sleep(at - now)
    return at.astimezone(UTC)


@dataclass
class Recorder:
    """Doubles of every service activity; they record what the journey asked for."""

    stages: list[StageChange] = field(default_factory=list)
    touches: list[TouchRequest] = field(default_factory=list)
    tasks: list[RepTaskRequest] = field(default_factory=list)
    deals: list[OpenDealRequest] = field(default_factory=list)
    asks: list[ReferralAskRequest] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    timeouts: list[QualificationTimeout] = field(default_factory=list)
    notes: list[DealNote] = field(default_factory=list)
    briefs: list[MeetingBriefRequest] = field(default_factory=list)
    manager_id: str | None = None
    open_objections: OpenObjections | None = None
    objection_checks: list[str] = field(default_factory=list)
    referred: list[CreateReferredProspect] = field(default_factory=list)
    linked: list[LinkReferral] = field(default_factory=list)
    referred_runs: list[StartReferredRun] = field(default_factory=list)
    queues: TaskQueues = field(default_factory=TaskQueues)  # the harness's: runs started there
    defer_first_sms_until: str | None = None
    defer_once: dict[str, str] = field(default_factory=dict)  # touch kind -> defer_until
    # the client's referral link was used (the form sent, the ask closed), nobody referred
    link_used: bool = False
    use_link_at: str | None = None  # a touch kind: the client uses the link as it is sent
    hold_once: dict[str, str] = field(default_factory=dict)  # kind -> every channel waits until
    # decide each channel by outreach's own send-window rule at the server's time
    apply_windows: bool = False
    sent_at: dict[str, str] = field(default_factory=dict)  # "touch key:channel" -> when it went
    refuse_kinds: set[str] = field(default_factory=set)  # every channel opted out for these
    closed_tasks: list[CloseRepTasks] = field(default_factory=list)
    thanked: list[ReferrerThanks] = field(default_factory=list)
    entered: list[StageEntered] = field(default_factory=list)  # follow_stage calls
    paused_colleagues: list[PauseColleagues] = field(default_factory=list)
    # the deal's stage after a qualification timeout; None: the outcome asked for (a verdict
    # recorded just before the deadline leaves it elsewhere)
    timeout_stage: str | None = None
    # a cadence touch key (e.g. "step-1") whose template cannot render: its send fails for good
    template_error_touch: str | None = None
    run_ends: list[RunEnded] = field(default_factory=list)
    # touch key -> attempts of its send that fail first (a provider down: retried, so late)
    failing_attempts: dict[str, int] = field(default_factory=dict)
    went_at: dict[str, datetime] = field(default_factory=dict)  # touch key -> its send's attempt
    first_tried: dict[str, datetime] = field(default_factory=dict)  # touch key -> first attempt
    # (after, lag): a cadence touch's send window opens `after` its first try, by outreach's
    # clock, which is `lag` behind the server's; before that the touch is deferred until then
    lagging_window: tuple[timedelta, timedelta] | None = None
    # attempts of a moved meeting's brief that fail first (deals away when the meeting moves)
    failing_moved_brief_attempts: int = 0
    # meeting id -> attempts of each of its briefs that fail first (deals away)
    failing_brief_attempts: dict[str, int] = field(default_factory=dict)
    # a stage whose record waits for `release_stage` (the run busy recording it, e.g. prospecting
    # slow); `stage_held` is set once that record is in flight
    hold_stage: str | None = None
    stage_held: asyncio.Event = field(default_factory=asyncio.Event)
    release_stage: asyncio.Event = field(default_factory=asyncio.Event)
    # the run's end report waits for `release_run_end` (the run finished, still returning);
    # `run_end_held` is set once it is in flight
    hold_run_end: bool = False
    run_end_held: asyncio.Event = field(default_factory=asyncio.Event)
    release_run_end: asyncio.Event = field(default_factory=asyncio.Event)
    # a rep task kind whose creation waits for `release_task` (outreach slow while the run makes
    # it); `task_held` is set once it is in flight
    hold_task_kind: str | None = None
    task_held: asyncio.Event = field(default_factory=asyncio.Event)
    release_task: asyncio.Event = field(default_factory=asyncio.Event)

    def gaps(self, *keys: str) -> list[timedelta]:
        """The time between the sends of consecutive touches `keys`."""
        times = [self.went_at[k] for k in keys]
        return [b - a for a, b in itertools.pairwise(times)]

    def stage_path(self) -> list[str]:
        return [c.to_stage for c in self.stages]

    async def reopen_while_held(self, handle: WorkflowHandle[Any, Any], stage: str) -> None:
        """Once the held stage's record is in flight, reopen the deal back to `stage`; let the
        held record finish once the journey has recorded `stage` (a late write)."""
        await asyncio.wait_for(self.stage_held.wait(), 60)
        await handle.signal(Sig.DEAL_REOPENED, DealReopened("deal-1", stage))

        async def back() -> bool:
            return stage in self.stage_path()

        await eventually(back, f"the journey back at {stage}")
        self.release_stage.set()

    async def _held(self, release: asyncio.Event) -> None:
        """Wait for `release`, heartbeating as the services' activities do (a silent
        attempt would time out after HEARTBEAT_TIMEOUT and be tried again, on a loaded machine),
        and, as a write already in flight, land even once the journey cancelled it."""
        while not release.is_set():
            activity.heartbeat()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(release.wait()), 1)

    def _by_window(self, req: TouchRequest, channels: list[str]) -> TouchResult:
        now = activity.info().current_attempt_scheduled_time
        window = window_for(req.kind, req.send_window)
        outcomes, defer = [], None
        for channel in channels:
            key = f"{req.touch_key}:{channel}"
            allowed = next_allowed(now, req.contact.timezone, channel, window, req.contact.phone)
            if key in self.sent_at:
                outcomes.append(ChannelOutcome(channel, "already_sent"))
            elif allowed <= now:
                self.sent_at[key] = now.isoformat()
                outcomes.append(ChannelOutcome(channel, "sent"))
            else:
                outcomes.append(ChannelOutcome(channel, "deferred", allowed.isoformat()))
                defer = min(defer or allowed, allowed)
        return TouchResult(outcomes, defer.isoformat() if defer else None)

    def activities(self) -> dict[str, list[Any]]:
        @activity.defn(name=Act.RECORD_STAGE)
        async def record_stage(change: StageChange) -> None:
            if change.to_stage == self.hold_stage:
                self.stage_held.set()
                await self._held(self.release_stage)
            self.stages.append(change)

        @activity.defn(name=Act.SEND_TOUCH)
        async def send_touch(req: TouchRequest) -> TouchResult:
            self.first_tried.setdefault(req.touch_key, activity.info().started_time)
            if self.failing_attempts.get(req.touch_key, 0) >= activity.info().attempt:
                raise ApplicationError(f"provider down (attempt {activity.info().attempt})")
            self.went_at[req.touch_key] = activity.info().started_time
            self.touches.append(req)
            channels = [s.channel for s in req.steps] or req.channels
            if self.apply_windows:
                return self._by_window(req, channels)
            if self.lagging_window is not None and req.kind == "cadence":
                after, lag = self.lagging_window
                opens = self.first_tried[req.touch_key] + after
                if activity.info().started_time - lag < opens:
                    return TouchResult(
                        [ChannelOutcome(c, "deferred", opens.isoformat()) for c in channels],
                        opens.isoformat(),
                    )
            if req.kind in self.refuse_kinds:
                return TouchResult([ChannelOutcome(c, "suppressed", "opted out") for c in channels])
            if req.kind in self.hold_once:
                until = self.hold_once.pop(req.kind)
                return TouchResult([ChannelOutcome(c, "deferred", until) for c in channels], until)
            if req.touch_key == self.template_error_touch:
                raise ApplicationError(
                    f"{req.touch_key} sms body: 'str object' has no attribute 'x'",
                    type=TEMPLATE_ERROR,
                    non_retryable=True,
                )
            if req.kind == self.use_link_at:
                self.link_used = True
            if req.kind in self.defer_once:
                until = self.defer_once.pop(req.kind)
                return TouchResult(
                    [ChannelOutcome("email", "sent"), ChannelOutcome("sms", "deferred", until)],
                    until,
                )
            if self.defer_first_sms_until and len(self.touches) == 1:
                return TouchResult(
                    [ChannelOutcome("email", "sent"), ChannelOutcome("sms", "deferred")],
                    self.defer_first_sms_until,
                )
            return TouchResult([ChannelOutcome(c, "sent") for c in channels])

        @activity.defn(name=Act.CREATE_REP_TASK)
        async def create_rep_task(req: RepTaskRequest) -> str:
            if req.kind == self.hold_task_kind:
                self.task_held.set()
                await self._held(self.release_task)
            self.tasks.append(req)
            return f"task-{len(self.tasks)}"

        @activity.defn(name=Act.CLOSE_REP_TASKS)
        async def close_rep_tasks(req: CloseRepTasks) -> int:
            self.closed_tasks.append(req)
            return 1

        @activity.defn(name=Act.FOLLOW_STAGE)
        async def follow_stage(entered: StageEntered) -> int:
            self.entered.append(entered)
            return 0

        @activity.defn(name=Act.PAUSE_COLLEAGUES)
        async def pause_colleagues(req: PauseColleagues) -> int:
            self.paused_colleagues.append(req)
            return 0

        @activity.defn(name=Act.GET_CADENCE)
        async def get_cadence(ref: CadenceRef) -> CadenceSnapshot:
            return cadence(cadence_id=ref.cadence_id)

        @activity.defn(name=Act.OPEN_DEAL)
        async def open_deal(req: OpenDealRequest) -> DealStatus:
            self.deals.append(req)
            return DealStatus("deal-1", "qualifying")

        @activity.defn(name=Act.EXPIRE_QUALIFICATION)
        async def expire_qualification(ref: DealRef) -> DealStatus:
            self.expired.append(ref.deal_id)
            return DealStatus(ref.deal_id, "disqualified")

        @activity.defn(name=Act.TIME_OUT_QUALIFICATION)
        async def time_out_qualification(req: QualificationTimeout) -> DealStatus:
            self.timeouts.append(req)
            self.expired.append(req.deal_id)
            return DealStatus(req.deal_id, self.timeout_stage or req.outcome)

        @activity.defn(name=Act.NOTE_DEAL)
        async def note_deal(req: DealNote) -> None:
            self.notes.append(req)

        @activity.defn(name=Act.MEETING_BRIEF)
        async def meeting_brief(req: MeetingBriefRequest) -> MeetingBrief:
            moved = any(b.meeting_id == req.meeting_id for b in self.briefs)
            attempt = activity.info().attempt
            failing = self.failing_brief_attempts.get(req.meeting_id, 0)
            if (moved and self.failing_moved_brief_attempts >= attempt) or failing >= attempt:
                raise ApplicationError(f"deals away (attempt {attempt})")
            self.briefs.append(req)
            return MeetingBrief(
                f"BRIEF for {req.meeting_id}", {"fact.company": req.contact.company or "-"}
            )

        @activity.defn(name=Act.OPEN_OBJECTIONS)
        async def open_objections(ref: DealRef) -> OpenObjections:
            self.objection_checks.append(ref.deal_id)
            return self.open_objections or OpenObjections(ref.deal_id, "objections", False, [])

        @activity.defn(name=Act.GET_REP_MANAGER)
        async def get_rep_manager(ref: RepRef) -> RepManager:
            if self.manager_id is None:
                return RepManager(ref.rep_id)
            return RepManager(ref.rep_id, self.manager_id, "Mia Manager", "mia@example.org")

        @activity.defn(name=Act.GET_CONTACT)
        async def get_contact(ref: ProspectRef) -> Contact:
            return Contact(ref.prospect_id, "Referrer", email="referrer@example.com")

        @activity.defn(name=Act.REFERRAL_ASK_STATUS)
        async def referral_ask_status(ref: ReferralAskRef) -> ReferralAskStatus:
            return ReferralAskStatus(ref.ask_id, 0, link_used=self.link_used)

        @activity.defn(name=Act.RECORD_REFERRER_THANKS)
        async def record_referrer_thanks(thanks: ReferrerThanks) -> None:
            self.thanked.append(thanks)

        @activity.defn(name=Act.CREATE_REFERRAL_ASK)
        async def create_referral_ask(req: ReferralAskRequest) -> ReferralAsk:
            self.asks.append(req)
            return ReferralAsk("ask-1", "http://referrals.test/r/tok")

        @activity.defn(name=Act.CREATE_REFERRED_PROSPECT)
        async def create_referred_prospect(req: CreateReferredProspect) -> Contact:
            self.referred.append(req)
            return Contact(
                "p-referred", req.person.first_name, email=req.person.email, rep_id=req.rep_id
            )

        @activity.defn(name=Act.RECORD_RUN_END)
        async def record_run_end(end: RunEnded) -> None:
            if self.hold_run_end:
                self.run_end_held.set()
                await self._held(self.release_run_end)
            self.run_ends.append(end)

        @activity.defn(name=Act.LINK_REFERRAL)
        async def link_referral(req: LinkReferral) -> None:
            self.linked.append(req)

        @activity.defn(name=Act.START_REFERRED_RUN)
        async def start_referred_run(req: StartReferredRun) -> ReferredRun:
            # as outreach does for a new prospect: run 1 at qualifying, introduced
            self.referred_runs.append(req)
            journey = JourneyInput(
                req.contact,
                cadence(cadence_id=req.cadence_id),
                self.queues,
                Stage.QUALIFYING,
                req.referrer,
            )
            with contextlib.suppress(WorkflowAlreadyStartedError):  # a retry: started already
                await activity.client().start_workflow(
                    ProspectJourney.run,
                    journey,
                    id=journey_id(req.contact.prospect_id),
                    task_queue=self.queues.journeys,
                )
            return ReferredRun(1, referred=True)

        return {
            "prospecting": [record_stage, create_referred_prospect, get_rep_manager, get_contact],
            "outreach": [
                send_touch,
                create_rep_task,
                close_rep_tasks,
                follow_stage,
                get_cadence,
                pause_colleagues,
                record_run_end,
                start_referred_run,
            ],
            "deals": [
                open_deal,
                expire_qualification,
                time_out_qualification,
                note_deal,
                meeting_brief,
                open_objections,
            ],
            "referrals": [
                create_referral_ask,
                link_referral,
                referral_ask_status,
                record_referrer_thanks,
            ],
        }


class Harness:
    def __init__(self, env: WorkflowEnvironment, prefix: str) -> None:
        self.env = env
        self.queues = TaskQueues.with_prefix(prefix)
        self.rec = Recorder(queues=self.queues)
        self.workers: list[Worker] = []

    async def __aenter__(self) -> Harness:
        client = self.env.client
        self.workers = [
            Worker(
                client,
                task_queue=self.queues.journeys,
                workflows=[ProspectJourney, ReferralIntake, ThankReferrerWorkflow],
            )
        ]
        for queue, acts in self.rec.activities().items():
            self.workers.append(
                Worker(client, task_queue=getattr(self.queues, queue), activities=acts)
            )
        for w in self.workers:
            await w.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # a held stage record, rep task or run end report (a test that failed before releasing
        # it) would keep its worker's shutdown waiting for ever
        self.rec.release_stage.set()
        self.rec.release_run_end.set()
        self.rec.release_task.set()
        for w in self.workers:
            await w.__aexit__(None, None, None)

    def intake_input(self) -> ReferralIntakeInput:
        """Ada Lovelace (a client, rep r1) refers Grace Hopper."""
        return ReferralIntakeInput(
            referral_id="ref1",
            person=ReferredPerson("Grace", "Hopper", "grace@example.com"),
            referrer_prospect_id="p-client",
            referrer_name="Ada Lovelace",
            rep_id="r1",
            cadence_id="c1",
            queues=self.queues,
        )

    async def start(
        self, *, start_signal: tuple[str, object] | None = None, **overrides: Any
    ) -> WorkflowHandle[Any, Any]:
        """A journey for Ada Lovelace (rep r1); `start_signal`: (name, argument) sent with the
        start, as signal-with-start does."""
        pid = uuid.uuid4().hex
        contact = Contact(pid, "Ada", "Lovelace", "ada@example.com", "+14155550100", rep_id="r1")
        contact = dataclasses.replace(contact, **overrides.pop("contact", {}))
        inp = JourneyInput(contact, overrides.pop("cadence", cadence()), self.queues, **overrides)
        signal: dict[str, Any] = {}
        if start_signal is not None:
            signal = {"start_signal": start_signal[0], "start_signal_args": [start_signal[1]]}
        return await self.env.client.start_workflow(
            ProspectJourney.run, inp, id=journey_id(pid), task_queue=self.queues.journeys, **signal
        )


@pytest.fixture
async def harness(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> AsyncIterator[Harness]:
    async with Harness(temporal_skipping, queue_prefix) as h:
        yield h


@pytest.fixture
async def harness_alone(queue_prefix: str) -> AsyncIterator[Harness]:
    """A harness on a time-skipping server of its own, for a test whose journey starts a
    workflow it abandons (ThankReferrer): such a child keeps its server's time skipping
    locked, and every later test on that server would wait out its timers in real time."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    try:
        async with Harness(env, queue_prefix) as h:
            yield h
    finally:
        await env.shutdown()
