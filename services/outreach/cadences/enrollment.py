"""Enrolling a prospect: the enrollment row and the start of their journey, shared by
POST /enrollments and the automatic enrollment by fit tier."""

from __future__ import annotations

import logging

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from services.outreach import models
from services.outreach.cadences import service
from services.outreach.consent import suppressions
from shared.contracts.journey import CadenceSnapshot, Contact, JourneyInput, Stage, journey_id
from shared.errors import AppError
from shared.settings import Settings
from shared.temporal import task_queues

log = logging.getLogger(__name__)


def new_enrollment(contact: Contact, cadence_id: str, version: int) -> models.Enrollment:
    return models.Enrollment(
        prospect_id=contact.prospect_id,
        cadence_id=cadence_id,
        cadence_version=version,
        journey_id=journey_id(contact.prospect_id),
        rep_id=contact.rep_id,
        company_key=service.company_key(contact.company),
        # normalised as the ledger stores them: a do-not-contact entry finds the journey
        email=suppressions.normalise_address("email", contact.email) if contact.email else None,
        phone=suppressions.normalise_address("sms", contact.phone) if contact.phone else None,
    )


async def start_journey(
    client: Client,
    settings: Settings,
    row: models.Enrollment,
    contact: Contact,
    cadence: CadenceSnapshot,
    *,
    start_cause: str = "",
    deal_id: str | None = None,
) -> str | None:
    """Start the journey run of a stored enrollment and give its Temporal run id (None: it ran
    already); 503 when Temporal could not be reached (the enrollment stays, and a retry reaches
    the same run)."""
    queues = task_queues(settings)
    try:
        # USE_EXISTING: a repeat (or a retry after a failed start) reaches the running journey.
        # Run 1 is never started a second time once finished (REJECT_DUPLICATE); a later run
        # (come back) is a new run of the same id, allowed only once the previous one closed.
        handle = await client.start_workflow(
            "ProspectJourney",
            JourneyInput(
                contact=contact,
                cadence=cadence,
                queues=queues,
                start_stage=row.start_stage or Stage.CONTACTING,
                run=row.run,
                start_cause=start_cause,
                deal_id=deal_id,
            ),
            id=row.journey_id,
            task_queue=queues.journeys,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=(
                WorkflowIDReusePolicy.REJECT_DUPLICATE
                if row.run <= 1
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE
            ),
        )
    except WorkflowAlreadyStartedError:
        return None
    except RPCError as err:
        log.error("journey %s not started: %s", row.journey_id, err.message)
        raise AppError(
            503,
            "temporal_unreachable",
            f"enrollment stored but journey {row.journey_id} did not start ({err.message}); retry",
        ) from err
    return handle.result_run_id
