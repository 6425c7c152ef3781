"""The journeys worker's sticky cache is bounded by a setting (issue 13): its memory must not
grow with the number of journeys in flight (bench/inflight.py, bench/soak.py measure it)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PollerBehaviorSimpleMaximum

from closeflow.worker import FIRST_TASK_POLL_SHARE, build_workers
from tests.support.settings import make_settings


async def test_the_journeys_worker_caches_at_most_the_configured_journeys(
    tmp_path: Path, temporal_local: WorkflowEnvironment
) -> None:
    """And polls once per slot, half on the shared queue (issue 13): with the SDK's 5 polls at
    a 0.2 ratio, one poll at a time fetched every new journey's first task."""
    settings = make_settings(tmp_path, journey_cache_size=7, workflow_task_slots=12)
    async with contextlib.AsyncExitStack() as stack:
        (worker,) = await build_workers(temporal_local.client, settings, ["journeys"], stack)
        config = worker.config()
        assert config["max_cached_workflows"] == 7
        assert config["max_concurrent_workflow_tasks"] == 12
        assert config["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(12)
        assert config["nonsticky_to_sticky_poll_ratio"] == FIRST_TASK_POLL_SHARE == 0.5
        assert make_settings(tmp_path).journey_cache_size == 1000  # Temporal's own default
