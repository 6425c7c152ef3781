"""Journey throughput against a no-op workflow on the same fresh dev server, in the same run.

    make bench            (BENCH_N=1000 by default)

1. Starts the whole stack (as `make run` does) on a fresh data folder and free ports.
2. Creates BENCH_N prospects and one dual-channel cadence (not timed).
3. Timed: enrolls them all through the outreach API (bounded concurrency) until both first
   touches (email + SMS) of every journey are recorded in the send ledger as submitted.
4. Timed: starts BENCH_N no-op workflows on the same server and waits for all to complete.
5. Timed: as many workflows of the journey's shape up to its first touch, with activities that
   do nothing (bench/journey_shape.py): `shape/no-op=` is the highest ratio the journey's
   commands allow on that server, `journey/shape=` how much of it the journeys reach.
Prints the rates and, last, `ratio=<journey rate / no-op rate>`. The machines are shared and
noisy: only the ratio of two runs measured side by side means anything. Before it, for each
part, the CPU per item of every stack process and of the benchmark's own (bench/cpu.py), and
`cpu_ratio=<no-op CPU per item / journey CPU per item>`: what the ratio would be if both parts
were bound by the machine's CPU alone. BENCH_PROFILE=1 also
prints, from the journeys' histories, each activity type's queue wait and run time
(bench/journey_profile.py); BENCH_STACK_LOG=<file> keeps the stack's output there.

    BENCH_TEMPORAL=cluster BENCH_POSTGRES_URL=postgresql://... make bench

measures the journeys twice in one run, on the same production-shaped stack (devstack/
cluster_stack.py: every database on that PostgreSQL server, two replicas of each API behind
nginx, two workers per queue): first on the Temporal dev server, then on the real four-process
cluster, and prints `cluster/dev=<cluster rate / dev server rate>`; after each, as many no-op
workflows on that server, and `ratio=<journey rate / no-op rate>` on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client
from temporalio.worker import Worker

from bench.cpu import CpuSplit, local_server
from bench.journey_profile import profile
from bench.journey_shape import Shape
from bench.noop_workflow import NoOp
from bench.worker_process import worker_process
from devstack.cluster_stack import ClusterStack
from devstack.env import isolated_env
from devstack.supervisor import Stack
from shared.auth import API_KEY_HEADER
from shared.contracts.journey import journey_id
from shared.settings import Settings

CONCURRENCY = 32
API_KEY = "bench-key"


async def bounded(n: int, limit: int, job: Callable[[int], Awaitable[object]]) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(i: int) -> None:
        async with sem:
            await job(i)

    await asyncio.gather(*(one(i) for i in range(n)))


def daytime_zone() -> str:
    hour = time.gmtime().tm_hour
    offset = next(o for o in range(-12, 15) if (hour + o) % 24 in (12, 13))
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


async def first_touches(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT count(*) FROM messages WHERE touch_key = 'step-0' AND status IN "
                "('submitted', 'delivered')"
            )
        )
    return int(found or 0)


@dataclass(frozen=True)
class Timed:
    """A part's rate, and the CPU it cost each process."""

    rate: float
    cpu: CpuSplit
    count: int

    def cpu_per_item(self) -> float:
        """Seconds of CPU per item, the stack's and the benchmark's own."""
        return sum(self.cpu.spent.values()) / self.count


async def postgres_pid(url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine: on the production-
    shaped stack it does the databases' work, Temporal's included, and its CPU counts too."""
    engine = create_async_engine(make_url(url).set(drivername="postgresql+asyncpg"))
    try:
        async with engine.connect() as conn:
            backend = int(await conn.scalar(text("SELECT pg_backend_pid()")))
            # while its connection is open: the backend process ends with it
            return local_server(backend, "postgres")
    finally:
        await engine.dispose()


async def cpu_split(stack: Stack, extra: dict[str, int] | None = None) -> CpuSplit:
    """The CPU of the stack's processes, `extra`'s and this one's from now until its stop()."""
    processes: dict[str, int | None] = {
        c.name: c.process.pid if c.process else None for c in stack.children
    }
    processes.update(extra or {})
    if isinstance(stack, ClusterStack):
        processes["postgres"] = await postgres_pid(stack.postgres_url)
    split = CpuSplit.of(processes)
    split.start()
    return split


async def measure_journeys(stack: Stack, n: int) -> Timed:
    headers = {API_KEY_HEADER: API_KEY}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as http:
        pros, out = stack.base_url("prospecting"), stack.base_url("outreach")
        await http.post(f"{pros}/reps", json={"name": "Bench Rep", "email": "rep@example.com"})
        cadence = await http.post(
            f"{out}/cadences",
            json={
                "name": "Bench",
                "steps": [
                    {
                        "channel": "email",
                        "offset_seconds": 0,
                        "subject": "Hi",
                        "body": "Hi {{ first_name }}",
                    },
                    {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}"},
                ],
            },
        )
        cadence.raise_for_status()
        cadence_id = cadence.json()["id"]
        zone, ids = daytime_zone(), [""] * n

        async def create(i: int) -> None:
            r = await http.post(
                f"{pros}/prospects",
                json={
                    "first_name": f"P{i}",
                    "email": f"p{i}-{uuid.uuid4().hex[:6]}@example.com",
                    "phone": f"+1415{5550000 + i:07d}"[:12],
                    "timezone": zone,
                },
            )
            r.raise_for_status()
            ids[i] = r.json()["id"]

        made = time.perf_counter()
        await bounded(n, CONCURRENCY, create)
        made = time.perf_counter() - made
        # not part of the ratio: the creations' own rate (on PostgreSQL they take a lock each)
        print(f"created {n} prospects in {made:.2f}s = {n / made:.1f}/s", flush=True)

        ledger = create_async_engine(stack.settings.database_url("outreach"))
        cpu = await cpu_split(stack)
        started = time.perf_counter()

        async def enroll(i: int) -> None:
            r = await http.post(
                f"{out}/enrollments", json={"prospect_id": ids[i], "cadence_id": cadence_id}
            )
            r.raise_for_status()

        await bounded(n, CONCURRENCY, enroll)
        enrolled = time.perf_counter() - started
        while await first_touches(ledger) < 2 * n:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu.stop()
        await ledger.dispose()
    rate = n / elapsed
    print(
        f"journeys: {n} enrolled in {enrolled:.2f}s, {2 * n} first touches after "
        f"{elapsed:.2f}s = {rate:.1f}/s"
    )
    print(cpu.line("journey", n, elapsed))
    if os.environ.get("BENCH_PROFILE"):
        ids = [journey_id(i) for i in ids]
        for line in await profile(stack.settings.temporal_address, ids):
            print(line)
    return Timed(rate, cpu, n)


async def timed_workflows(
    stack: Stack,
    n: int,
    label: str,
    what: str,
    run: Callable[[int], Awaitable[object]],
    workers: dict[str, int] | None = None,
) -> Timed:
    """n workflows run by `run(i)`, 100 at a time, timed with the CPU of the stack and of
    `workers` (their worker processes, when not this one); prints `<label> n workflows ...`."""
    cpu = await cpu_split(stack, workers)
    started = time.perf_counter()
    # bounded: thousands of concurrent result waits hit the server's poller limit
    await bounded(n, 100, run)
    elapsed = time.perf_counter() - started
    cpu.stop()
    rate = n / elapsed
    print(f"{label} {n} workflows completed in {elapsed:.2f}s = {rate:.1f}/s")
    print(cpu.line(what, n, elapsed))
    return Timed(rate, cpu, n)


async def measure_noop(stack: Stack, n: int) -> Timed:
    client = await Client.connect(stack.settings.temporal_address)
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[NoOp]):
        return await timed_workflows(
            stack,
            n,
            "no-op:   ",
            "no-op",
            lambda i: client.execute_workflow(NoOp.run, id=f"noop-{queue}-{i}", task_queue=queue),
        )


@contextlib.contextmanager
def shape_workers(settings: Settings, queue: str) -> Iterator[dict[str, int]]:
    """The journey shape's two worker processes (bench/journey_shape.py), by name, once both
    poll; tuned with the stack's settings as its workers are."""
    args = (
        settings.temporal_address,
        queue,
        str(settings.workflow_task_slots),
        str(settings.journey_cache_size),
    )
    with (
        worker_process("bench.journey_shape", "workflows", *args) as workflows,
        worker_process("bench.journey_shape", "activities", *args) as activities,
    ):
        yield {"shape-workflows": workflows.pid, "shape-activities": activities.pid}


