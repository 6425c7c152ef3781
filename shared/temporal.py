"""The Temporal client, connected once per process from settings."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime

from shared.contracts.queues import TaskQueues
from shared.settings import Settings


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """runtime: the workers' (it exports the SDK's metrics); None: the default one."""
    api_key = settings.temporal_api_key.get_secret_value() or None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=settings.temporal_tls or bool(api_key),
        runtime=runtime,
    )


def task_queues(settings: Settings) -> TaskQueues:
    return TaskQueues.with_prefix(settings.task_queue_prefix)
