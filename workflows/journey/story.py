"""ProspectJourney: one durable workflow per prospect, from first touch to referrals.

`_journey` is the README's seven stages; each stage's behaviour is in its own module (contact,
qualify, present and meetings, close, referrals), what they share in steps.py, what the journey
remembers in state.py, the signals it takes in signals.py, and every change to its command
sequence in versions.py. The stage helpers are plain classes sharing this workflow's state, not
child workflows: signals still go to `journey-<prospect id>`.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        DealReopened,
        JourneyInput,
        RunEnded,
        Stage,
        system_actor,
    )
    from shared.contracts.names import Act

from workflows.journey import versions
from workflows.journey.close import Closing
from workflows.journey.contact import Contacting
from workflows.journey.meetings import Meetings
from workflows.journey.present import Presenting
from workflows.journey.qualify import Qualifying, TimedOut
from workflows.journey.referrals import Referrals
from workflows.journey.replies import LaterReplies
from workflows.journey.signals import JourneyInbox
from workflows.journey.state import State
from workflows.journey.steps import Steps, call, reopening_to_follow
from workflows.journey.versions import Patch


@workflow.defn(name="ProspectJourney")
class ProspectJourney(JourneyInbox):
    @workflow.init
    def __init__(self, inp: JourneyInput) -> None:
        # the state exists before the run starts: a signal or query that comes first is safe
        self.state = State.start(inp)
        self.steps = steps = Steps(self.state)
        self.contacting = Contacting(self.state, steps)
        self.referrals = Referrals(self.state, steps)
        self.meetings = meetings = Meetings(self.state, steps, self.referrals)
        self.qualifying = Qualifying(self.state, steps, meetings)
        self.presenting = Presenting(self.state, steps, meetings)
        self.closing = Closing(steps, meetings, self.presenting.deadline, self.referrals)
        self.later_replies = LaterReplies(self.state, steps)

    @workflow.run
    async def run(self, inp: JourneyInput) -> str:
        teller = self.steps.in_background(self.later_replies.tell_rep())
        try:
            outcome = await self._journey()
        except BaseException:
            self._stop_background()
            raise
        try:
            await self.referrals.hand_over_thanks()
        except BaseException:
            self._stop_background()
            raise
        # the replies' teller outlives the stages: a reply accepted until the run's end is told
        telling = self.later_replies.outlives_run()
        self._stop_background(keep=teller if telling else None)
        self.state.finished = True
        try:
            if versions.patched(Patch.RUN_END_REPORTED):
                # outreach keeps each run's outcome and starts a nurtured prospect's follow-up
                await call(
                    Act.RECORD_RUN_END,
                    RunEnded(
                        inp.contact.prospect_id,
                        inp.run,
                        outcome,
                        self.state.cadence.cadence_id,
                        workflow.now().isoformat(),
                    ),
                    inp.queues.outreach,
                )
            if telling:
                # every reply accepted until now (the end report's time too) is told first
                await self.later_replies.finish(teller)
        except BaseException:
            teller.cancel()  # the run was cancelled while it ended
            raise
        return outcome

    def _stop_background(self, keep: asyncio.Task[None] | None = None) -> None:
        for task in self.state.background:
            if task is not keep:
                task.cancel()

    async def _journey(self) -> str:
        inp, enter = self.state.inp, self.steps.enter
        if inp.start_stage == Stage.PRESENTING and inp.deal_id is not None:
            # a later run of a reopened deal carries on at presenting with that deal
            self.state.deal_id = inp.deal_id
            await enter(
                Stage.PRESENTING, inp.start_cause or "deal reopened", system_actor("new run")
            )
        else:
            ended = await self._until_qualified()
            if ended is not None:
                return ended
        closed = await self.presenting.until_closed()
        while True:
            # 6. closing: won or lost
            outcome = await self.closing.close(closed)
            # 7. referrals after a win; a reopened deal goes back to 4, 5 and 6
            if outcome == Stage.WON:
                reopened = await self.referrals.until_reopened()
            else:
                reopened = self._reopened_while_losing()
            if reopened is None:
                return outcome
            closed = await self.presenting.reopened(reopened)

    def _reopened_while_losing(self) -> DealReopened | None:
        """A reopening that came while this run recorded the loss: deals saw the run still
        going and told it, not a new run, so it is this run's to follow (else nobody would)."""
        state = self.state
        # asked only when one waits: a run that simply ends lost records no patch marker
        if state.next_reopening() is None or not versions.patched(Patch.LOST_DEAL_REOPENED):
            return None
        return reopening_to_follow(state)

    async def _until_qualified(self) -> str | None:
        """Stages 1 to 4: None once the deal is qualified (presenting), else the outcome."""
        inp, enter = self.state.inp, self.steps.enter
        # 1. prospecting: the prospect was found and enrolled (where every journey starts)
        # 2. contacting: the cadence until a reply; a referred prospect is introduced instead,
        # and a later run restarted at qualifying (a late reply) skips it
        if inp.start_stage == Stage.QUALIFYING and inp.referrer is not None:
            await self.contacting.introduce(inp.referrer)
        elif inp.start_stage == Stage.QUALIFYING:
            await enter(
                Stage.QUALIFYING,
                inp.start_cause or "restarted at qualifying",
                system_actor("new run"),
            )
        else:
            ended = await self.contacting.until_reply()
            if ended is not None:
                return ended
        # 3. qualifying: the rep's verdict, or the timeout's outcome
        verdict = await self.qualifying.until_verdict()
        if isinstance(verdict, TimedOut):
            await self.meetings.ask_rep_about_meetings_ahead(verdict.outcome)
            await enter(verdict.outcome, verdict.cause, system_actor("qualification timeout"))
            return verdict.outcome
        if not verdict.qualified:
            await self.meetings.ask_rep_about_meetings_ahead(Stage.DISQUALIFIED)
            await enter(
                Stage.DISQUALIFIED,
                f"not qualified: {'; '.join(verdict.reasons)}",
                verdict.actor,
            )
            return Stage.DISQUALIFIED
        # 4, 5. presenting and objections: meetings, objections, the decision deadline
        await enter(Stage.PRESENTING, "qualified", verdict.actor)
        return None