async def measure_shape(stack: Stack, n: int) -> Timed:
    """n journeys' commands up to the first touch, with nothing behind them (journey_shape)."""
    client = await Client.connect(stack.settings.temporal_address)
    queue = f"bench-shape-{uuid.uuid4().hex[:6]}"
    activities = os.environ.get("BENCH_SHAPE_ACTIVITIES", "touch,stage").split(",")
    with shape_workers(stack.settings, queue) as workers:
        return await timed_workflows(
            stack,
            n,
            f"shape ({'+'.join(activities)}):",
            "shape",
            lambda i: client.execute_workflow(
                Shape.run, args=[queue, activities], id=f"shape-{queue}-{i}", task_queue=queue
            ),
            workers,
        )


def report(journeys: Timed, noop: Timed, shape: Timed) -> None:
    """The parts side by side: the highest ratio the journey's commands allow (`shape/no-op`)
    and how far the journeys are from it, then `ratio=` last."""
    print(
        f"shape/no-op={shape.rate / noop.rate:.3f} journey/shape={journeys.rate / shape.rate:.3f}"
    )
    print(f"cpu_ratio={noop.cpu_per_item() / journeys.cpu_per_item():.3f}")
    print(f"ratio={journeys.rate / noop.rate:.3f}", flush=True)


def bench_env(tmp: str) -> dict[str, str]:
    env = isolated_env(Path(tmp))
    env["CLOSEFLOW_API_KEYS"] = API_KEY
    env["CLOSEFLOW_LOG_LEVEL"] = "WARNING"
    return env


def stack_log(tmp: str, suffix: str = "") -> Path:
    """The stack's output: in the run's folder, or where BENCH_STACK_LOG says (kept)."""
    kept = os.environ.get("BENCH_STACK_LOG")
    name = f"stack{'-' + suffix if suffix else ''}.log"
    return Path(kept + (f".{suffix}" if suffix else "")) if kept else Path(tmp) / name


@contextlib.contextmanager
def bench_stack(prefix: str = "closeflow-bench-") -> Iterator[Stack]:
    """The dev stack on a throwaway folder, its output in stack_log: every benchmark's stack."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        open(stack_log(tmp), "w") as log,
        Stack(env=bench_env(tmp), output=log) as stack,
    ):
        yield stack


def on_dev_stack(n: int) -> None:
    with bench_stack() as stack:
        journeys = asyncio.run(measure_journeys(stack, n))
        noop = asyncio.run(measure_noop(stack, n))
        shape = asyncio.run(measure_shape(stack, n))
    report(journeys, noop, shape)


def on_cluster_and_dev_server(n: int, postgres_url: str) -> None:
    rates: dict[str, float] = {}
    for name, dev_server in (("dev server", True), ("cluster", False)):
        prefix = f"bench_{uuid.uuid4().hex[:8]}"
        with (
            tempfile.TemporaryDirectory(prefix="closeflow-bench-") as tmp,
            open(stack_log(tmp, name.replace(" ", "-")), "w") as log,
            ClusterStack(
                postgres_url,
                prefix,
                env=bench_env(tmp),
                fresh=True,
                dev_server=dev_server,
                output=log,
                ready_timeout=300.0,
            ) as stack,
        ):
            print(f"-- {name}", flush=True)
            journeys = asyncio.run(measure_journeys(stack, n))
            rates[name] = journeys.rate
            noop = asyncio.run(measure_noop(stack, n))
            report(journeys, noop, asyncio.run(measure_shape(stack, n)))
    print(f"cluster/dev={rates['cluster'] / rates['dev server']:.3f}")


def main() -> int:
    n = int(os.environ.get("BENCH_N", "1000"))
    if os.environ.get("BENCH_TEMPORAL", "dev") == "cluster":
        url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("CLOSEFLOW_TEST_POSTGRES_URL")
        if not url:
            print("BENCH_TEMPORAL=cluster needs BENCH_POSTGRES_URL", file=sys.stderr)
            return 2
        on_cluster_and_dev_server(n, url)
    else:
        on_dev_stack(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
