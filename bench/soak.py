"""Soak: a steady enrolment and webhook rate on the dev stack for SOAK_MINUTES (default 30),
sampling memory, relay backlog and latency, and reporting their growth over the run.

    make soak       SOAK_MINUTES=30 SOAK_ENROL_RATE=1 SOAK_WEBHOOK_RATE=10 SOAK_SAMPLE_SECONDS=30
                    SOAK_WARMUP=0

The stack is the whole dev stack (as `make run` starts it) on a fresh data folder. Each second
it creates and enrols SOAK_ENROL_RATE prospects on a cadence whose first touch (an email and a
text, through the SMTP and Twilio sandboxes, whose status callbacks come back as webhooks) is
immediate, and posts SOAK_WEBHOOK_RATE signed Twilio status callbacks to outreach. Every
SOAK_SAMPLE_SECONDS it samples the resident memory of every process of the stack, the relay
backlogs (outreach's inbox events not yet delivered to their journey, prospecting's outbox
rows not yet sent) and the enrolment and webhook latencies of that window. It prints one row per
sample and, last, the growth from the first third of the run to the last third.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.journeys import bench_stack, bounded
from bench.stackload import Load, pct, process_rss
from devstack.supervisor import Stack
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request

STATUS_PATH = "/webhooks/twilio/status"
PROCESSES = (
    "worker",
    "activity-worker",
    "prospecting",
    "outreach",
    "deals",
    "referrals",
    "temporal",
)


@dataclass
class Window:
    enrolments: list[float] = field(default_factory=list)
    webhooks: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)  # what went wrong, how often

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


@dataclass
class Sample:
    minute: float
    rss: dict[str, float]
    inbox_backlog: int
    outbox_backlog: int
    first_touches: int
    window: Window


def count(db: str, sql: str) -> int:
    """A count from a service's SQLite database, read-only (the stack keeps writing)."""
    path = db.split("///", 1)[1]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


def sample(stack: Stack, minute: float, window: Window) -> Sample:
    s = stack.settings
    return Sample(
        minute,
        {name: process_rss(stack, name) for name in PROCESSES},
        count(
            s.database_url("outreach"),
            "SELECT count(*) FROM inbox_events WHERE delivery = 'pending'",
        ),
        count(
            s.database_url("prospecting"), "SELECT count(*) FROM outbox WHERE status = 'pending'"
        ),
        first_touches(stack),
        window,
    )


