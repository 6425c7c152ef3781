"""Workers: the "journeys" queue runs workflows; each service queue runs that service's activities.

`closeflow worker journeys outreach ...` runs several in one process (the dev stack); production
runs one per container so each scales and deploys alone.

Stopping (issue 12): on SIGTERM or SIGINT the workers stop polling, then wait up to
CLOSEFLOW_WORKER_GRACE_SECONDS for the activities in flight to finish (and report their results)
before cancelling what is left; Temporal retries a cancelled one elsewhere, and sends are
idempotent. The orchestrator's grace period must be longer (the k8s manifests give 60 s).

Watching: CLOSEFLOW_WORKER_HEALTH_PORT serves /healthz and /readyz (shared/health.py),
CLOSEFLOW_WORKER_METRICS_PORT the Temporal SDK's Prometheus metrics, and
CLOSEFLOW_OTLP_ENDPOINT turns on the workflow and activity spans (shared/tracing.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any, NoReturn

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from closeflow.registry import (
    JOURNEYS,
    activities_closer,
    activities_module,
    expand_queues,
)
from shared import tracing
from shared.capabilities import worker_identity
from shared.db import create_engine, session_factory
from shared.health import Down, run_checks, serve_worker_health, temporal_up
from shared.settings import Settings
from shared.temporal import connect
from workflows.journey import ProspectJourney
from workflows.meeting_invite import HandedOverMeetingCancelWorkflow, MeetingInviteWorkflow
from workflows.referral_intake import ReferralIntake
from workflows.referrer_thanks import ThankReferrerWorkflow

JOURNEY_WORKFLOWS = (
    ProspectJourney,
    ReferralIntake,
    MeetingInviteWorkflow,
    HandedOverMeetingCancelWorkflow,
    ThankReferrerWorkflow,
)
# The sandbox imports a workflow's module again for every run it starts (global state kept
# apart), and with it every module that one imports: the journey's ten stage modules. That was
# most of the journeys worker's CPU at 200 journeys starting together (issue 13: 42% with no
# bytecode files, 34 -> 9 ms per journey's first task with them passed through). They are
# passed through instead, as Temporal advises for deterministic modules in separate files:
# imported once per process. They keep no module-level state, and their determinism is still
# checked in the strict sandbox by every stored history's replay (tests/workflows/test_replay.py).
# shared.contracts too: the sandbox must see the modules the types of the inputs come from.
JOURNEY_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "workflows", "shared.contracts"
    )
)
# the share of the journeys worker's workflow task polls on the shared queue, where each new
# journey's first task waits (the others poll the worker's sticky queue: a cached journey's next)
FIRST_TASK_POLL_SHARE = 0.5
ACTIVITY_SLOTS = 50  # activities a services' worker runs at once, per queue
log = logging.getLogger(__name__)


def journey_task_options(slots: int, cache: int) -> dict[str, Any]:
    """How the journeys worker takes its workflow tasks (issue 13), for a Worker."""
    return {
        # bounded: memory does not grow with the journeys in flight
        "max_cached_workflows": cache,
        "max_concurrent_workflow_tasks": slots,
        # One poll per slot, half of them on the shared queue: with the SDK's 5 polls and 0.2
        # ratio one poll fetched every new journey's first task (the rest go to this worker's
        # sticky queue), one round trip to the server at a time; under load their queue wait
        # was the journey's longest
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(maximum=slots),
        "nonsticky_to_sticky_poll_ratio": FIRST_TASK_POLL_SHARE,
    }


def worker_options(settings: Settings) -> dict[str, Any]:
    """What every closeflow Worker is built with, whatever it runs."""
    return {
        "graceful_shutdown_timeout": timedelta(seconds=settings.worker_grace_seconds),
        "interceptors": tracing.temporal_interceptors(),
    }


async def build_workers(
    client: Client, settings: Settings, queues: Sequence[str], stack: AsyncExitStack
) -> list[Worker]:
    """Workers for the named queues; engines they open are closed when `stack` closes."""
    workers = []
    engines = []
    # the identity says what this release's workers can do: the APIs ask Temporal who polls
    options = {**worker_options(settings), "identity": worker_identity(client)}
    for name in expand_queues(queues):
        task_queue = settings.task_queue(name)
        if name == JOURNEYS:
            workers.append(
                Worker(
                    client,
                    task_queue=task_queue,
                    workflows=list(JOURNEY_WORKFLOWS),
                    **journey_task_options(
                        settings.workflow_task_slots, settings.journey_cache_size
                    ),
                    workflow_runner=JOURNEY_RUNNER,
                    **options,
                )
            )
            continue
        engine = create_engine(settings.database_url(name))
        engines.append(engine)
        stack.push_async_callback(engine.dispose)
        module = activities_module(name)
        activities = module.activities_for(settings, session_factory(engine))
        closer = activities_closer(module)
        if closer is not None:
            stack.push_async_callback(closer, activities)
        workers.append(
            Worker(
                client,
                task_queue=task_queue,
                activities=activities,
                max_concurrent_activities=ACTIVITY_SLOTS,
                **options,
            )
        )
    tracing.instrument_engines(engines)
    return workers


def runtime_for(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's metrics on the metrics port, when one is set."""
    if not settings.worker_metrics_port:
        return None
    address = f"{settings.host}:{settings.worker_metrics_port}"
    log.info("worker metrics on %s/metrics", address)
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


