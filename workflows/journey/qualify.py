"""Stage 3, qualifying: a deal, a task for the rep, a reminder, the manager when nobody answers,
and the cadence's outcome when the verdict never comes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        CloseRepTasks,
        DealClosed,
        DealNote,
        DealRef,
        DealStageMoved,
        DealStatus,
        OpenDealRequest,
        QualificationRecorded,
        QualificationTimeout,
        RepManager,
        RepRef,
        Stage,
        system_actor,
    )
    from shared.contracts.names import Act

from workflows.journey import versions
from workflows.journey.meetings import Meetings
from workflows.journey.state import State
from workflows.journey.steps import Steps, call, journey_id
from workflows.journey.versions import Patch

TIMEOUT_OUTCOMES = (Stage.DISQUALIFIED, Stage.NURTURE)
# a deal at one of these has passed the qualification gate (a deal closes from past it only)
PAST_THE_GATE = (Stage.PRESENTING, Stage.OBJECTIONS, Stage.CLOSING, Stage.WON, Stage.LOST)
# how long the journey waits, after the timeout, for the verdict of a deal that has one: its
# signal is on the way (past this, it was lost: the deal's stage is the verdict)
VERDICT_ON_THE_WAY_SECONDS = 3600


@dataclass
class TimedOut:
    """Nobody qualified the deal in time: where the journey goes, and why."""

    outcome: str
    cause: str


class TimeoutRules(Protocol):
    """What happens when the rep has not qualified the deal in time."""

    async def at_reminder(self, deal_id: str, waited: int) -> None: ...

    async def at_timeout(self, deal_id: str) -> TimedOut | None: ...


class Qualifying:
    def __init__(self, state: State, steps: Steps, meetings: Meetings) -> None:
        self.state = state
        self.steps = steps
        self.meetings = meetings
        self._over = False
        self._deal_at_timeout: DealStatus | None = None  # deals' answer at the timeout

    async def until_verdict(self) -> QualificationRecorded | TimedOut:
        # a meeting booked before the verdict (the booking link, answers short of the gate) is
        # planned now: its preparation task and reminders cannot wait for presenting
        meanwhile = self.steps.in_background(self._meetings_meanwhile())
        try:
            verdict = await self._verdict_or_timeout()
        finally:
            self._over = True
        await meanwhile  # what it is planning finishes before presenting takes the events
        if isinstance(verdict, QualificationRecorded) and versions.patched(
            Patch.QUALIFY_TASK_CLEANUP
        ):
            # "qualify" and "qualification_reminder": done once a verdict is recorded
            await call(
                Act.CLOSE_REP_TASKS,
                CloseRepTasks(f"{journey_id()}:qualif", "the qualification was recorded"),
                self.state.inp.queues.outreach,
            )
        return verdict

    async def _verdict_or_timeout(self) -> QualificationRecorded | TimedOut:
        state, steps, cadence = self.state, self.steps, self.state.cadence
        deal_id = await self._open_deal()
        reminder_after = min(
            cadence.qualification_reminder_seconds, cadence.qualification_timeout_seconds
        )
        verdict = await self._verdict_within(reminder_after)
        if verdict is not None:
            return verdict
        await steps.task(
            "qualification_reminder",
            f"Reminder: qualify {state.prospect_name()} before the deadline",
            f"Deal {deal_id} is still waiting for its qualification.",
        )
        rules: TimeoutRules = (
            self
            if versions.patched(Patch.QUALIFICATION_ESCALATION)
            else _BeforeEscalation(self.state)
        )
        await rules.at_reminder(deal_id, reminder_after)
        verdict = await self._verdict_within(cadence.qualification_timeout_seconds - reminder_after)
        if verdict is None:
            verdict = await self._verdict_after_meetings()
        if verdict is not None:
            return verdict
        timed_out = await rules.at_timeout(deal_id)
        if timed_out is not None:
            return timed_out
        # The deals API recorded a verdict before the deadline: its signal is on the way, or was
        # lost (its request answered 503 and was not repeated as asked, or a repeat found the
        # deal moved on). Past a while, the deal's stage is the verdict: never wait for ever.
        told = self._verdict_of_deal_stage()
        if (
            told is not None
            and state.qualification is None
            and versions.patched(Patch.VERDICT_FROM_DEAL_STAGE)
        ):
            return await self._verdict_within(VERDICT_ON_THE_WAY_SECONDS) or told
        await workflow.wait_condition(lambda: self._verdict() is not None)
        verdict = self._verdict()
        assert verdict is not None
        return verdict

    def _verdict(self) -> QualificationRecorded | None:
        """The rep's verdict; else, on journeys that heed it, the one the deal's own news
        implies: a deal moved on or closed has passed the gate, whose signal was lost (its
        request answered 503 and was not repeated). Without it the rep was reminded, and the
        manager told the prospect "has not qualified", about a deal already won."""
        state = self.state
        if state.qualification is not None:
            return state.qualification
        implied = self._verdict_of_deal_events()
        # asked only once such news is heard: journeys recorded before it keep waiting
        if implied is not None and versions.patched(Patch.VERDICT_FROM_DEAL_EVENTS):
            return implied
        return None

    def _verdict_of_deal_events(self) -> QualificationRecorded | None:
        """Qualified, when this deal's move on (presenting, objections, closing: each past
        the gate) or its close (from past the gate only) is heard."""
        for event in self.state.deal_events:
            if not isinstance(event, DealClosed | DealStageMoved):
                continue
            if event.deal_id != self.state.deal_id:
                continue
            if isinstance(event, DealStageMoved) and event.stage not in PAST_THE_GATE:
                continue  # deals moves an open deal on only: nothing it would send
            what = (
                f"closed {'won' if event.won else 'lost'}"
                if isinstance(event, DealClosed)
                else f"moved to {event.stage}"
            )
            reason = f"the deal passed the qualification gate ({what})"
            return QualificationRecorded(
                event.deal_id, True, [reason], event.actor or system_actor("deal stage")
            )
        return None

    def _verdict_of_deal_stage(self) -> QualificationRecorded | None:
        """The verdict deals' answer at the timeout implies: past the gate, qualified; the
        deal disqualified by its rep, not. None when the stage says nothing of it."""
        deal = self._deal_at_timeout
        if deal is None:
            return None
        actor = system_actor("deal stage")
        if deal.stage in PAST_THE_GATE:
            reason = f"the deal passed the qualification gate (at {deal.stage})"
            return QualificationRecorded(deal.deal_id, True, [reason], actor)
        if deal.stage == Stage.DISQUALIFIED:
            return QualificationRecorded(deal.deal_id, False, ["the deal was disqualified"], actor)
        return None

    async def _open_deal(self) -> str:
        state, inp = self.state, self.state.inp
        status = await call(
            Act.OPEN_DEAL,
            OpenDealRequest(
                inp.contact.prospect_id,
                journey_id(),
                inp.contact.rep_id,
                inp.contact.source,
                f"entered qualifying ({state.stage})",
            ),
            inp.queues.deals,
            DealStatus,
        )
        state.deal_id = status.deal_id
        why = (
            f"{inp.referrer.name} referred them"
            if inp.referrer
            else f"they replied by {state.reply.channel}: {state.reply.excerpt}"
            if state.reply
            else inp.start_cause
            if inp.start_cause
            else "they entered qualifying"
        )
        await self.steps.task(
            "qualify",
            f"Qualify {state.prospect_name()}",
            f"Why now: {why}. Ask about budget, authority, need and timeline, then record the "
            f"answers on deal {status.deal_id}.",
        )
        return status.deal_id

    async def _verdict_within(self, seconds: float) -> QualificationRecorded | None:
        if self._verdict() is None and seconds > 0:
            try:
                await workflow.wait_condition(lambda: self._verdict() is not None, timeout=seconds)
            except TimeoutError:
                pass
        return self._verdict()

    async def _meetings_meanwhile(self) -> None:
        """Plan each meeting event that comes while qualifying, until the verdict."""
        state = self.state
        while True:
            await workflow.wait_condition(lambda: self._over or state.meeting_news_waiting())
            if self._over or not versions.patched(Patch.MEETINGS_WHILE_QUALIFYING):
                return  # journeys from before the patch plan them in presenting
            news = state.take_meeting_news()
            if news is not None:
                await self.meetings.handle(news)

    async def _verdict_after_meetings(self) -> QualificationRecorded | None:
        """At the timeout, a meeting not yet over holds it: the rep decides after the meeting
        (until a day after its start; a meeting moved meanwhile moves that too)."""
        while self._verdict() is None:
            until = self.meetings.pending_until()
            if until is None or until <= workflow.now():
                break
            if not versions.patched(Patch.MEETINGS_WHILE_QUALIFYING):
                break
            await self._verdict_within((until - workflow.now()).total_seconds())
        return self._verdict()

    async def at_timeout(self, deal_id: str) -> TimedOut | None:
        """The cadence's timeout outcome for the deal; None when a verdict came first."""
        cadence = self.state.cadence
        outcome = cadence.qualification_timeout_outcome
        if outcome not in TIMEOUT_OUTCOMES:
            outcome = Stage.DISQUALIFIED
        cause = f"qualification timeout: no verdict after {cadence.qualification_timeout_seconds} s"
        expired = await call(
            Act.TIME_OUT_QUALIFICATION,
            QualificationTimeout(deal_id, outcome, cause),
            self.state.inp.queues.deals,
            DealStatus,
        )
        if expired.stage == outcome and self._verdict() is None:
            return TimedOut(outcome, cause)
        self._deal_at_timeout = expired
        return None

    async def at_reminder(self, deal_id: str, waited: int) -> None:
        """At the reminder point: note the reminder in the deal's history and tell the rep's
        manager (when one is set) with who, why and which deal."""
        state, inp = self.state, self.state.inp
        journey = journey_id()
        await self._note(
            f"{journey}:qualification-reminder",
            deal_id,
            f"qualification reminder sent to the rep: no verdict after {waited} s",
        )
        if inp.contact.rep_id is None:
            return
        try:
            manager = await call(
                Act.GET_REP_MANAGER,
                RepRef(inp.contact.rep_id),
                inp.queues.prospecting,
                RepManager,
            )
        except ActivityError:
            return  # the rep is gone: nobody to escalate to, the timeout still applies
        if manager.manager_id is None:
            return
        if self._verdict() is not None and versions.patched(Patch.VERDICT_STOPS_ESCALATION):
            return  # the verdict came while the reminder was made: nothing to escalate
        name = state.prospect_name()
        rep = inp.contact.rep_name or inp.contact.rep_id
        cadence = state.cadence
        await self.steps.task(
            "escalation",
            f"Escalation: {name} is still not qualified",
            f"{rep} has not qualified {name}"
            + (f" ({inp.contact.company})" if inp.contact.company else "")
            + f" on deal {deal_id}: no verdict after {waited} s. Without one within "
            f"{cadence.qualification_timeout_seconds} s of qualifying starting, the deal goes to "
            f"{cadence.qualification_timeout_outcome}.",
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
            await call(Act.NOTE_DEAL, note, self.state.inp.queues.deals)
        except ActivityError as err:
            # the history line is informative: a deal erased meanwhile must not end the journey
            workflow.logger.warning("could not note %r on deal %s: %s", cause, deal_id, err)


class _BeforeEscalation:
    """The rules of journeys from before Patch.QUALIFICATION_ESCALATION: no escalation, and the
    deal always expires to disqualified. Goes with that patch."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def at_reminder(self, deal_id: str, waited: int) -> None:
        return None

    async def at_timeout(self, deal_id: str) -> TimedOut | None:
        expired = await call(
            Act.EXPIRE_QUALIFICATION, DealRef(deal_id), self.state.inp.queues.deals, DealStatus
        )
        if expired.stage == Stage.DISQUALIFIED and self.state.qualification is None:
            return TimedOut(Stage.DISQUALIFIED, "not qualified: qualification timeout")
        return None
