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
        CadenceSnapshot,
        CadenceStep,
        Contact,
        DealClosed,
        DealStatus,
        JourneyInput,
        JourneyState,
        MeetingScheduled,
        ObjectionLogged,
        OpenDealRequest,
        PauseColleagues,
        PauseJourney,
        QualificationRecorded,
        ReferralAsk,
        ReferralAskRequest,
        ReplyReceived,
        RepTaskRequest,
        Stage,
        StageChange,
        StopCadence,
        TouchRequest,
        TouchResult,
    )
    from shared.contracts.names import Act, Query, Sig
    from shared.contracts.plan import personalise, step_due, touch_groups

ACTIVITY_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["NotFound", "InvalidInput"],
)
MEETING_PREP_LEAD = timedelta(hours=2)
# Guards for changes to the command sequence of journeys already running.
PATCH_SYSTEM_TOUCH_DEFERRAL = "system-touch-deferral"


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
        self._pause: PauseJourney | None = None
        self._stop: StopCadence | None = None
        self._migration: CadenceSnapshot | None = None

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

    @workflow.signal(name=Sig.PAUSE)
    def pause(self, pause: PauseJourney) -> None:
        self._pause = pause

    @workflow.signal(name=Sig.RESUME)
    def resume(self) -> None:
        self._pause = None

    @workflow.signal(name=Sig.STOP_CADENCE)
    def stop_cadence(self, stop: StopCadence) -> None:
        if self._stop is None:
            self._stop = stop

    @workflow.signal(name=Sig.MIGRATE_CADENCE)
    def migrate_cadence(self, cadence: CadenceSnapshot) -> None:
        """Move to another version of the cadence: from the next touch on, its steps apply."""
        if (
            cadence.cadence_id == self._cadence.cadence_id
            and cadence.version > self._cadence.version
        ):
            self._migration = cadence

    @workflow.query(name=Query.STATE)
    def state(self) -> JourneyState:
        return JourneyState(
            stage=self._stage or "",
            next_step=self._next_step,
            deal_id=self._deal_id,
            finished=self._finished,
            cadence_version=(self._migration or self._cadence).version,
            paused=self._pause is not None,
            stopped=self._stop is not None,
            timezone=self._inp.contact.timezone,
        )

    # --- the journey ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: JourneyInput) -> str:
        self._inp = inp
        self._cadence = inp.cadence
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
            # in the background: an introduction waiting for its send window holds nothing up
            intro = self._system_touch(
                "warm-intro", "warm_intro", {"referrer_name": inp.referrer.name}
            )
            self._background.append(asyncio.ensure_future(intro))
            await self._enter(Stage.QUALIFYING, cause)
        else:
            reply = await self._make_contact()
            if self._stop is not None:
                await self._enter(Stage.NURTURE, f"cadence stopped: {self._stop.reason}")
                return Stage.NURTURE
            if reply is None:
                await self._enter(Stage.NURTURE, "no response after the last cadence step")
                return Stage.NURTURE
            if self._cadence.pause_company_on_reply and inp.contact.company:
                await self._call(
                    Act.PAUSE_COLLEAGUES,
                    PauseColleagues(
                        inp.contact.prospect_id,
                        self._cadence.cadence_id,
                        inp.contact.company,
                        f"{self._name()} at {inp.contact.company} replied",
                    ),
                    inp.queues.outreach,
                )
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
        started = workflow.now()
        entered = asyncio.ensure_future(
            self._enter(
                Stage.CONTACTING,
                f"enrolled in cadence {self._cadence.name} v{self._cadence.version}",
            )
        )
        index = 0
        while not self._interrupted():
            groups = touch_groups(self._cadence.steps)  # a migration may have replaced them
            self._next_step = index
            if index >= len(groups):
                last_due = self._due(started, groups[-1][0]) if groups else started
                await self._reply_before(
                    last_due + timedelta(seconds=self._cadence.nurture_after_seconds),
                    wake_on_migration=True,
                )
                if self._migrated_at_index(index):
                    continue  # a new version may have more steps
                break
            steps = groups[index]
            if await self._reply_before(self._due(started, steps[0]), wake_on_migration=True):
                break
            if self._migrated_at_index(index):
                continue  # the new version's step at this index is what goes out
            steps = personalise(self._inp.contact.prospect_id, index, steps)
            await self._send_cadence_touch(index, steps)
            index += 1
        await entered
        return self._reply

    def _due(self, started: datetime, step: CadenceStep) -> datetime:
        holidays = getattr(self._cadence.send_window, "holidays", [])
        return step_due(started, step, self._inp.contact.timezone, holidays)

    def _migrated_at_index(self, index: int) -> bool:
        if self._migration is None:
            return False
        self._cadence, self._migration = self._migration, None
        return True

    def _interrupted(self) -> bool:
        return self._reply is not None or self._stop is not None

    async def _send_cadence_touch(self, index: int, steps: list[CadenceStep]) -> None:
        key = f"step-{index}"
        while True:
            result = await self._touch(key, "cadence", {}, steps=steps)
            # A channel outside its send window waits for the next opening; the ledger makes
            # the repeat skip whatever already went out.
            if result.defer_until is None or self._interrupted():
                return
            if await self._reply_before(datetime.fromisoformat(result.defer_until)):
                return

    async def _reply_before(self, when: datetime, wake_on_migration: bool = False) -> bool:
        """Sleep until `when` unless a reply (or a stop) comes first; True when it did.
        While the journey is paused, a touch that falls due waits for the resume."""
        delay = (when - workflow.now()).total_seconds()
        if self._interrupted():
            return True

        def woken() -> bool:
            return self._interrupted() or (wake_on_migration and self._migration is not None)

        if delay > 0:
            try:
                await workflow.wait_condition(woken, timeout=delay)
            except TimeoutError:
                pass
            else:
                if not self._interrupted():
                    return False  # a new cadence version arrived: the caller re-plans
                return True
        while self._pause is not None and not self._interrupted():
            await self._wait_for_resume(self._pause)
        return self._interrupted()

    async def _wait_for_resume(self, pause: PauseJourney) -> None:
        def resumed() -> bool:
            return self._pause is not pause or self._interrupted()

        if pause.until is None:
            await workflow.wait_condition(resumed)
            return
        remaining = (datetime.fromisoformat(pause.until) - workflow.now()).total_seconds()
        try:
            await workflow.wait_condition(resumed, timeout=max(remaining, 0.001))
        except TimeoutError:
            if self._pause is pause:
                self._pause = None  # the stated return date has come

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
        cadence = self._cadence
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
        remind_at = starts - timedelta(seconds=self._cadence.meeting_reminder_seconds)
        delay = (remind_at - workflow.now()).total_seconds()
        if delay > 0:
            await workflow.sleep(delay)
        await self._system_touch(
            f"meeting-{meeting.meeting_id}",
            "meeting_reminder",
            {"meeting_starts_at": meeting.starts_at, "meeting_title": meeting.title},
            not_after=starts,
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
            f"{self._cadence.referral_delay_seconds} seconds.",
        )
        await workflow.sleep(self._cadence.referral_delay_seconds)
        ask: ReferralAsk = await self._call(
            Act.CREATE_REFERRAL_ASK,
            ReferralAskRequest(
                inp.contact.prospect_id,
                workflow.info().workflow_id,
                self._name(),
                inp.contact.rep_id,
                self._cadence.cadence_id,
            ),
            inp.queues.referrals,
            ReferralAsk,
        )
        await self._system_touch("referral-ask", "referral_ask", {"referral_link": ask.link})
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
            cadence_id=self._cadence.cadence_id,
            steps=steps or [],
            channels=channels,
            variables=variables,
            send_window=self._cadence.send_window,
        )
        result: TouchResult = await self._call(
            Act.SEND_TOUCH, request, inp.queues.outreach, TouchResult
        )
        return result

    async def _system_touch(
        self, key: str, kind: str, variables: dict[str, str], not_after: datetime | None = None
    ) -> None:
        """A touch outside the cadence; a channel told to wait (send window, caps) is sent
        when it may be, unless that is too late (`not_after`, e.g. the meeting's start)."""
        result = await self._touch(key, kind, variables)
        while result.defer_until is not None and workflow.patched(PATCH_SYSTEM_TOUCH_DEFERRAL):
            when = datetime.fromisoformat(result.defer_until)
            if not_after is not None and when >= not_after:
                return
            await workflow.sleep(max((when - workflow.now()).total_seconds(), 1.0))
            result = await self._touch(key, kind, variables)

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
