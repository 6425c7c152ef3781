"""ReferralIntake: a referral becomes a prospect whose journey starts at qualifying."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from shared.contracts.journey import (
        CadenceRef,
        CadenceSnapshot,
        Contact,
        CreateReferredProspect,
        JourneyInput,
        LinkReferral,
        ReferralIntakeInput,
        ReferredRun,
        Referrer,
        Stage,
        StartReferredRun,
        journey_id,
    )
    from shared.contracts.names import Act

from workflows.journey import ProspectJourney, versions
from workflows.journey.steps import call
from workflows.journey.versions import Patch


@workflow.defn(name="ReferralIntake")
class ReferralIntake:
    @workflow.run
    async def run(self, inp: ReferralIntakeInput) -> str:
        q = inp.queues
        cadence = await call(
            Act.GET_CADENCE, CadenceRef(inp.cadence_id), q.outreach, CadenceSnapshot
        )
        contact = await call(
            Act.CREATE_REFERRED_PROSPECT,
            CreateReferredProspect(
                inp.referral_id, inp.person, inp.referrer_prospect_id, inp.rep_id
            ),
            q.prospecting,
            Contact,
        )
        await call(
            Act.LINK_REFERRAL, LinkReferral(inp.referral_id, contact.prospect_id), q.referrals
        )
        referrer = Referrer(inp.referrer_prospect_id, inp.referrer_name, inp.referral_id)
        if versions.patched(Patch.REFERRAL_RUN_BY_OUTREACH):
            # outreach starts it as the prospect's next run: a known prospect whose journey
            # ended comes back keyed apart from their earlier runs, with their run's row
            run = await call(
                Act.START_REFERRED_RUN,
                StartReferredRun(contact, cadence.cadence_id, referrer),
                q.outreach,
                ReferredRun,
            )
            if not run.referred:
                workflow.logger.info(
                    "prospect %s not brought back: %s",
                    contact.prospect_id,
                    run.refused or "their journey runs",
                )
            return contact.prospect_id
        journey = JourneyInput(
            contact=contact,
            cadence=cadence,
            queues=q,
            start_stage=Stage.QUALIFYING,
            referrer=referrer,
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
