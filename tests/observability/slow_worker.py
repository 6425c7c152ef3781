"""A worker process with one slow activity, run the way `closeflow worker` runs its workers
(closeflow.worker.serve_workers: signals, grace period, health and metrics ports).

test_worker_process.py starts it as a subprocess with CLOSEFLOW_* variables:

    python -m tests.observability.slow_worker

`slow_step(MARKER_DIR)` writes MARKER_DIR/started, waits until MARKER_DIR/release exists, writes
MARKER_DIR/finished and returns "done"; cancelled, it writes MARKER_DIR/cancelled first.
`failing_step` and the workflow `StuckTask` fail (an activity, a workflow task), so that the
SDK's failure counters, which the alert rules use, are exported too.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from closeflow.worker import run_worker_process, serve_workers, worker_options
from shared.logging import configure_logging
from shared.settings import Settings

QUEUE = "slow"


@activity.defn(name="slow_step")
async def slow_step(marker_dir: str) -> str:
    markers = Path(marker_dir)
    (markers / "started").touch()
    try:
        while not (markers / "release").exists():
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        (markers / "cancelled").touch()
        raise
    (markers / "finished").touch()
    return "done"


@activity.defn(name="failing_step")
async def failing_step() -> None:
    raise ApplicationError("failing on purpose", non_retryable=True)


@workflow.defn(name="StuckTask")
class StuckTask:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a workflow task failing on purpose")  # retried until terminated


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)

    async def build(client: Client, stack: AsyncExitStack) -> list[Worker]:
        queue = settings.task_queue(QUEUE)
        return [
            Worker(
                client,
                task_queue=queue,
                activities=[slow_step, failing_step],
                workflows=[StuckTask],
                # the module runs as __main__, which the sandbox cannot import again
                workflow_runner=UnsandboxedWorkflowRunner(),
                **worker_options(settings),
            )
        ]

    run_worker_process(serve_workers(settings, build, name="slow-worker"))


if __name__ == "__main__":
    sys.exit(main())