BuildWorkers = Callable[[Client, AsyncExitStack], Any]  # -> Awaitable[list[Worker]]


async def serve_workers(settings: Settings, build: BuildWorkers, name: str = "worker") -> None:
    """Connect, run the workers `build` makes until SIGTERM or SIGINT, then stop gracefully.
    The one way a worker process runs (tests run their own workers through it too)."""
    tracing.configure_tracing(settings.otlp_endpoint, name)
    client = await connect(settings, runtime=runtime_for(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        workers: list[Worker] = await build(client, stack)

        async def readiness() -> tuple[bool, dict[str, str]]:
            async def polling() -> None:
                if stop.is_set():
                    raise Down("stopping")
                stopped = [w.task_queue for w in workers if not w.is_running]
                if stopped:
                    raise Down(f"not polling {', '.join(stopped)}")

            return await run_checks({"temporal": lambda: temporal_up(client), "pollers": polling})

        for worker in workers:
            await stack.enter_async_context(worker)
        await stack.enter_async_context(
            serve_worker_health(settings.host, settings.worker_health_port, readiness)
        )
        log.info("workers running on %s", ", ".join(w.task_queue for w in workers))
        await stop.wait()
        log.info(
            "stopping: no new tasks; waiting up to %g s for the activities in flight",
            settings.worker_grace_seconds,
        )
        # all at once: one after the other, N workers could take N grace periods
        await asyncio.gather(*(worker.shutdown() for worker in workers))
    log.info("workers stopped")


async def run_workers(settings: Settings, queues: Sequence[str]) -> None:
    names = expand_queues(queues)

    async def build(client: Client, stack: AsyncExitStack) -> list[Worker]:
        return await build_workers(client, settings, names, stack)

    await serve_workers(settings, build, name="worker-" + "-".join(names))


def run_worker_process(main: Coroutine[Any, Any, None]) -> NoReturn:
    """A worker process's whole life: run `main`, then end without finalizing the interpreter.

    Why not a plain return: the Temporal core's Rust threads can still call into Python after
    the workers stopped; when that lands while CPython finalizes, the process aborts (SIGABRT,
    "PyGILState_Release: ... Python runtime state: finalizing"), and a graceful shutdown reads
    as a crash to the orchestrator. So what atexit would do is done here: spans exported, logs
    and streams flushed. An exception still propagates (and the interpreter finalizes)."""
    asyncio.run(main)
    tracing.flush()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
