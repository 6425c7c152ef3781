"""Journeys in flight: the journeys worker's memory with 1,000 and with 10,000 journeys waiting,
enrolment latency, and signal latency, side by side in one run on the dev stack.

    make bench-inflight        (BENCH_INFLIGHT_LEVELS=1000,10000 by default)

1. Starts the whole stack (as `make run` does) on a fresh data folder and free ports; one
   cadence whose first touch is BENCH_INFLIGHT_WAIT_DAYS (default 30) days after enrolment, so
   every journey is waiting on its timer (and on signals) once started; with
   BENCH_INFLIGHT_HTML_BYTES, its email has an HTML part of about that many bytes (a journey
   carries its cadence's templates: what they cost the worker per cached journey, unless
   CLOSEFLOW_JOURNEY_TEMPLATES=stored, which the stack's processes get from this environment;
   set inline or stored: auto, the default, may start the first journeys inline, before the
   stack's workers have polled).
2. For each level: creates and enrols prospects through the APIs until that many journeys are
   running (each enrolment request timed), waits until the journeys worker is idle, then reads
   the resident memory of the worker and of the Temporal dev server (whose history cache,
   CLOSEFLOW_TEMPORAL_CACHE_SIZE journeys, holds them too) and times BENCH_INFLIGHT_SIGNALS
   signals: a `pause` sent to a random running journey, until its state query says paused (a
   journey no longer in the worker's sticky cache is replayed from its history first); and the
   size of the first journey's history, as Temporal stores it, before any signal.
3. The baseline, on the same server: as many workflows that hold nothing (a 30-day timer) at
   each level, on a worker process with only the SDK and the same cache size
   (bench/inflight_baseline.py); its memory read the same way, and `sdk_rss_ratio=`.
4. Prints one row per level and, last, `rss_ratio=<RSS at the last level / RSS at the first>`:
   a bounded sticky cache (CLOSEFLOW_JOURNEY_CACHE_SIZE workflows) keeps it near 1, and
   `sdk_rss_ratio` says how near the SDK's own worker stays.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from pathlib import Path

from temporalio.client import Client

from bench.inflight_baseline import Waiting
from bench.journeys import bench_stack, bounded
from bench.stackload import DAY, Load, pct, process_rss, rss_mb
from bench.worker_process import worker_process
from devstack.env import dev_master_key, settings_from_env
from devstack.supervisor import Stack
from shared.contracts.journey import PauseJourney, journey_id
from shared.contracts.names import Query, Sig
from shared.temporal import connect

CONCURRENCY = 16


async def idle(pid: int, quiet_seconds: float = 5.0) -> None:
    """Until the process used under 5% of a core for `quiet_seconds` in a row."""
    stat = Path(f"/proc/{pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    quiet_since, last, last_at = time.monotonic(), cpu(), time.monotonic()
    while time.monotonic() - quiet_since < quiet_seconds:
        await asyncio.sleep(1.0)
        now, used = time.monotonic(), cpu()
        if (used - last) / (now - last_at) > 0.05:
            quiet_since = now
        last, last_at = used, now


async def measure(
    stack: Stack, levels: list[int], signals: int, wait_days: int, html_bytes: int
) -> None:
    # the children's settings: the dev stack gives them its payload key
    key = dev_master_key(stack.settings.data_dir)
    settings = settings_from_env({**stack.env_overrides, "CLOSEFLOW_PAYLOAD_MASTER_KEYS": key})
    client = await connect(settings)
    print(
        f"journey templates: {settings.journey_templates}; the cadence's HTML part: "
        f"{html_bytes} bytes",
        flush=True,
    )
    rows = []
    async with Load.client(CONCURRENCY) as http:
        load = Load(stack, http)
        await load.prepare(wait_days * DAY, html_bytes)
        enrolled: list[str] = []
        for level in levels:
            fresh = await load.prospects(level - len(enrolled), CONCURRENCY)
            latencies: list[float] = []
            started = time.perf_counter()
            sem = asyncio.Semaphore(CONCURRENCY)

            async def enroll(
                pid: str, sem: asyncio.Semaphore = sem, out: list[float] = latencies
            ) -> None:
                async with sem:
                    out.append(await load.enroll(pid))

            await asyncio.gather(*(enroll(pid) for pid in fresh))
            enrol_seconds = time.perf_counter() - started
            enrolled += fresh
            query = 'WorkflowType="ProspectJourney" AND ExecutionStatus="Running"'
            while (running := (await client.count_workflows(query)).count) < len(enrolled):
                await asyncio.sleep(2)
            worker = stack.child("worker").process
            assert worker is not None
            await idle(worker.pid)
            rss = rss_mb(worker.pid)
            server_rss = process_rss(stack, "temporal")
            # what Temporal stores of one waiting journey (its payloads as the codec wrote them)
            history = await client.get_workflow_handle(journey_id(enrolled[0])).fetch_history()
            history_kb = sum(event.ByteSize() for event in history.events) / 1024
            signal_latencies: list[float] = []
            for pid in random.sample(enrolled, min(signals, len(enrolled))):
                handle = client.get_workflow_handle(journey_id(pid))
                began = time.perf_counter()
                await handle.signal(Sig.PAUSE, PauseJourney(reason="bench"))
                while not (await handle.query(Query.STATE))["paused"]:
                    await asyncio.sleep(0.01)
                signal_latencies.append(time.perf_counter() - began)
            rows.append((level, running, rss, latencies, enrol_seconds, signal_latencies))
            print(
                f"{level:>6} journeys waiting ({running} running): journeys worker RSS {rss:.0f} MB "
                f"({rss * 1024 / level:.1f} KB per journey held), Temporal server RSS "
                f"{server_rss:.0f} MB, a journey's history {history_kb:.1f} KB; enrolment of "
                f"{len(fresh)} in "
                f"{enrol_seconds:.1f}s, p50 {pct(latencies, 0.5):.0f} ms, p99 "
                f"{pct(latencies, 0.99):.0f} ms; signal until seen ({len(signal_latencies)}): p50 "
                f"{pct(signal_latencies, 0.5):.0f} ms, p99 {pct(signal_latencies, 0.99):.0f} ms",
                flush=True,
            )
    baseline = await sdk_baseline(stack, levels, settings.journey_cache_size)
    print(f"sdk_rss_ratio={baseline[-1] / baseline[0]:.3f}")
    print(f"rss_ratio={rows[-1][2] / rows[0][2]:.3f}")


async def sdk_baseline(stack: Stack, levels: list[int], cache: int) -> list[float]:
    """The SDK's worker alone at the same levels (bench/inflight_baseline.py): its RSS at each."""
    queue = f"bench-waiting-{uuid.uuid4().hex[:6]}"
    address = stack.settings.temporal_address
    client = await Client.connect(address)  # the SDK's own: no payload codec, as its worker
    readings = []
    with worker_process("bench.inflight_baseline", address, queue, str(cache)) as worker:
        started = 0
        for level in levels:

            async def start(i: int, first: int = started) -> None:
                n = first + i
                await client.start_workflow(
                    Waiting.run, f"w{n}", id=f"{queue}-{n}", task_queue=queue
                )

            await bounded(level - started, 32, start)
            started = level
            await idle(worker.pid)
            readings.append(rss_mb(worker.pid))
            print(
                f"{level:>6} waiting workflows that hold nothing: the SDK's worker alone (cache "
                f"{cache}) RSS {readings[-1]:.0f} MB",
                flush=True,
            )
    return readings


def main() -> int:
    levels = [int(x) for x in os.environ.get("BENCH_INFLIGHT_LEVELS", "1000,10000").split(",")]
    signals = int(os.environ.get("BENCH_INFLIGHT_SIGNALS", "200"))
    wait_days = int(os.environ.get("BENCH_INFLIGHT_WAIT_DAYS", "30"))
    html_bytes = int(os.environ.get("BENCH_INFLIGHT_HTML_BYTES", "0"))
    with bench_stack() as stack:
        asyncio.run(measure(stack, levels, signals, wait_days, html_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
