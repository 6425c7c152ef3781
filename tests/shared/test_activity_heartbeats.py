"""An activity scheduled with a heartbeat timeout heartbeats through the boundary while it runs
(issue 13: a task the dev server recorded as started but never handed out is retried after that
timeout, not the whole start-to-close), and a cancellation does not stop it halfway, as it did
not before it heartbeated: a send stopped in the provider call would leave its row in doubt."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from shared.activity_boundary import activity_boundary

WORK_SECONDS = 3.5  # longer than the heartbeat timeout below
BEAT = timedelta(seconds=2)


@dataclass
class Slow:
    sessions: async_sessionmaker[AsyncSession] | None = None
    attempts: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)

    @activity_boundary("test.slow")
    async def slow(self, tag: str) -> int:
        self.attempts.append(activity.info().attempt)
        await asyncio.sleep(WORK_SECONDS)
        self.finished.append(activity.info().attempt)
        return activity.info().attempt


@workflow.defn(sandboxed=False)
class RunsSlow:
    @workflow.run
    async def run(self, cancel: bool) -> int:
        handle = workflow.start_activity(
            "test.slow",
            "x",
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=BEAT,
            retry_policy=RetryPolicy(maximum_attempts=1),
            result_type=int,
        )
        if not cancel:
            return await handle
        await workflow.sleep(0.5)
        handle.cancel()
        try:
            await handle
        except Exception:
            return -1
        return 0


async def test_a_long_activity_heartbeats_and_a_cancel_does_not_stop_it_halfway(
    temporal_local: WorkflowEnvironment,
) -> None:
    acts = Slow()
    queue = f"heartbeats-{uuid.uuid4().hex[:6]}"
    client = temporal_local.client
    async with Worker(
        client,
        task_queue=queue,
        workflows=[RunsSlow],
        activities=[acts.slow],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        # one attempt (no retry allowed) outlives its heartbeat timeout: it heartbeated; and
        # the journey stops waiting for a cancelled activity, which still finishes
        done, cancelled = await asyncio.gather(
            client.execute_workflow(RunsSlow.run, False, id=f"{queue}-long", task_queue=queue),
            client.execute_workflow(RunsSlow.run, True, id=f"{queue}-cancel", task_queue=queue),
        )
        assert done == 1
        assert cancelled == -1
        for _ in range(100):
            if len(acts.finished) == 2:
                break
            await asyncio.sleep(0.1)
    assert acts.attempts == [1, 1]
    assert acts.finished == [1, 1]
