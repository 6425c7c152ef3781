"""ReferralIntake: a referral becomes a prospect whose journey starts at qualifying."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        CadenceSnapshot,
        Contact,
        CreateReferredProspect,
        JourneyInput,
        LinkReferral,
        ReferralIntakeInput,
        Referrer,
        Stage,
        journey_id,
    )
    from shared.contracts.names import Act

from workflows.journey import RETRY, ProspectJourney

TIMEOUT = timedelta(seconds=60)


@workflow.defn(name="ReferralIntake")
class ReferralIntake:
    @workflow.run
    async def run(self, inp: ReferralIntakeInput) -> str:
        q = inp.queues
        cadence: CadenceSnapshot = await workflow.execute_activity(
            Act.GET_CADENCE,
            inp.cadence_id,
            task_queue=q.outreach,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
            result_type=CadenceSnapshot,
        )
        contact: Contact = await workflow.execute_activity(
            Act.CREATE_REFERRED_PROSPECT,
            CreateReferredProspect(
                inp.referral_id, inp.person, inp.referrer_prospect_id, inp.rep_id
            ),
            task_queue=q.prospecting,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
            result_type=Contact,
        )
        await workflow.execute_activity(
            Act.LINK_REFERRAL,
            LinkReferral(inp.referral_id, contact.prospect_id),
            task_queue=q.referrals,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        journey = JourneyInput(
            contact=contact,
            cadence=cadence,
            queues=q,
            start_stage=Stage.QUALIFYING,
            referrer=Referrer(inp.referrer_prospect_id, inp.referrer_name, inp.referral_id),
        )
        try:
            await workflow.start_child_workflow(
                ProspectJourney.run,
                journey,
                id=journey_id(contact.prospect_id),
                task_queue=q.journeys,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            # An existing prospect already on a journey gets the attribution, not a second one.
            workflow.logger.info("prospect %s already has a journey", contact.prospect_id)
        return contact.prospect_id