async def at_rate(rate: float, until: float, one: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start `one()` `rate` times a second until `until` (monotonic), without waiting for each
    (a steady arrival rate, not a closed loop); then wait for those still running."""
    tasks: set[asyncio.Task[None]] = set()
    while time.monotonic() < until:
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)


async def enrolments(load: Load, rate: float, until: float, window: list[Window]) -> None:
    async def one() -> None:
        try:
            window[0].enrolments.append(await load.enroll_new())
        except httpx.HTTPStatusError as err:
            window[0].failed[f"enrolment {err.response.status_code}"] += 1
        except Exception as err:
            window[0].failed[f"enrolment {type(err).__name__}"] += 1

    await at_rate(rate, until, one)


async def webhooks(load: Load, rate: float, until: float, window: list[Window]) -> None:
    s = load.stack.settings
    token = s.twilio_auth_token.get_secret_value()
    signed_url = s.outreach_public_url.rstrip("/") + STATUS_PATH
    target = load.stack.base_url("outreach") + STATUS_PATH

    async def one() -> None:
        sid = "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": s.twilio_account_sid,
            "MessageSid": sid,
            "MessageStatus": "delivered",
        }
        started = time.perf_counter()
        try:
            r = await load.http.post(
                target,
                content=urlencode(params).encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    SIGNATURE_HEADER: sign_twilio_request(token, signed_url, params),
                },
            )
        except httpx.HTTPError as err:
            window[0].failed[f"webhook {type(err).__name__}"] += 1
            return
        if r.status_code == 204:
            window[0].webhooks.append(time.perf_counter() - started)
        else:
            window[0].failed[f"webhook {r.status_code}"] += 1

    await at_rate(rate, until, one)


WARMUP_CONCURRENCY = 32
# the warm-up gives up when no first touch is added for this long (a stuck stack)
WARMUP_STALL_SECONDS = 300


def first_touches(stack: Stack) -> int:
    return count(
        stack.settings.database_url("outreach"),
        "SELECT count(*) FROM messages WHERE status IN ('submitted', 'delivered')",
    )


async def warm_up(load: Load, n: int) -> None:
    """Enrol `n` journeys, then wait until their email and text are sent."""
    started = time.monotonic()

    await bounded(n, WARMUP_CONCURRENCY, lambda _: load.enroll_new())
    enrolled = time.monotonic() - started
    sent, progress = 0, time.monotonic()
    while sent < 2 * n:
        await asyncio.sleep(5)
        now = await asyncio.to_thread(first_touches, load.stack)
        if now > sent:
            sent, progress = now, time.monotonic()
        elif time.monotonic() - progress > WARMUP_STALL_SECONDS:
            raise RuntimeError(f"warm-up stalled: {sent} of {2 * n} first touches sent")
    print(
        f"warm-up: {n} journeys enrolled in {enrolled:.0f}s, their {2 * n} first touches sent "
        f"after {time.monotonic() - started:.0f}s",
        flush=True,
    )


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


async def soak(
    stack: Stack, minutes: float, enrol_rate: float, webhook_rate: float, every: float, warm: int
) -> None:
    async with Load.client(64) as http:
        load = Load(stack, http)
        await load.prepare(0)
        if warm:
            await warm_up(load, warm)
        started = time.monotonic()
        until = started + minutes * 60
        window = [Window()]
        load_tasks = [
            asyncio.create_task(enrolments(load, enrol_rate, until, window)),
            asyncio.create_task(webhooks(load, webhook_rate, until, window)),
        ]
        samples: list[Sample] = []
        print(
            "minute | worker MB | activity-worker MB | outreach MB | prospecting MB | temporal MB | "
            "inbox backlog | outbox backlog | first touches sent | enrol p50/p99 ms | "
            "webhook p50/p99 ms | failures",
            flush=True,
        )
        while time.monotonic() < until:
            await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))
            current, window[0] = window[0], Window()
            row = await asyncio.to_thread(sample, stack, (time.monotonic() - started) / 60, current)
            samples.append(row)
            print(
                f"{row.minute:6.1f} | {row.rss['worker']:9.0f} | {row.rss['activity-worker']:18.0f} | "
                f"{row.rss['outreach']:11.0f} | {row.rss['prospecting']:14.0f} | {row.rss['temporal']:11.0f} | "
                f"{row.inbox_backlog:13} | {row.outbox_backlog:14} | {row.first_touches:18} | "
                f"{pct(current.enrolments, 0.5):.0f}/{pct(current.enrolments, 0.99):.0f} | "
                f"{pct(current.webhooks, 0.5):.0f}/{pct(current.webhooks, 0.99):.0f} | {current.failures}",
                flush=True,
            )
        await asyncio.gather(*load_tasks)
    report(samples, minutes, enrol_rate, webhook_rate)


def report(samples: list[Sample], minutes: float, enrol_rate: float, webhook_rate: float) -> None:
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    print(
        f"\nsoak: {minutes:g} min, {enrol_rate:g} enrolments/s, {webhook_rate:g} webhooks/s, "
        f"{len(samples)} samples; growth from the first third to the last third of the run:"
    )
    for name in PROCESSES:
        a, b = mean([s.rss[name] for s in first]), mean([s.rss[name] for s in last])
        print(f"  {name:16} RSS {a:7.0f} MB -> {b:7.0f} MB ({(b - a) / a * 100 if a else 0:+.1f}%)")
    backlogs: tuple[tuple[str, Callable[[Sample], float]], ...] = (
        ("inbox backlog", lambda s: float(s.inbox_backlog)),
        ("outbox backlog", lambda s: float(s.outbox_backlog)),
    )
    for label, get in backlogs:
        print(
            f"  {label:16} {mean([get(s) for s in first]):7.1f} -> {mean([get(s) for s in last]):7.1f}"
        )
    latencies: tuple[tuple[str, Callable[[Sample], list[float]]], ...] = (
        ("enrolment", lambda s: s.window.enrolments),
        ("webhook", lambda s: s.window.webhooks),
    )
    for label, values in latencies:
        early = [v for s in first for v in values(s)]
        late = [v for s in last for v in values(s)]
        print(
            f"  {label:16} p50 {pct(early, 0.5):.0f} -> {pct(late, 0.5):.0f} ms, "
            f"p99 {pct(early, 0.99):.0f} -> {pct(late, 0.99):.0f} ms"
        )
    failed: Counter[str] = Counter()
    for s in samples:
        failed.update(s.window.failed)
    print(f"  failures         {sum(failed.values())} {dict(failed)}")


def main() -> int:
    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    enrol_rate = float(os.environ.get("SOAK_ENROL_RATE", "1"))
    webhook_rate = float(os.environ.get("SOAK_WEBHOOK_RATE", "10"))
    every = float(os.environ.get("SOAK_SAMPLE_SECONDS", "30"))
    warm = int(os.environ.get("SOAK_WARMUP", "0"))
    with bench_stack("closeflow-soak-") as stack:
        asyncio.run(soak(stack, minutes, enrol_rate, webhook_rate, every, warm))
    return 0


if __name__ == "__main__":
    sys.exit(main())
