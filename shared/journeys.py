"""How APIs reach a prospect's journey: signals through the Temporal client, never timers."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from shared.codec import PayloadKeyErased
from shared.contracts.journey import JourneyState, journey_id
from shared.contracts.names import Query
from shared.errors import AppError

log = logging.getLogger(__name__)

# A query is answered in a workflow task; on a loaded worker that task can outlast the SDK's
# 2-second deadlock guard: the query fails though nothing is wrong with the journey, and until
# the task's retry completes the server refuses queries ("Workflow Task in failed state").
# Reading is harmless to repeat, so such a query is tried again before the caller hears 503.
QUERY_ATTEMPTS = 3
QUERY_BACKOFF_SECONDS = 0.5
# a journey whose worker is away is a 503 soon, not a request held until the proxy gives up
QUERY_TIMEOUT = timedelta(seconds=10)
# a run's first workflow task is among its first events: one small page, not the whole history
FIRST_EVENTS_PAGE = 20
# the memo entry outreach starts every journey run with: its run number (JourneyInput.run)
RUN_MEMO = "closeflow_run"


async def run_number(described: WorkflowExecutionDescription) -> int | None:
    """The run number the described journey run was started with; None when its start carried
    none (an earlier release) or the person was erased (the memo is theirs, shredded with
    them)."""
    try:
        memo = await described.memo()
    except PayloadKeyErased:
        return None
    number = memo.get(RUN_MEMO)
    return number if isinstance(number, int) else None


async def signal_journey(
    client: Client, prospect_id: str, signal: str, payload: object, *, run_id: str | None = None
) -> None:
    """Signal the prospect's journey. Call it after the commit that recorded the fact.

    With `run_id` only that run of the journey hears it: once it has ended the signal is
    refused (409) instead of reaching whichever later run of the prospect is running."""
    handle = client.get_workflow_handle(journey_id(prospect_id), run_id=run_id)
    try:
        await handle.signal(signal, payload)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise AppError(
                409,
                "journey_not_running",
                f"prospect {prospect_id} has no running journey: enroll them first"
                if run_id is None
                else f"the run of prospect {prospect_id}'s journey this concerns has ended",
            ) from err
        log.error("signal %s to %s failed: %s", signal, handle.id, err.message)
        raise AppError(
            503, "journey_unreachable", "stored, but the journey could not be told; retry"
        ) from err


async def tell_running_journey(
    client: Client, prospect_id: str, *signals: tuple[str, object]
) -> bool:
    """Signal the prospect's journey each (name, payload) in order, if it runs: False when
    it has ended (or never ran), which needs nothing more; 503 when it could not be told."""
    try:
        for signal, payload in signals:
            await signal_journey(client, prospect_id, signal, payload)
    except AppError as err:
        if err.code != "journey_not_running":
            raise
        return False
    return True


async def read_journey(
    client: Client, workflow_id: str, *, running_only: bool = False
) -> tuple[WorkflowExecutionDescription, JourneyState] | None:
    """The journey's execution and its state query, or None when there is no such journey (or,
    with `running_only`, when it has ended: a closed one is then not replayed to be queried).
    Temporal away or the query failing every attempt: 503 with Retry-After."""
    described = await describe_journey(client, workflow_id)
    if described is None:
        return None
    if running_only and described.status != WorkflowExecutionStatus.RUNNING:
        return None
    state = await query_state(client.get_workflow_handle(workflow_id))
    return None if state is None else (described, state)


async def describe_journey(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """The journey's latest run, running or ended; None when there never was one. Temporal
    away: 503."""
    try:
        return await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise AppError(
            503, "temporal_unreachable", f"journey {workflow_id}: {err.message}"
        ) from err


async def first_task_time(client: Client, workflow_id: str, run_id: str | None) -> datetime:
    """When the run's first completed workflow task started: what workflow.now() said in the
    workflow's first lines (a journey counts its cadence from there). Later than the run's start
    by however long that task waited for a worker; a task that failed or timed out first is
    not the one the workflow's code remembers. Temporal away: 503."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    started: dict[int, datetime] = {}
    try:
        events = handle.fetch_history_events(page_size=FIRST_EVENTS_PAGE, rpc_timeout=QUERY_TIMEOUT)
        async for event in events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                # as workflow.now() converts it (float seconds), to the microsecond
                started[event.event_id] = datetime.fromtimestamp(
                    event.event_time.ToNanoseconds() / 1e9, UTC
                )
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                return started[event.workflow_task_completed_event_attributes.started_event_id]
    except RPCError as err:
        raise AppError(
            503, "temporal_unreachable", f"journey {workflow_id}: {err.message}"
        ) from err
    raise AppError(503, "journey_busy", f"journey {workflow_id} has not run its first task yet")


async def query_state(handle: WorkflowHandle[Any, Any]) -> JourneyState | None:
    """The journey's state query (that run's, when the handle names one), tried again as
    QUERY_ATTEMPTS says; None when there is no such journey, 503 when it never answers."""
    workflow_id = handle.id
    failure = ""
    for attempt in range(QUERY_ATTEMPTS):
        if attempt:
            await asyncio.sleep(QUERY_BACKOFF_SECONDS * attempt)
        try:
            state: JourneyState = await handle.query(
                Query.STATE, result_type=JourneyState, rpc_timeout=QUERY_TIMEOUT
            )
            return state
        except WorkflowQueryFailedError as err:
            failure = err.message
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            if err.status != RPCStatusCode.FAILED_PRECONDITION:
                # no worker answering (a timeout) is not worth waiting for three times
                raise AppError(
                    503, "journey_busy", f"journey {workflow_id} did not answer: {err.message}"
                ) from err
            failure = err.message  # its last workflow task failed: the retry may be under way
        log.warning("state query of %s failed (attempt %d): %s", workflow_id, attempt + 1, failure)
    raise AppError(
        503, "journey_busy", f"journey {workflow_id} did not answer its state query: {failure}"
    )
