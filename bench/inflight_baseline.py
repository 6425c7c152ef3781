"""The in-flight benchmark's baseline: what the SDK's worker alone grows by between two levels of
workflows in flight, with its cache bounded as the journeys worker's is.

A workflow that holds nothing (one short argument, a 30-day timer), on a worker process of its
own with only the SDK's defaults and `max_cached_workflows` set, on the stack's Temporal server:
`make bench-inflight` starts as many of these as journeys at each level and reads this worker's
memory as it reads the journeys worker's, so that the journeys' `rss_ratio` can be read against
the SDK's own in the same run.

    python -m bench.inflight_baseline <temporal address> <queue> <cache size>
"""

from __future__ import annotations

import sys
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from bench.worker_process import main, serve

WAIT = timedelta(days=30)


@workflow.defn(name="BenchWaiting")
class Waiting:
    @workflow.run
    async def run(self, name: str) -> None:
        await workflow.sleep(WAIT)


async def run(address: str, queue: str, cache: str) -> None:
    client = await Client.connect(address)
    worker = Worker(client, task_queue=queue, workflows=[Waiting], max_cached_workflows=int(cache))
    await serve([worker])


if __name__ == "__main__":
    main(run(*sys.argv[1:4]))
