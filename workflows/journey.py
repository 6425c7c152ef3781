"""ProspectJourney: one durable workflow per prospect, from first touch to referrals.

Deterministic: time comes from workflow.now(), every side effect is an activity on the owning
service's task queue (called by name, so no service code is imported here), and config arrives
in the input (recorded in history). Signals only record facts; the run loop acts on them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        CadenceSnapshot,
        CadenceStep,
        CloseRepTasks,
        Contact,
        DealClosed,
        DealNote,
        DealStatus,
        DecisionDeadline,
        JourneyInput,
        JourneyState,
        MeetingBrief,
        MeetingBriefRequest,
        MeetingChanged,
        MeetingScheduled,
        ObjectionLogged,
        OpenDealRequest,
        OpenObjections,
        PauseColleagues,
        PauseJourney,
        QualificationRecorded,
        QualificationTimeout,
        ReferralAsk,
        ReferralAskRequest,
        ReferralAskStatus,
        ReferrerThanks,
        RepAssigned,
        ReplyReceived,
        RepManager,
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
# manager notice and the cadence's timeout outcome, both noted in the deal's history
PATCH_QUALIFICATION_ESCALATION = "qualification-escalation"
# meeting brief, reminders at several offsets, reschedule/cancel/held/no-show, decision deadline
PATCH_MEETING_LIFECYCLE = "meeting-lifecycle"
TIMEOUT_OUTCOMES = (Stage.DISQUALIFIED, Stage.NURTURE)


@dataclass
class _MeetingEvent:
    """A meeting change as the run loop sees it: the signal's name says what happened."""

    kind: str  # rescheduled | cancelled | held | no_show
    change: MeetingChanged


