"""Stand-ins and rows for the referrals tests."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from services.referrals.models import ReferralAsk
from shared.contracts.journey import (
    ReferralIntakeInput,
)


@workflow.defn(name="ReferralIntake")
class IntakeDouble:
    """Stands in for the real intake workflow: returns the input it was started with."""

    @workflow.run
    async def run(self, data: ReferralIntakeInput) -> ReferralIntakeInput:
        return data


def an_ask(**fields: Any) -> ReferralAsk:
    """A referral ask row (client `c` unless given), for referrals a test stores itself."""
    values: dict[str, Any] = {
        "id": "ask1", "token": "t", "client_prospect_id": "c", "journey_id": "j",
        "client_name": "C", "rep_id": "rep1", "cadence_id": "cad",
    }  # fmt: skip
    return ReferralAsk(**{**values, **fields})
