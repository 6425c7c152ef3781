"""Enrolling a prospect: the enrollment row and the start of their journey, shared by
POST /enrollments and the automatic enrollment by fit tier."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from services.outreach import models
from services.outreach.cadences import service
from services.outreach.cadences.stored_templates import for_journey
from services.outreach.consent import suppressions
from shared.contracts.journey import (
    CadenceSnapshot,
    Contact,
    JourneyInput,
    Referrer,
    Stage,
    journey_id,
)
from shared.errors import AppError
from shared.journeys import RUN_MEMO, run_number
from shared.settings import Settings
from shared.temporal import task_queues

log = logging.getLogger(__name__)

# A run's start carries the run number it was started for (its enrollment row's, in the memo
# shared.journeys.RUN_MEMO), so that a retry knows its own run by it, not by comparing Temporal's
# clock with outreach's; deals reads it too, to know whose link a booking came through.


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
    referrer: Referrer | None = None,
    referral_asked_before: bool = False,
) -> str | None:
    """Start the journey run of a stored enrollment and give its Temporal run id (None: it ran
    already); 503 when Temporal could not be reached (the enrollment stays, and a retry reaches
    the same run)."""
    queues = task_queues(settings)
    journey = JourneyInput(
        contact=contact,
        cadence=await for_journey(cadence, settings, client),
        queues=queues,
        start_stage=row.start_stage or Stage.CONTACTING,
        run=row.run,
        start_cause=start_cause,
        deal_id=deal_id,
        referrer=referrer,
        referral_asked_before=referral_asked_before,
    )
    if row.run > 1:
        return await _start_later_run(client, row, journey)
    try:
        # USE_EXISTING + REJECT_DUPLICATE: a repeat (or a retry after a failed start) reaches
        # the one journey, and a finished first run is never started a second time.
        handle = await client.start_workflow(
            "ProspectJourney",
            journey,
            id=row.journey_id,
            task_queue=queues.journeys,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={RUN_MEMO: row.run},
        )
    except WorkflowAlreadyStartedError:
        return None
    except RPCError as err:
        raise _unreachable(row, err) from err
    return handle.result_run_id


# how long a new run waits for the previous one to close: it reported its end (its outcome is
# recorded) and is returning
FINISHING_WAIT = 15.0


async def _start_later_run(
    client: Client, row: models.Enrollment, journey: JourneyInput
) -> str | None:
    """A come back: a new run of the same workflow id, allowed only once the previous run has
    closed (ALLOW_DUPLICATE reuses a closed id; FAIL never attaches to a running one). A previous
    run that reported its end may still be returning: wait for it once."""
    for attempt in range(2):
        try:
            handle = await client.start_workflow(
                "ProspectJourney",
                journey,
                id=row.journey_id,
                task_queue=journey.queues.journeys,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                memo={RUN_MEMO: row.run},
            )
        except WorkflowAlreadyStartedError as err:
            running = await client.get_workflow_handle(row.journey_id).describe()
            if await started_for(running, row):
                return running.run_id  # started for this row by an earlier attempt
            if attempt:
                raise AppError(
                    409,
                    "journey_running",
                    f"journey {row.journey_id} is still running: run {row.run} not started",
                ) from err
            try:
                await asyncio.wait_for(
                    client.get_workflow_handle(row.journey_id).result(), FINISHING_WAIT
                )
            except TimeoutError:
                continue
            except Exception:
                log.debug("previous run of %s closed", row.journey_id, exc_info=True)
        except RPCError as err:
            raise _unreachable(row, err) from err
        else:
            return handle.result_run_id
    raise AssertionError("unreachable")  # pragma: no cover


async def started_for(described: WorkflowExecutionDescription, row: models.Enrollment) -> bool:
    """The described journey run was started for `row`: by the run number its start carried.
    A run started by an earlier release carries none: then by its start time, which must not be
    before the row was stored (Temporal's clock against outreach's)."""
    number = await run_number(described)
    if number is not None:
        return number == row.run
    return described.start_time is None or described.start_time >= row.created_at


def _unreachable(row: models.Enrollment, err: RPCError) -> AppError:
    log.error("journey %s not started: %s", row.journey_id, err.message)
    return AppError(
        503,
        "temporal_unreachable",
        f"enrollment stored but journey {row.journey_id} did not start ({err.message}); retry",
    )