DealEvent = MeetingScheduled | ObjectionLogged | DealClosed | _MeetingEvent | DecisionDeadline
PATCH_REFERRAL_REMINDERS = "referral-reminders"
PATCH_REFERRER_THANKS = "referrer-thanks"
# a moved, cancelled, held or missed meeting closes its now useless preparation task
PATCH_MEETING_TASK_CLEANUP = "meeting-task-cleanup"
# a recorded verdict closes the qualify task and its reminder
PATCH_QUALIFY_TASK_CLEANUP = "qualify-task-cleanup"


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
        self._deal_events: list[DealEvent] = []
        self._timed_out: tuple[str, str] | None = None  # (outcome, cause) of the timeout
        self._meeting_revisions: dict[str, int] = {}
        self._meeting_reminders: dict[str, asyncio.Task[None]] = {}
        self._meetings_over: set[str] = set()  # cancelled, held or missed
        self._deadline: str | None = None
        self._deadline_watch: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._pause: PauseJourney | None = None
        self._stop: StopCadence | None = None
        self._migration: CadenceSnapshot | None = None
        self._rep: RepAssigned | None = None
        self._referrer_thanks: dict[str, bool] = {}  # event -> done

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

    @workflow.signal(name=Sig.MEETING_RESCHEDULED)
    def meeting_rescheduled(self, change: MeetingChanged) -> None:
        self._deal_events.append(_MeetingEvent("rescheduled", change))

    @workflow.signal(name=Sig.MEETING_CANCELLED)
    def meeting_cancelled(self, change: MeetingChanged) -> None:
        self._deal_events.append(_MeetingEvent("cancelled", change))

    @workflow.signal(name=Sig.MEETING_HELD)
    def meeting_held(self, change: MeetingChanged) -> None:
        self._deal_events.append(_MeetingEvent("held", change))

    @workflow.signal(name=Sig.MEETING_NO_SHOW)
    def meeting_no_show(self, change: MeetingChanged) -> None:
        self._deal_events.append(_MeetingEvent("no_show", change))

    @workflow.signal(name=Sig.DECISION_DEADLINE)
    def decision_deadline(self, deadline: DecisionDeadline) -> None:
        self._deal_events.append(deadline)

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

    @workflow.signal(name=Sig.REP_ASSIGNED)
    def rep_assigned(self, rep: RepAssigned) -> None:
        # Only state changes: no command, so histories from before this signal replay as they
        # were. A signal that comes before the run starts is applied when it does.
        self._rep = rep
        if hasattr(self, "_inp"):
            self._apply_rep()

    def _apply_rep(self) -> None:
        if self._rep is not None:
            rep = self._rep
            self._inp.contact = dataclasses.replace(
                self._inp.contact,
                rep_id=rep.rep_id,
                rep_name=rep.rep_name,
                rep_email=rep.rep_email,
                rep_phone=rep.rep_phone,
            )

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
            rep_id=self._inp.contact.rep_id,
        )

    # --- the journey ------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: JourneyInput) -> str:
        self._inp = inp
        self._apply_rep()
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
        if verdict is not None and workflow.patched(PATCH_QUALIFY_TASK_CLEANUP):
            # "qualify" and "qualification_reminder": done once a verdict is recorded
            wid = workflow.info().workflow_id
            await self._call(
                Act.CLOSE_REP_TASKS,
                CloseRepTasks(f"{wid}:qualif", "the qualification was recorded"),
                self._inp.queues.outreach,
            )
        if verdict is None and self._timed_out is not None:
            outcome, cause = self._timed_out
            await self._enter(outcome, cause)
            return outcome
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
        self._background.append(asyncio.ensure_future(self._thank_referrer("won")))
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
        escalating = workflow.patched(PATCH_QUALIFICATION_ESCALATION)
        if escalating:
            await self._escalate_qualification(status.deal_id, reminder_after)
        if await self._qualification_within(cadence.qualification_timeout_seconds - reminder_after):
            return self._qualification
        if escalating:
            outcome = cadence.qualification_timeout_outcome
            if outcome not in TIMEOUT_OUTCOMES:
                outcome = Stage.DISQUALIFIED
            cause = (
                f"qualification timeout: no verdict after {cadence.qualification_timeout_seconds} s"
            )
            expired: DealStatus = await self._call(
                Act.TIME_OUT_QUALIFICATION,
                QualificationTimeout(status.deal_id, outcome, cause),
                inp.queues.deals,
                DealStatus,
            )
            if expired.stage == outcome and self._qualification is None:
                self._timed_out = (outcome, cause)
                return None
        else:
            expired = await self._call(
                Act.EXPIRE_QUALIFICATION, status.deal_id, inp.queues.deals, DealStatus
            )
            if expired.stage == Stage.DISQUALIFIED and self._qualification is None:
                return None
        # The deals API recorded a verdict just before the deadline: its signal is on the way.
        await workflow.wait_condition(lambda: self._qualification is not None)
        return self._qualification

    async def _escalate_qualification(self, deal_id: str, waited: int) -> None:
        """At the reminder point: note the reminder in the deal's history and tell the rep's
        manager (when one is set) with who, why and which deal."""
        inp = self._inp
        journey = workflow.info().workflow_id
        await self._note(
            f"{journey}:qualification-reminder",
            deal_id,
            f"qualification reminder sent to the rep: no verdict after {waited} s",
        )
        if inp.contact.rep_id is None:
            return
        try:
            manager: RepManager = await self._call(
                Act.GET_REP_MANAGER, inp.contact.rep_id, inp.queues.prospecting, RepManager
            )
        except ActivityError:
            return  # the rep is gone: nobody to escalate to, the timeout still applies
        if manager.manager_id is None:
            return
        rep = inp.contact.rep_name or inp.contact.rep_id
        timeout = self._cadence.qualification_timeout_seconds
        await self._task(
            "escalation",
            f"Escalation: {self._name()} is still not qualified",
            f"{rep} has not qualified {self._name()}"
            + (f" ({inp.contact.company})" if inp.contact.company else "")
            + f" on deal {deal_id}: no verdict after {waited} s. Without one within "
            f"{timeout} s of qualifying starting, the deal goes to "
            f"{self._cadence.qualification_timeout_outcome}.",
            rep_id=manager.manager_id,
            context={"deal_id": deal_id, "rep_id": inp.contact.rep_id, "rep_name": rep},
        )
        await self._note(
            f"{journey}:qualification-escalation",
            deal_id,
            f"escalated to manager {manager.manager_name or manager.manager_id}: "
            f"no verdict after {waited} s",
        )

    async def _note(self, key: str, deal_id: str, cause: str) -> None:
        note = DealNote(key, deal_id, cause, workflow.now().isoformat())
        try:
            await self._call(Act.NOTE_DEAL, note, self._inp.queues.deals)
        except ActivityError as err:
            # the history line is informative: a deal erased meanwhile must not end the journey
            workflow.logger.warning("could not note %r on deal %s: %s", cause, deal_id, err)

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
                self._stop_deal_timers()
                return event
            if isinstance(event, MeetingScheduled):
                await self._on_meeting(event)
            elif isinstance(event, _MeetingEvent):
                await self._on_meeting_change(event)
            elif isinstance(event, DecisionDeadline):
                self._on_deadline(event)
            else:
                await self._on_objection(event)

    async def _on_meeting(self, meeting: MeetingScheduled) -> None:
        if workflow.patched(PATCH_MEETING_LIFECYCLE):
            change = MeetingChanged(
                meeting.meeting_id,
                meeting.deal_id,
                meeting.starts_at,
                meeting.title,
                meeting.revision,
            )
            await self._plan_meeting(change)
            # H2's hook, as on the older path below
            self._background.append(asyncio.ensure_future(self._thank_referrer("meeting")))
            return
        starts = datetime.fromisoformat(meeting.starts_at)
        await self._task(
            f"prepare_meeting:{meeting.meeting_id}",
            f"Prepare the meeting with {self._name()}",
            f"Meeting '{meeting.title}' at {meeting.starts_at}. Frame the pitch around the "
            f"problem they described when qualifying (deal {meeting.deal_id}).",
            due=starts - MEETING_PREP_LEAD,
        )
        self._background.append(asyncio.ensure_future(self._thank_referrer("meeting")))
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

    async def _plan_meeting(self, meeting: MeetingChanged) -> None:
        """The rep's preparation task with the brief, and the prospect's reminders."""
        inp = self._inp
        starts = datetime.fromisoformat(meeting.starts_at)
        self._meeting_revisions[meeting.meeting_id] = meeting.revision
        try:
            brief: MeetingBrief = await self._call(
                Act.MEETING_BRIEF,
                MeetingBriefRequest(meeting.deal_id, meeting.meeting_id, inp.contact),
                inp.queues.deals,
                MeetingBrief,
            )
        except ActivityError:
            brief = MeetingBrief("(the brief could not be built: see the deal)")
        moved = f":r{meeting.revision}" if meeting.revision else ""
        prepare_key = f"prepare_meeting:{meeting.meeting_id}{moved}"
        await self._task(
            prepare_key,
            f"Prepare the meeting with {self._name()}",
            f"Meeting '{meeting.title}' at {meeting.starts_at} (deal {meeting.deal_id}). Frame "
            f"the pitch around the problem they described when qualifying.\n\n{brief.body}",
            due=starts - MEETING_PREP_LEAD,
            context={
                **brief.context,
                "deal_id": meeting.deal_id,
                "meeting_id": meeting.meeting_id,
                "meeting_starts_at": meeting.starts_at,
            },
        )
        if meeting.revision and workflow.patched(PATCH_MEETING_TASK_CLEANUP):
            await self._close_prepare_tasks(
                meeting.meeting_id, f"the meeting moved to {meeting.starts_at}", keep=prepare_key
            )
        self._stop_reminders(meeting.meeting_id)
        reminders = asyncio.ensure_future(self._send_meeting_reminders(meeting, starts))
        self._meeting_reminders[meeting.meeting_id] = reminders
        self._background.append(reminders)

    async def _send_meeting_reminders(self, meeting: MeetingChanged, starts: datetime) -> None:
        """One reminder per configured offset, email + SMS (consent, send window and caps are
        outreach's). A reminder whose successor (or the meeting) is already due is skipped, so a
        meeting booked for the next hour gets one reminder, not all of them at once. Keys carry
        the revision: after a reschedule the ledger does not take the new ones for repeats."""
        offsets = self._cadence.meeting_reminder_offsets()
        variables = {"meeting_starts_at": meeting.starts_at, "meeting_title": meeting.title}
        for i, offset in enumerate(offsets):
            remind_at = starts - timedelta(seconds=offset)
            if i + 1 < len(offsets):
                superseded_at = starts - timedelta(seconds=offsets[i + 1])
            else:
                superseded_at = starts
            if workflow.now() >= superseded_at:
                continue
            delay = (remind_at - workflow.now()).total_seconds()
            if delay > 0:
                await workflow.sleep(delay)
            await self._system_touch(
                f"meeting-{meeting.meeting_id}-r{meeting.revision}-{offset}",
                "meeting_reminder",
                variables,
                not_after=superseded_at,
            )

    async def _close_prepare_tasks(
        self, meeting_id: str, reason: str, keep: str | None = None
    ) -> None:
        wid = workflow.info().workflow_id
        await self._call(
            Act.CLOSE_REP_TASKS,
            CloseRepTasks(
                f"{wid}:prepare_meeting:{meeting_id}", reason, f"{wid}:{keep}" if keep else None
            ),
            self._inp.queues.outreach,
        )

    def _stop_reminders(self, meeting_id: str) -> None:
        task = self._meeting_reminders.pop(meeting_id, None)
        if task is not None and not task.done():
            task.cancel()

    def _stop_deal_timers(self) -> None:
        """A decided deal needs no more reminders or last-chance task (empty on journeys that
        predate PATCH_MEETING_LIFECYCLE, so their command sequence is unchanged)."""
        for meeting_id in list(self._meeting_reminders):
            self._stop_reminders(meeting_id)
        if self._deadline_watch is not None and not self._deadline_watch.done():
            self._deadline_watch.cancel()

    async def _on_meeting_change(self, event: _MeetingEvent) -> None:
        if not workflow.patched(PATCH_MEETING_LIFECYCLE):
            return  # a history from before these signals were handled: they were dropped
        change = event.change
        known = self._meeting_revisions.get(change.meeting_id)
        if change.meeting_id in self._meetings_over:
            return  # a repeated signal (a client retry) or a late one
        if event.kind == "rescheduled":
            if known is not None and change.revision <= known:
                return
            await self._plan_meeting(change)
            return
        self._meetings_over.add(change.meeting_id)
        self._stop_reminders(change.meeting_id)
        if workflow.patched(PATCH_MEETING_TASK_CLEANUP):
            await self._close_prepare_tasks(
                change.meeting_id, f"the meeting was {event.kind.replace('_', '-')}"
            )
        if event.kind != "no_show":
            return
        await self._task(
            f"no_show:{change.meeting_id}",
            f"Follow up: {self._name()} missed the meeting",
            f"{self._name()} did not come to '{change.title}' at {change.starts_at} (deal "
            f"{change.deal_id}). A message offering a new time went out to them; call to "
            "re-book.",
            context={"deal_id": change.deal_id, "meeting_id": change.meeting_id},
        )
        # in the background: a message waiting for its send window holds nothing up
        rebook = self._system_touch(
            f"rebook-{change.meeting_id}-r{change.revision}",
            "meeting_rebook",
            {"meeting_starts_at": change.starts_at, "meeting_title": change.title},
        )
        self._background.append(asyncio.ensure_future(rebook))

    def _on_deadline(self, deadline: DecisionDeadline) -> None:
        if not workflow.patched(PATCH_MEETING_LIFECYCLE):
            return  # a history from before this signal was handled: it was dropped
        if deadline.deadline == self._deadline:
            return  # the same deadline again: the timer keeps running
        self._deadline = deadline.deadline
        if self._deadline_watch is not None and not self._deadline_watch.done():
            self._deadline_watch.cancel()
        self._deadline_watch = None
        if deadline.deadline is not None:
            self._deadline_watch = asyncio.ensure_future(self._last_chance(deadline))
            self._background.append(self._deadline_watch)

    async def _last_chance(self, deadline: DecisionDeadline) -> None:
        """When the decision deadline passes undecided: a task with the open objections."""
        assert deadline.deadline is not None
        due = datetime.fromisoformat(deadline.deadline)
        delay = (due - workflow.now()).total_seconds()
        if delay > 0:
            await workflow.sleep(delay)
        inp = self._inp
        try:
            found: OpenObjections = await self._call(
                Act.OPEN_OBJECTIONS, deadline.deal_id, inp.queues.deals, OpenObjections
            )
        except ActivityError:
            return  # the deal is gone (erased): nothing to decide
        if found.decided:
            return
        lines = [
            f'- {o.category}: "{o.text}"'
            + (f" -> try: {o.best_response}" if o.best_response else "")
            for o in found.objections
        ] or ["- none: ask for the decision"]
        await self._task(
            f"last_chance:{deadline.deal_id}:{due.strftime('%Y%m%dT%H%M%S')}",
            f"Last chance: {self._name()} has not decided",
            f"The decision deadline {deadline.deadline} passed without a decision on deal "
            f"{deadline.deal_id} ({found.stage}). Open objections:\n" + "\n".join(lines),
            context={
                "deal_id": deadline.deal_id,
                "deadline": deadline.deadline,
                "open_objections": str(len(found.objections)),
            },
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
        if workflow.patched(PATCH_REFERRAL_REMINDERS):
            await self._remind_about_referrals(ask)
        # a thanks to this client's own referrer that waits for their send window must not be
        # cut off by the end of the journey (no command: replays are unaffected)
        await workflow.wait_condition(lambda: all(self._referrer_thanks.values()))

    async def _remind_about_referrals(self, ask: ReferralAsk) -> None:
        """Up to `referral_reminders` reminders (email + SMS, the same personal link), each
        `referral_reminder_interval_seconds` after the previous message, until the client has
        referred someone (through the form or the API: the referrals service knows)."""
        cadence = self._cadence
        for number in range(1, cadence.referral_reminders + 1):
            await workflow.sleep(cadence.referral_reminder_interval_seconds)
            status: ReferralAskStatus = await self._call(
                Act.REFERRAL_ASK_STATUS, ask.ask_id, self._inp.queues.referrals, ReferralAskStatus
            )
            if status.referrals > 0:
                return
            await self._system_touch(
                f"referral-reminder-{number}", "referral_reminder", {"referral_link": ask.link}
            )

    async def _thank_referrer(self, event: str) -> None:
        """Thank the client who referred this prospect, once per event ("meeting": the first
        meeting booked, "won"), by email and SMS (send_touch honours their consent), and note
        it on the referral. A journey without a referrer does nothing. Runs in the background:
        waiting for the referrer's send window holds nothing up."""
        referrer = self._inp.referrer
        if referrer is None or event in self._referrer_thanks:
            return
        if not workflow.patched(PATCH_REFERRER_THANKS):
            return
        self._referrer_thanks[event] = False
        queues = self._inp.queues
        try:
            contact: Contact = await self._call(
                Act.GET_CONTACT, referrer.prospect_id, queues.prospecting, Contact
            )
            request = TouchRequest(
                journey_id=workflow.info().workflow_id,
                touch_key=f"referrer-thanks-{event}",
                kind=f"referrer_thanks_{event}",
                contact=contact,
                cadence_id=self._cadence.cadence_id,
                channels=["email", "sms"],
                send_window=self._cadence.send_window,
            )
            result: TouchResult = await self._call(
                Act.SEND_TOUCH, request, queues.outreach, TouchResult
            )
            while result.defer_until is not None:  # outside the referrer's send window
                when = datetime.fromisoformat(result.defer_until)
                await workflow.sleep(max((when - workflow.now()).total_seconds(), 1.0))
                result = await self._call(Act.SEND_TOUCH, request, queues.outreach, TouchResult)
            thanks = ReferrerThanks(referrer.referral_id, event, workflow.now().isoformat())
            await self._call(Act.RECORD_REFERRER_THANKS, thanks, queues.referrals)
        except ActivityError as err:
            # e.g. the referrer was erased: the thanks is a courtesy, the journey goes on
            workflow.logger.warning("could not thank referrer %s: %s", referrer.prospect_id, err)
        finally:
            self._referrer_thanks[event] = True

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
        rep_id: str | None = None,
    ) -> None:
        """A task for the prospect's rep (or `rep_id`, e.g. their manager)."""
        inp = self._inp
        request = RepTaskRequest(
            key=f"{workflow.info().workflow_id}:{key}",
            rep_id=rep_id or inp.contact.rep_id,
            fixed_rep=rep_id is not None,
            prospect_id=inp.contact.prospect_id,
            journey_id=workflow.info().workflow_id,
            kind=key.split(":", 1)[0],
            title=title,
            body=body,
            context={"stage": self._stage or "", **(context or {})},
            due_at=(due or workflow.now()).isoformat(),
        )
        await self._call(Act.CREATE_REP_TASK, request, inp.queues.outreach)
