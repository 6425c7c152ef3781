"""A worker process on SIGTERM: it stops taking work, says so on /readyz, lets the activity in
flight finish within the grace period (not cancelled), then exits; while it runs, /healthz,
/readyz and the Temporal SDK's /metrics answer on their ports."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from tests.observability.dashboards import sdk_metric_names
from tests.observability.slow_worker import QUEUE
from tests.support.eventually import eventually
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT


@workflow.defn(name="CallSlowStep")
class CallSlowStep:
    @workflow.run
    async def run(self, args: list[str]) -> str:
        queue, marker_dir = args
        result: str = await workflow.execute_activity(
            "slow_step",
            marker_dir,
            task_queue=queue,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=1),  # a cancelled attempt fails the run
        )
        return result


@workflow.defn(name="CallFailingStep")
class CallFailingStep:
    @workflow.run
    async def run(self, queue: str) -> str:
        try:
            await workflow.execute_activity(
                "failing_step", task_queue=queue, start_to_close_timeout=timedelta(minutes=1)
            )
        except ActivityError:
            return "failed"
        return "succeeded"


async def _stderr_lines(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for raw in stream:
        lines.append(raw.decode(errors="replace").rstrip())


async def test_sigterm_lets_the_activity_in_flight_finish(
    temporal_local: WorkflowEnvironment, queue_prefix: str, tmp_path: Path
) -> None:
    health, metrics = free_port(), free_port()
    env = {
        **os.environ,
        "CLOSEFLOW_ENVIRONMENT": "test",
        "CLOSEFLOW_DATA_DIR": str(tmp_path),
        "CLOSEFLOW_TEMPORAL_ADDRESS": temporal_local.client.service_client.config.target_host,
        "CLOSEFLOW_TASK_QUEUE_PREFIX": queue_prefix,
        "CLOSEFLOW_WORKER_GRACE_SECONDS": "120",
        "CLOSEFLOW_WORKER_HEALTH_PORT": str(health),
        "CLOSEFLOW_WORKER_METRICS_PORT": str(metrics),
        "CLOSEFLOW_LOG_FORMAT": "text",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.observability.slow_worker",
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    reader = asyncio.create_task(_stderr_lines(proc.stderr, lines))
    client = temporal_local.client
    try:
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, base_url=f"http://127.0.0.1:{health}"
        ) as http:

            async def ready() -> httpx.Response | None:
                try:
                    response = await http.get("/readyz")
                except httpx.TransportError:
                    return None
                return response if response.status_code == 200 else None

            body = (await eventually(ready, "the worker's /readyz answering 200", 60)).json()
            assert body == {"status": "ready", "checks": {"temporal": "ok", "pollers": "ok"}}
            assert (await http.get("/healthz")).json() == {"status": "ok"}

            async with Worker(
                client,
                task_queue=f"{queue_prefix}calls",
                workflows=[CallSlowStep, CallFailingStep],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                # an activity and a workflow task failing: the failure counters are exported
                failing = await client.execute_workflow(
                    CallFailingStep.run,
                    f"{queue_prefix}{QUEUE}",
                    id=f"{queue_prefix}failing",
                    task_queue=f"{queue_prefix}calls",
                )
                assert failing == "failed"
                stuck = await client.start_workflow(
                    "StuckTask", id=f"{queue_prefix}stuck", task_queue=f"{queue_prefix}{QUEUE}"
                )

                async def task_failed() -> bool:
                    scrape = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
                    return "temporal_workflow_task_execution_failed" in scrape

                await eventually(task_failed, "the workflow task failure counted")
                await stuck.terminate("the failure was counted")

                handle = await client.start_workflow(
                    CallSlowStep.run,
                    [f"{queue_prefix}{QUEUE}", str(tmp_path)],
                    id=f"{queue_prefix}slow",
                    task_queue=f"{queue_prefix}calls",
                )

                async def started() -> bool:
                    return (tmp_path / "started").exists()

                await eventually(started, "the slow activity started")

                # the SDK's metrics, while the activity runs: every temporal_* series that the
                # dashboard and the alert rules use is exported
                scrape = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
                missing = [n for n in sdk_metric_names() if n not in scrape]
                assert not missing, f"not exported by the worker: {missing}"

                proc.send_signal(signal.SIGTERM)

                async def stopping() -> bool:
                    return any("stopping: no new tasks" in line for line in lines)

                await eventually(stopping, "the worker logging its shutdown")
                not_ready = await http.get("/readyz")
                assert not_ready.status_code == 503
                assert not_ready.json()["checks"]["pollers"] == "down: stopping"
                assert proc.returncode is None  # still waiting on the activity in flight

                (tmp_path / "release").touch()
                assert await handle.result() == "done"
        code = await asyncio.wait_for(proc.wait(), 60)
        await reader
        tail = "\n".join(lines[-40:])
        assert code == 0, f"the worker exited with {code}; its stderr ended with:\n{tail}"
        assert (tmp_path / "finished").exists()
        assert not (tmp_path / "cancelled").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader
