"""Stage 6, closing: the deal is decided. Its timers stop; a win enters "won" and the referrer
(if any) is thanked."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import DealClosed, Stage

from workflows.journey import versions
from workflows.journey.meetings import Meetings
from workflows.journey.present import DecisionDeadlineWatch
from workflows.journey.referrals import Referrals
from workflows.journey.steps import Steps
from workflows.journey.versions import Patch


class Closing:
    def __init__(
        self,
        steps: Steps,
        meetings: Meetings,
        deadline: DecisionDeadlineWatch,
        referrals: Referrals,
    ) -> None:
        self.steps = steps
        self.meetings = meetings
        self.deadline = deadline
        self.referrals = referrals

    async def close(self, closed: DealClosed) -> str:
        """Won or lost, as the deal was closed."""
        # a decided deal needs no more reminders or last-chance task
        self.meetings.stop_all_reminders()
        self.meetings.stop_rebooking()
        self.deadline.stop()
        outcome = Stage.WON if closed.won else Stage.LOST
        await self.meetings.ask_rep_about_meetings_ahead(outcome)
        if self.steps.state.stage != Stage.CLOSING and versions.patched(Patch.DEAL_STAGE_TRUTH):
            # the seven stages in order: a deal decided straight from presenting or objections
            # passes through closing, so the funnel's closing row counts every decided deal
            await self.steps.enter(
                Stage.CLOSING, f"deal {closed.deal_id} closed {outcome}", closed.actor
            )
        if not closed.won:
            await self.steps.enter(Stage.LOST, f"closed lost: {closed.reason}", closed.actor)
            return Stage.LOST
        await self.steps.enter(Stage.WON, f"closed won: {closed.reason}", closed.actor)
        self.steps.in_background(self.referrals.thank_referrer("won"))
        return Stage.WON
