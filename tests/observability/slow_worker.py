"""A worker process with one slow activity, run the way `closeflow worker` runs its workers
(closeflow.worker.serve_workers: signals, grace period, health and metrics ports).

test_worker_process.py starts it as a subprocess with CLOSEFLOW_* variables:

    python -m tests.observability.slow_worker

`slow_step(MARKER_DIR)` writes MARKER_DIR/started, waits until MARKER_DIR/release exists, writes
MARKER_DIR/finished and returns "done"; cancelled, it writes MARKER_DIR/cancelled first.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

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


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)

    async def build(client: Client, stack: AsyncExitStack) -> list[Worker]:
        queue = settings.task_queue(QUEUE)
        return [
            Worker(client, task_queue=queue, activities=[slow_step], **worker_options(settings))
        ]

    run_worker_process(serve_workers(settings, build, name="slow-worker"))


if __name__ == "__main__":
    sys.exit(main())
