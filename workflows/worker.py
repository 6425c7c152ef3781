"""Workers: the "journeys" queue runs workflows; each service queue runs that service's activities.

`closeflow worker journeys outreach ...` runs several in one process (the dev stack); production
runs one per container so each scales and deploys alone.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from shared.db import create_engine, session_factory
from shared.settings import SERVICES, Settings
from shared.temporal import connect
from workflows.journey import ProspectJourney
from workflows.referral_intake import ReferralIntake

QUEUES = ("journeys", *SERVICES)
log = logging.getLogger(__name__)


def expand(queues: Sequence[str]) -> list[str]:
    names = list(QUEUES) if "all" in queues else list(dict.fromkeys(queues))
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; expected {', '.join(QUEUES)}")
    return names


async def build_workers(
    client: Client, settings: Settings, queues: Sequence[str], stack: AsyncExitStack
) -> list[Worker]:
    """Workers for the named queues; engines they open are closed when `stack` closes."""
    workers = []
    for name in expand(queues):
        task_queue = settings.task_queue(name)
        if name == "journeys":
            workers.append(
                Worker(client, task_queue=task_queue, workflows=[ProspectJourney, ReferralIntake])
            )
            continue
        engine = create_engine(settings.database_url(name))
        stack.push_async_callback(engine.dispose)
        module = importlib.import_module(f"services.{name}.activities")
        activities_for: Callable[..., list[Callable[..., Any]]] = module.activities_for
        activities = activities_for(settings, session_factory(engine))
        closer = getattr(module, "close_activities", None)
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
