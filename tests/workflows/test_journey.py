"""The journey's logic over days of virtual time (time-skipping test server).

The services' activities are replaced by recording doubles registered under the same names:
this tests the workflow's decisions; the real activities are covered by integration tests.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
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
    DealClosed,
    DealNote,
    DealRef,
    DealStatus,
    JourneyInput,
    JourneyState,
    LinkReferral,
    MeetingBrief,
    MeetingBriefRequest,
    MeetingScheduled,
    ObjectionLogged,
    OpenDealRequest,
    OpenObjections,
    PauseColleagues,
    ProspectRef,
    QualificationRecorded,
    QualificationTimeout,
    ReferralAsk,
    ReferralAskRef,
    ReferralAskRequest,
    ReferralAskStatus,
    ReferralIntakeInput,
    ReferredPerson,
    ReferrerThanks,
    RepAssigned,
    ReplyReceived,
    RepManager,
    RepRef,
    RepTaskRequest,
    RunEnded,
    StageChange,
    StageEntered,
    TouchRequest,
    TouchResult,
    journey_id,
)
from shared.contracts.names import Act, Query, Sig
from shared.contracts.plan import touch_groups
from shared.contracts.queues import TaskQueues
from workflows.journey import ProspectJourney
from workflows.referral_intake import ReferralIntake

DAY = 86400


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
    defer_first_sms_until: str | None = None
    defer_once: dict[str, str] = field(default_factory=dict)  # touch kind -> defer_until
    hold_once: dict[str, str] = field(default_factory=dict)  # kind -> every channel waits until
    # decide each channel by outreach's own send-window rule at the server's time
    apply_windows: bool = False
    sent_at: dict[str, str] = field(default_factory=dict)  # "touch key:channel" -> when it went
    refuse_kinds: set[str] = field(default_factory=set)  # every channel opted out for these
    closed_tasks: list[CloseRepTasks] = field(default_factory=list)
    entered: list[StageEntered] = field(default_factory=list)  # follow_stage calls
    paused_colleagues: list[PauseColleagues] = field(default_factory=list)
    # the deal's stage after a qualification timeout; None: the outcome asked for (a verdict
    # recorded just before the deadline leaves it elsewhere)
    timeout_stage: str | None = None
    # a cadence touch key (e.g. "step-1") whose template cannot render: its send fails for good
    template_error_touch: str | None = None
    run_ends: list[RunEnded] = field(default_factory=list)

    def stage_path(self) -> list[str]:
        return [c.to_stage for c in self.stages]

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
            self.stages.append(change)

        @activity.defn(name=Act.SEND_TOUCH)
        async def send_touch(req: TouchRequest) -> TouchResult:
            self.touches.append(req)
            channels = [s.channel for s in req.steps] or req.channels
            if self.apply_windows:
                return self._by_window(req, channels)
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
            return ReferralAskStatus(ref.ask_id, 0)

        @activity.defn(name=Act.RECORD_REFERRER_THANKS)
        async def record_referrer_thanks(thanks: ReferrerThanks) -> None:
            return None

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
            self.run_ends.append(end)

        @activity.defn(name=Act.LINK_REFERRAL)
        async def link_referral(req: LinkReferral) -> None:
            self.linked.append(req)

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
        self.rec = Recorder()
        self.workers: list[Worker] = []

    async def __aenter__(self) -> Harness:
        client = self.env.client
        self.workers = [
            Worker(
                client,
                task_queue=self.queues.journeys,
                workflows=[ProspectJourney, ReferralIntake],
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


def test_touch_groups_put_same_offset_steps_together() -> None:
    groups = touch_groups(cadence().steps)
    assert [[s.channel for s in g] for g in groups] == [["email", "sms"], ["email"], ["call_task"]]


async def test_no_reply_runs_every_step_then_nurture(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        assert await handle.result() == "nurture"
        assert [t.touch_key for t in h.rec.touches] == ["step-0", "step-1", "step-2"]
        assert [s.channel for s in h.rec.touches[0].steps] == ["email", "sms"]
        assert h.rec.stage_path() == ["contacting", "nurture"]
        # the nurture decision came nurture_after_seconds after the last step (4 + 3 days)
        first, last = h.rec.stages[0].at, h.rec.stages[-1].at
        from datetime import datetime

        elapsed = datetime.fromisoformat(last) - datetime.fromisoformat(first)
        assert timedelta(days=7) <= elapsed < timedelta(days=7, hours=1)


async def test_a_new_rep_signs_the_messages_from_then_on(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        await temporal_skipping.sleep(timedelta(days=1))
        await handle.signal(
            Sig.REP_ASSIGNED, RepAssigned("r2", "Nia New", "nia@example.com", "+14155550111")
        )
        assert await handle.result() == "nurture"
        reps = [(t.touch_key, t.contact.rep_id, t.contact.rep_name) for t in h.rec.touches]
        assert reps[0] == ("step-0", "r1", "")
        assert reps[1:] == [("step-1", "r2", "Nia New"), ("step-2", "r2", "Nia New")]


async def test_a_signal_sent_with_the_start_is_taken_before_the_run_begins(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    # signal-with-start delivers the signal (and a query may come) before the run method starts:
    # the journey's state must exist by then
    async with Harness(temporal_skipping, queue_prefix) as h:
        v2 = cadence(
            version=2, steps=[CadenceStep("email", 0, "Hi", "v2 hello")], nurture_after_seconds=60
        )
        handle = await h.start(start_signal=(Sig.MIGRATE_CADENCE, v2))
        state = await handle.query(Query.STATE)
        assert state["cadence_version"] == 2
        assert await handle.result() == "nurture"
        assert [t.steps[0].subject for t in h.rec.touches] == ["v2 hello"]


async def test_reply_stops_touches_and_opens_a_deal(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        await temporal_skipping.sleep(timedelta(days=1))
        await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "Tell me more"))
        await temporal_skipping.sleep(timedelta(days=10))
        state = await handle.query(Query.STATE)
        assert [t.touch_key for t in h.rec.touches] == ["step-0"]
        assert h.rec.stage_path()[:2] == ["contacting", "qualifying"]
        assert h.rec.deals and h.rec.deals[0].prospect_id == h.rec.stages[0].prospect_id
        kinds = [t.kind for t in h.rec.tasks]
        assert kinds[:2] == ["qualify", "qualification_reminder"]
        assert "Tell me more" in h.rec.tasks[0].body
        # 10 days without a verdict: past the 5-day timeout, so the deal was expired
        assert h.rec.expired == ["deal-1"]
        assert h.rec.stage_path()[-1] == "disqualified"
        assert state["finished"] if isinstance(state, dict) else state.finished


async def test_deferred_channel_is_retried_at_the_window(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        h.rec.defer_first_sms_until = "2000-01-01T00:00:00+00:00"  # in the past: retry at once
        handle = await h.start(cadence=cadence(nurture_after_seconds=60))
        await handle.result()
        assert [t.touch_key for t in h.rec.touches][:2] == ["step-0", "step-0"]


async def test_full_path_to_referrals(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
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
        assert h.rec.stage_path() == [
            "contacting",
            "qualifying",
            "presenting",
            "objections",
            "closing",  # a deal decided from objections passes through closing (issue 10)
            "won",
            "referrals",
        ]
        # every stage after the first told outreach, so tasks follow the journey
        assert [e.stage for e in h.rec.entered] == h.rec.stage_path()[1:]
        kinds = [t.kind for t in h.rec.tasks]
        assert {"qualify", "prepare_meeting", "objection", "thank_client"} <= set(kinds)
        objection_task = next(t for t in h.rec.tasks if t.kind == "objection")
        assert "Show ROI" in objection_task.body
        assert h.rec.asks and h.rec.asks[0].client_prospect_id == h.rec.stages[0].prospect_id
        ask_touch = next(t for t in h.rec.touches if t.kind == "referral_ask")
        assert ask_touch.variables["referral_link"] == "http://referrals.test/r/tok"
        # the ask waited for the referral delay after the win
        from datetime import datetime

        won_at = datetime.fromisoformat(h.rec.stages[-2].at)
        asked_at = datetime.fromisoformat(h.rec.stages[-1].at)
        assert asked_at - won_at >= timedelta(days=7)


async def test_not_qualified_ends_disqualified(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("email", "m1", "hi"))
        await handle.signal(
            Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", False, ["budget: none"])
        )
        assert await handle.result() == "disqualified"
        assert "budget: none" in h.rec.stages[-1].cause
        assert h.rec.expired == []
        # the rep's qualify task (and a reminder, had there been one) is closed by the verdict
        assert [c.key_prefix for c in h.rec.closed_tasks] == [f"{handle.id}:qualif"]


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
        assert "Ada Lovelace" in h.rec.stages[0].cause
        intro = next(t for t in h.rec.touches if t.kind == "warm_intro")
        assert intro.variables == {"referrer_name": "Ada Lovelace"}


async def test_pause_holds_touches_until_resume(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    from datetime import datetime

    from shared.contracts.journey import PauseJourney

    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        await temporal_skipping.sleep(timedelta(hours=1))
        await handle.signal(Sig.PAUSE, PauseJourney("rep on vacation"))
        await temporal_skipping.sleep(timedelta(days=5))  # step-1 (day 2) fell due while paused
        assert [t.touch_key for t in h.rec.touches] == ["step-0"]
        state = await handle.query(Query.STATE)
        assert state["paused"] is True
        await handle.signal(Sig.RESUME)
        await temporal_skipping.sleep(timedelta(minutes=1))
        assert [t.touch_key for t in h.rec.touches][:2] == ["step-0", "step-1"]
        assert await handle.result() == "nurture"
        # step-2 was due on day 4 (during the pause): it went out right after the resume too
        first = datetime.fromisoformat(h.rec.stages[0].at)
        assert datetime.fromisoformat(h.rec.stages[-1].at) - first >= timedelta(days=5)


async def test_pause_until_a_date_resumes_by_itself(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    from shared.contracts.journey import PauseJourney

    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        await temporal_skipping.sleep(timedelta(hours=1))
        # the test server's clock runs ahead of the wall clock; use its notion of now
        now = await temporal_skipping.get_current_time()
        back = (now + timedelta(days=3)).isoformat()
        await handle.signal(Sig.PAUSE, PauseJourney("out of office", until=back))
        await temporal_skipping.sleep(timedelta(days=2, hours=12))
        assert [t.touch_key for t in h.rec.touches] == ["step-0"]
        await temporal_skipping.sleep(timedelta(days=1))
        assert [t.touch_key for t in h.rec.touches][:2] == ["step-0", "step-1"]
        # a journey left running would fire timers with no worker and stall time skipping
        await handle.terminate()


async def test_stop_ends_the_cadence_in_nurture(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    from shared.contracts.journey import StopCadence

    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        await temporal_skipping.sleep(timedelta(hours=1))
        await handle.signal(Sig.STOP_CADENCE, StopCadence("hard bounce"))
        assert await handle.result() == "nurture"
        assert [t.touch_key for t in h.rec.touches] == ["step-0"]
        assert h.rec.stages[-1].cause == "cadence stopped: hard bounce"


async def test_migration_applies_the_new_version_from_the_next_touch(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        handle = await h.start()
        await temporal_skipping.sleep(timedelta(hours=1))
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
        assert [t.touch_key for t in h.rec.touches] == ["step-0", "step-1"]
        assert h.rec.touches[1].steps[0].subject == "v2 follow-up"


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


async def test_a_deferred_referral_ask_is_sent_when_it_may_be(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    async with Harness(temporal_skipping, queue_prefix) as h:
        now = await temporal_skipping.get_current_time()
        h.rec.defer_once["referral_ask"] = (now + timedelta(days=20)).isoformat()
        handle = await h.start()
        await handle.signal(Sig.REPLY_RECEIVED, ReplyReceived("sms", "SM1", "yes"))
        await handle.signal(Sig.QUALIFICATION_RECORDED, QualificationRecorded("deal-1", True, []))
        await handle.signal(Sig.DEAL_CLOSED, DealClosed("deal-1", True, "signed"))
        assert await handle.result() == "won"
        asks = [t for t in h.rec.touches if t.kind == "referral_ask"]
        assert len(asks) == 2  # deferred once (quiet hours), then sent at the window


async def test_a_touch_whose_template_cannot_render_fails_once_and_the_cadence_goes_on(
    temporal_skipping: WorkflowEnvironment, queue_prefix: str
) -> None:
    """Issue 10: a TemplateError is not retried; the step is marked failed, the rep gets a task
    to fix the template, and the next touches still go out."""
    async with Harness(temporal_skipping, queue_prefix) as h:
        h.rec.template_error_touch = "step-1"
        handle = await h.start()
        assert await handle.result() == "nurture"
        assert [t.touch_key for t in h.rec.touches] == ["step-0", "step-1", "step-2"]
        [fix] = [t for t in h.rec.tasks if t.kind == "template"]
        assert fix.title.startswith("Fix template of step 1: step-1 sms body")
        assert fix.key.endswith(":template:step-1")
        state = await handle.query(Query.STATE, result_type=JourneyState)
        assert [(f.step, f.reason) for f in state.failed_steps] == [
            (1, "step-1 sms body: 'str object' has no attribute 'x'")
        ]
