"""Stage 6, closing: the deal is decided. Its timers stop; a win enters "won" and the referrer
(if any) is thanked."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import DealClosed, Stage

from workflows.journey.meetings import Meetings
from workflows.journey.present import DecisionDeadlineWatch
from workflows.journey.referrals import Referrals
from workflows.journey.steps import Steps


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
        self.deadline.stop()
        if not closed.won:
            await self.steps.enter(Stage.LOST, f"closed lost: {closed.reason}")
            return Stage.LOST
        await self.steps.enter(Stage.WON, f"closed won: {closed.reason}")
        self.steps.in_background(self.referrals.thank_referrer("won"))
        return Stage.WON
