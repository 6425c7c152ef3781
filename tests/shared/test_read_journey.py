"""Reading a journey's state (GET /journeys/{id}, the migration plan) survives a query that
fails for a while: on a loaded worker a workflow task can outlast the SDK's 2-second deadlock
guard, the query attached to it fails ("Potential deadlock detected") and, until the task's retry
completes, the server refuses queries ("Workflow Task in failed state"). The API answered 500
(seen in CI under load). Now the read is tried again; a journey that never answers is a 503 that
says why, and a missing or (when asked) ended journey is None, never a guess.

A real deadlock cannot be provoked reliably (a blocked thread leaves the SDK unable to evict the
run), so the two failures are made by the workflows below: a query handler that fails its next
answers, and a workflow whose every task fails."""

from __future__ import annotations

import uuid

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from shared.contracts.journey import JourneyState
from shared.contracts.names import Query
from shared.errors import AppError
from shared.journeys import QUERY_ATTEMPTS, read_journey
from tests.support.eventually import eventually

# how many of the next state queries each workflow fails, by workflow id
FAILS: dict[str, int] = {}


@workflow.defn(sandboxed=False)
class SlowToAnswer:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query(name=Query.STATE)
    def state(self) -> JourneyState:
        wid = workflow.info().workflow_id
        if FAILS.get(wid, 0) > 0:
            FAILS[wid] -= 1
            raise RuntimeError("Potential deadlock detected (made by the test)")
        return JourneyState(stage="contacting", next_step=1, deal_id=None, finished=False)


@workflow.defn(sandboxed=False)
class TaskAlwaysFails:
    """Once signalled, every workflow task fails (retried, never the run's end)."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def break_down(self) -> None:
        raise RuntimeError("a workflow task that never completes")

    @workflow.query(name=Query.STATE)
    def state(self) -> JourneyState:
        return JourneyState(stage="contacting", next_step=1, deal_id=None, finished=False)


async def _task_failing(client: Client, wid: str) -> bool:
    # from its third attempt on, the server answers queries at once that the task is failing
    described = await client.get_workflow_handle(wid).describe()
    return described.raw_description.pending_workflow_task.attempt >= 3


async def _start(client: Client, queue: str, name: str, wf: type = SlowToAnswer) -> str:
    wid = f"{queue}-{name}"
    await client.start_workflow(wf.run, id=wid, task_queue=queue)
    return wid


async def test_a_failed_state_query_is_read_again_and_one_that_never_answers_is_503(
    temporal_local: WorkflowEnvironment,
) -> None:
    client = temporal_local.client
    queue = f"read-journey-{uuid.uuid4().hex[:6]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[SlowToAnswer, TaskAlwaysFails],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        slow = await _start(client, queue, "slow")
        # what the API met in CI: a plain query fails
        FAILS[slow] = 1
        with pytest.raises(WorkflowQueryFailedError, match="deadlock"):
            await client.get_workflow_handle(slow).query(Query.STATE, result_type=JourneyState)

        FAILS[slow] = QUERY_ATTEMPTS - 1
        read = await read_journey(client, slow)
        assert read is not None
        described, state = read
        assert (described.id, state.stage, state.next_step) == (slow, "contacting", 1)
        assert FAILS[slow] == 0  # every failure met, and read through

        FAILS[slow] = QUERY_ATTEMPTS
        with pytest.raises(AppError) as busy:
            await read_journey(client, slow)
        assert (busy.value.status, busy.value.code) == (503, "journey_busy")
        assert slow in busy.value.message and "deadlock" in busy.value.message
        assert FAILS[slow] == 0

        broken = await _start(client, queue, "broken", TaskAlwaysFails)
        assert await read_journey(client, broken) is not None  # answers before it breaks
        await client.get_workflow_handle(broken).signal(TaskAlwaysFails.break_down)
        await eventually(lambda: _task_failing(client, broken), "its workflow task failing", 60)
        with pytest.raises(AppError) as failing:
            await read_journey(client, broken)
        assert (failing.value.status, failing.value.code) == (503, "journey_busy")
        assert "failed state" in failing.value.message, failing.value.message
        await client.get_workflow_handle(broken).terminate("the test is over")

        assert await read_journey(client, f"{queue}-nobody") is None

        ended = await _start(client, queue, "ended")
        await client.get_workflow_handle(ended).signal(SlowToAnswer.finish)
        await client.get_workflow_handle(ended).result()
        FAILS[ended] = QUERY_ATTEMPTS  # any query would fail: running_only must send none
        assert await read_journey(client, ended, running_only=True) is None
        assert FAILS[ended] == QUERY_ATTEMPTS
        FAILS[ended] = 0
        read = await read_journey(client, ended)
        assert read is not None and read[1].stage == "contacting"  # an ended one is still read
