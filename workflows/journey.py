"""ProspectJourney: one durable workflow per prospect, from first touch to referrals.

Deterministic: time comes from workflow.now(), every side effect is an activity on the owning
service's task queue (called by name, so no service code is imported here), and config arrives
in the input (recorded in history). Signals only record facts; the run loop acts on them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        CadenceStep,
        Contact,
        DealClosed,
        DealStatus,
        JourneyInput,
        JourneyState,
        MeetingScheduled,
        ObjectionLogged,
        OpenDealRequest,
        QualificationRecorded,
        ReferralAsk,
        ReferralAskRequest,
        ReplyReceived,
        RepTaskRequest,
        Stage,
        StageChange,
        TouchRequest,
        TouchResult,
    )
    from shared.contracts.names import Act, Query, Sig

ACTIVITY_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["NotFound", "InvalidInput"],
)
MEETING_PREP_LEAD = timedelta(hours=2)


def touch_groups(steps: list[CadenceStep]) -> list[list[CadenceStep]]:
    """Steps due at the same offset go out together as one touch (the first is dual-channel)."""
    groups: dict[int, list[CadenceStep]] = {}
    for step in steps:
        groups.setdefault(step.offset_seconds, []).append(step)
    return [groups[offset] for offset in sorted(groups)]


@workflow.defn(name="ProspectJourney")
class ProspectJourney:
    def __init__(self) -> None:
        self._stage: str | None = None
        self._changes = 0
        self._next_step = 0
        self._deal_id: str | None = None
        self._finished = False
        self._reply: ReplyReceived | None = None
        self._qualification: QualificationRecorded | None = None
        self._deal_events: list[MeetingScheduled | ObjectionLogged | DealClosed] = []
        self._background: list[asyncio.Task[None]] = []

    # --- signals and queries: record facts only ---------------------------------------------

    @workflow.signal(name=Sig.REPLY_RECEIVED)
    def reply_received(self, reply: ReplyReceived) -> None:
        if self._reply is None:
            self._reply = reply

    @workflow.signal(name=Sig.QUALIFICATION_RECORDED)
    def qualification_recorded(self, verdict: QualificationRecorded) -> None:
        self._qualification = verdict

    @workflow.signal(name=Sig.MEETING_SCHEDULED)
    def meeting_scheduled(self, meeting: MeetingScheduled) -> None:
        self._deal_events.append(meeting)

    @workflow.signal(name=Sig.OBJECTION_LOGGED)
    def objection_logged(self, objection: ObjectionLogged) -> None:
        self._deal_events.append(objection)

    @workflow.signal(name=Sig.DEAL_CLOSED)
    def deal_closed(self, closed: DealClosed) -> None:
        self._deal_events.append(closed)

    @workflow.query(name=Query.STATE)
    def state(self) -> JourneyState:
        return JourneyState(self._stage or "", self._next_step, self._deal_id, self._finished)

    # --- the journey ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: JourneyInput) -> str:
        self._inp = inp
        self._stage = Stage.PROSPECTING  # where prospecting puts every new prospect
        try:
            outcome = await self._journey()
        finally:
            for task in self._background:
                task.cancel()
        self._finished = True
        return outcome

    async def _journey(self) -> str:
        inp = self._inp
        if inp.start_stage == Stage.QUALIFYING and inp.referrer is not None:
            cause = f"referred by {inp.referrer.name}"
            await asyncio.gather(
                self._enter(Stage.QUALIFYING, cause),
                self._touch("warm-intro", "warm_intro", {"referrer_name": inp.referrer.name}),
            )
        else:
            reply = await self._make_contact()
            if reply is None:
                await self._enter(Stage.NURTURE, "no response after the last cadence step")
                return Stage.NURTURE
            await self._enter(Stage.QUALIFYING, f"replied by {reply.channel}")

        verdict = await self._qualify()
        if verdict is None or not verdict.qualified:
            reasons = "; ".join(verdict.reasons) if verdict else "qualification timeout"
            await self._enter(Stage.DISQUALIFIED, f"not qualified: {reasons}")
            return Stage.DISQUALIFIED
        await self._enter(Stage.PRESENTING, "qualified")

        closed = await self._present_until_closed()
        if not closed.won:
            await self._enter(Stage.LOST, f"closed lost: {closed.reason}")
            return Stage.LOST
        await self._enter(Stage.WON, f"closed won: {closed.reason}")
        await self._ask_for_referrals()
        return Stage.WON

    # --- stage 2: making contact -------------------------------------------------------------

    async def _make_contact(self) -> ReplyReceived | None:
        cadence = self._inp.cadence
        started = workflow.now()
        groups = touch_groups(cadence.steps)
        entered = asyncio.ensure_future(
            self._enter(Stage.CONTACTING, f"enrolled in cadence {cadence.name} v{cadence.version}")
        )
        for index, steps in enumerate(groups):
            self._next_step = index
            due = started + timedelta(seconds=steps[0].offset_seconds)
            if await self._reply_before(due):
                break
            await self._send_cadence_touch(index, steps)
            if self._reply is not None:
                break
        else:
            self._next_step = len(groups)
            last_due = (
                started + timedelta(seconds=groups[-1][0].offset_seconds) if groups else started
            )
            await self._reply_before(last_due + timedelta(seconds=cadence.nurture_after_seconds))
        await entered
        return self._reply

    async def _send_cadence_touch(self, index: int, steps: list[CadenceStep]) -> None:
        key = f"step-{index}"
        while True:
            result = await self._touch(key, "cadence", {}, steps=steps)
            # A channel outside its send window waits for the next opening; the ledger makes
            # the repeat skip whatever already went out.
            if result.defer_until is None or self._reply is not None:
                return
            if await self._reply_before(datetime.fromisoformat(result.defer_until)):
                return

    async def _reply_before(self, when: datetime) -> bool:
        """Sleep until `when` unless a reply arrives first; True when it did."""
        delay = (when - workflow.now()).total_seconds()
        if self._reply is not None:
            return True
        if delay <= 0:
            return False
        try:
            await workflow.wait_condition(lambda: self._reply is not None, timeout=delay)
        except TimeoutError:
            return False
        return True

    # --- stage 3: qualifying ------------------------------------------------------------------

    async def _qualify(self) -> QualificationRecorded | None:
        inp = self._inp
        status: DealStatus = await self._call(
            Act.OPEN_DEAL,
            OpenDealRequest(
                inp.contact.prospect_id,
                workflow.info().workflow_id,
                inp.contact.rep_id,
                inp.contact.source,
                f"entered qualifying ({self._stage})",
            ),
            inp.queues.deals,
            DealStatus,
        )
        self._deal_id = status.deal_id
        why = (
            f"{inp.referrer.name} referred them"
            if inp.referrer
            else f"they replied by {self._reply.channel}: {self._reply.excerpt}"
            if self._reply
            else "they entered qualifying"
        )
        await self._task(
            "qualify",
            f"Qualify {self._name()}",
            f"Why now: {why}. Ask about budget, authority, need and timeline, then record the "
            f"answers on deal {status.deal_id}.",
        )
        cadence = inp.cadence
        reminder_after = min(
            cadence.qualification_reminder_seconds, cadence.qualification_timeout_seconds
        )
        if await self._qualification_within(reminder_after):
            return self._qualification
        await self._task(
            "qualification_reminder",
            f"Reminder: qualify {self._name()} before the deadline",
            f"Deal {status.deal_id} is still waiting for its qualification.",
        )
        if await self._qualification_within(cadence.qualification_timeout_seconds - reminder_after):
            return self._qualification
        expired: DealStatus = await self._call(
            Act.EXPIRE_QUALIFICATION, status.deal_id, inp.queues.deals, DealStatus
        )
        if expired.stage == Stage.DISQUALIFIED and self._qualification is None:
            return None
        # The deals API recorded a verdict just before the deadline: its signal is on the way.
        await workflow.wait_condition(lambda: self._qualification is not None)
        return self._qualification

    async def _qualification_within(self, seconds: float) -> bool:
        if self._qualification is not None:
            return True
        if seconds <= 0:
            return False
        try:
            await workflow.wait_condition(lambda: self._qualification is not None, timeout=seconds)
        except TimeoutError:
            return False
        return True

    # --- stages 4 to 6: presenting, objections, closing --------------------------------------

    async def _present_until_closed(self) -> DealClosed:
        while True:
            await workflow.wait_condition(lambda: bool(self._deal_events))
            event = self._deal_events.pop(0)
            if isinstance(event, DealClosed):
                return event
            if isinstance(event, MeetingScheduled):
                await self._on_meeting(event)
            else:
                await self._on_objection(event)

    async def _on_meeting(self, meeting: MeetingScheduled) -> None:
        starts = datetime.fromisoformat(meeting.starts_at)
        await self._task(
            f"prepare_meeting:{meeting.meeting_id}",
            f"Prepare the meeting with {self._name()}",
            f"Meeting '{meeting.title}' at {meeting.starts_at}. Frame the pitch around the "
            f"problem they described when qualifying (deal {meeting.deal_id}).",
            due=starts - MEETING_PREP_LEAD,
        )
        self._background.append(asyncio.ensure_future(self._remind_meeting(meeting, starts)))

    async def _remind_meeting(self, meeting: MeetingScheduled, starts: datetime) -> None:
        remind_at = starts - timedelta(seconds=self._inp.cadence.meeting_reminder_seconds)
        delay = (remind_at - workflow.now()).total_seconds()
        if delay > 0:
            await workflow.sleep(delay)
        await self._touch(
            f"meeting-{meeting.meeting_id}",
            "meeting_reminder",
            {"meeting_starts_at": meeting.starts_at, "meeting_title": meeting.title},
        )

    async def _on_objection(self, objection: ObjectionLogged) -> None:
        if self._stage == Stage.PRESENTING:
            await self._enter(Stage.OBJECTIONS, f"objection: {objection.category}")
        answers = "\n".join(f"- {a}" for a in objection.answers) or "- (no prepared answer yet)"
        await self._task(
            f"objection:{objection.objection_id}",
            f"Answer {self._name()}'s {objection.category} objection",
            f'They said: "{objection.text}"\nPrepared answers:\n{answers}',
            context={"category": objection.category, "deal_id": objection.deal_id},
        )

    # --- stage 7: referrals -------------------------------------------------------------------

    async def _ask_for_referrals(self) -> None:
        inp = self._inp
        await self._task(
            "thank_client",
            f"Thank {self._name()} and mention referrals",
            "They just became a client. The automatic referral request goes out after "
            f"{inp.cadence.referral_delay_seconds} seconds.",
        )
        await workflow.sleep(inp.cadence.referral_delay_seconds)
        ask: ReferralAsk = await self._call(
            Act.CREATE_REFERRAL_ASK,
            ReferralAskRequest(
                inp.contact.prospect_id,
                workflow.info().workflow_id,
                self._name(),
                inp.contact.rep_id,
                inp.cadence.cadence_id,
            ),
            inp.queues.referrals,
            ReferralAsk,
        )
        await self._touch("referral-ask", "referral_ask", {"referral_link": ask.link})
        await self._enter(Stage.REFERRALS, "referral request sent")

    # --- activity plumbing ----------------------------------------------------------------------

    def _name(self) -> str:
        c: Contact = self._inp.contact
        return f"{c.first_name} {c.last_name}".strip()

    async def _call(self, name: str, arg: Any, queue: str, result_type: type | None = None) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            task_queue=queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            result_type=result_type,
        )

    async def _enter(self, stage: str, cause: str) -> None:
        previous, self._stage = self._stage, stage
        self._changes += 1
        change = StageChange(
            key=f"{workflow.info().workflow_id}:{self._changes}",
            prospect_id=self._inp.contact.prospect_id,
            from_stage=previous,
            to_stage=stage,
            cause=cause,
            at=workflow.now().isoformat(),
        )
        await self._call(Act.RECORD_STAGE, change, self._inp.queues.prospecting)

    async def _touch(
        self,
        key: str,
        kind: str,
        variables: dict[str, str],
        steps: list[CadenceStep] | None = None,
    ) -> TouchResult:
        inp = self._inp
        channels = [] if steps else ["email", "sms"]
        request = TouchRequest(
            journey_id=workflow.info().workflow_id,
            touch_key=key,
            kind=kind,
            contact=inp.contact,
            cadence_id=inp.cadence.cadence_id,
            steps=steps or [],
            channels=channels,
            variables=variables,
            send_window=inp.cadence.send_window,
        )
        result: TouchResult = await self._call(
            Act.SEND_TOUCH, request, inp.queues.outreach, TouchResult
        )
        return result

    async def _task(
        self,
        key: str,
        title: str,
        body: str,
        *,
        due: datetime | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        inp = self._inp
        request = RepTaskRequest(
            key=f"{workflow.info().workflow_id}:{key}",
            rep_id=inp.contact.rep_id,
            prospect_id=inp.contact.prospect_id,
            journey_id=workflow.info().workflow_id,
            kind=key.split(":", 1)[0],
            title=title,
            body=body,
            context={"stage": self._stage or "", **(context or {})},
            due_at=(due or workflow.now()).isoformat(),
        )
        await self._call(Act.CREATE_REP_TASK, request, inp.queues.outreach)
