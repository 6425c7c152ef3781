"""Workers: the "journeys" queue runs workflows; each service queue runs that service's activities.

`closeflow worker journeys outreach ...` runs several in one process (the dev stack); production
runs one per container so each scales and deploys alone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from contextlib import AsyncExitStack

from temporalio.client import Client
from temporalio.worker import Worker

from closeflow.registry import (
    JOURNEYS,
    activities_closer,
    activities_module,
    expand_queues,
)
from shared.db import create_engine, session_factory
from shared.settings import Settings
from shared.temporal import connect
from workflows.journey import ProspectJourney
from workflows.referral_intake import ReferralIntake

JOURNEY_WORKFLOWS = (ProspectJourney, ReferralIntake)
log = logging.getLogger(__name__)


async def build_workers(
    client: Client, settings: Settings, queues: Sequence[str], stack: AsyncExitStack
) -> list[Worker]:
    """Workers for the named queues; engines they open are closed when `stack` closes."""
    workers = []
    for name in expand_queues(queues):
        task_queue = settings.task_queue(name)
        if name == JOURNEYS:
            workers.append(Worker(client, task_queue=task_queue, workflows=list(JOURNEY_WORKFLOWS)))
            continue
        engine = create_engine(settings.database_url(name))
        stack.push_async_callback(engine.dispose)
        module = activities_module(name)
        activities = module.activities_for(settings, session_factory(engine))
        closer = activities_closer(module)
        if closer is not None:
            stack.push_async_callback(closer, activities)
        workers.append(
            Worker(
                client, task_queue=task_queue, activities=activities, max_concurrent_activities=50
            )
        )
    return workers


async def run_workers(settings: Settings, queues: Sequence[str]) -> None:
    client = await connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        workers = await build_workers(client, settings, queues, stack)
        for worker in workers:
            await stack.enter_async_context(worker)
        log.info("workers running on %s", ", ".join(w.task_queue for w in workers))
        await stop.wait()
