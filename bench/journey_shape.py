"""The journey's commands up to its first touch, with nothing behind them: the engine's ceiling.

A journey's first workflow task schedules two activities at once (outreach's send of the first
touch, prospecting's stage change) on two services' queues, the journey records a workflow task
after each completes, and the second records a patch marker (which upserts a search attribute)
before it starts the timer to the next step. `Shape` does exactly that, completing instead of
starting the timer, with activities that do nothing, on workers of its own in two processes
shaped and tuned as the stack's (one for the workflow, one polling both activity queues), so
that what it costs is Temporal's and the SDK's alone. Its rate over
the no-op workflow's is the highest `ratio` this command sequence allows on that server, were
closeflow's own work (databases, providers, APIs, rendering) free.

    python -m bench.journey_shape workflows|activities <temporal address> <queue> <slots> <cache>

runs one of the two worker processes until it is terminated; `make bench` starts them.
BENCH_SHAPE_ACTIVITIES (`touch,stage` by default, the journey's) names the activities each
workflow runs at once: `touch` alone measures a first touch without its stage change's activity.
"""

from __future__ import annotations

import asyncio
import sys

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from bench.worker_process import main, serve

with workflow.unsafe.imports_passed_through():  # as the journeys worker passes them through
    # the journey's own options (its `call`), so that the server keeps the same timers
    from workflows.journey.steps import ACTIVITY_TIMEOUT, HEARTBEAT_TIMEOUT, RETRY


def queues(queue: str) -> tuple[str, str]:
    """The two activity queues, as outreach's and prospecting's are two."""
    return f"{queue}-touch", f"{queue}-stage"


@activity.defn(name="bench.touch")
async def touch(arg: str) -> str:
    return arg


@activity.defn(name="bench.stage")
async def stage(arg: str) -> None:
    return None


@workflow.defn(name="BenchJourneyShape")
class Shape:
    @workflow.run
    async def run(self, queue: str, activities: list[str]) -> None:
        touch_queue, stage_queue = queues(queue)
        on = {"touch": (touch_queue, "step-0"), "stage": (stage_queue, "contacting")}
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    f"bench.{name}",
                    on[name][1],
                    task_queue=on[name][0],
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=RETRY,
                )
                for name in activities
            )
        )
        # the journey's next task records a patch marker (and with it a search attribute)
        workflow.patched("bench-shape")


async def run(role: str, address: str, queue: str, slots: str, cache: str) -> None:
    """The workflow worker takes its tasks as the journeys worker does (`slots` workflow tasks
    at once, `cache` workflows cached), the activity workers run as many at once as the
    services' workers."""
    # here, not at the top: the sandbox imports this module again for each workflow run
    from closeflow.worker import ACTIVITY_SLOTS, journey_task_options

    client = await Client.connect(address)
    if role == "workflows":
        tasks = journey_task_options(int(slots), int(cache))
        await serve([Worker(client, task_queue=queue, workflows=[Shape], **tasks)])
    else:
        touch_queue, stage_queue = queues(queue)
        await serve(
            [
                Worker(
                    client, task_queue=q, activities=[a], max_concurrent_activities=ACTIVITY_SLOTS
                )
                for q, a in ((touch_queue, touch), (stage_queue, stage))
            ]
        )


if __name__ == "__main__":
    main(run(*sys.argv[1:6]))
