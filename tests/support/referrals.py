"""Stand-ins for the referrals tests."""

from __future__ import annotations

from temporalio import workflow

from shared.contracts.journey import (
    ReferralIntakeInput,
)


@workflow.defn(name="ReferralIntake")
class IntakeDouble:
    """Stands in for the real intake workflow: returns the input it was started with."""

    @workflow.run
    async def run(self, data: ReferralIntakeInput) -> ReferralIntakeInput:
        return data
