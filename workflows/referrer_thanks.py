"""ThankReferrer: a referrer's thanks that outlives the referred prospect's run.

A journey thanks the referrer in the background (workflows/journey/referrals.py), and the send
may wait hours for the referrer's send window. A run that ended meanwhile (the deal lost the
same evening, the prospect disqualified) used to cancel it: the referrer was never thanked.
The run now hands such a thanks to this workflow (started as its child, abandoned when the run
closes). Outreach takes its sends: a workflow that is no journey run is no run that ended."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import ThanksRequest

from workflows.journey.thanks import thank


@workflow.defn(name="ThankReferrer")
class ThankReferrerWorkflow:
    @workflow.run
    async def run(self, req: ThanksRequest) -> str:
        try:
            await thank(req)
        except ActivityError as err:
            # e.g. the referrer was erased: the thanks is a courtesy, nothing else waits on it
            workflow.logger.warning(
                "could not thank referrer %s: %s", req.referrer.prospect_id, err
            )
            return f"not thanked for {req.event}"
        return f"thanked for {req.event}"
