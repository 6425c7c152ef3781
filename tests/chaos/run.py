"""`make chaos`: journeys on the Temporal cluster while random faults hit it, then the table.

    make chaos                         200 journeys, 20 faults (CHAOS_JOURNEYS, CHAOS_FAULTS)
    CHAOS_SEED=1234 make chaos         replays the same draw of journeys and faults
    make chaos-ci                      the bounded version .ci/run runs (40 journeys, 6 faults)

1. Starts a throwaway PostgreSQL server of its own (initdb in a temporary folder, its own port:
   the run restarts it, so it is never a shared one) and, on it, the cluster stack of make
   test-cluster: Temporal's four server processes, two replicas of each API behind nginx, two
   workers per task queue, the mailbox and the Twilio sandbox. Everything on 127.0.0.1.
2. Creates the prospects, then enrols them evenly over the enrolment window in a cadence of five
   sends over 24 s; each prospect does what its kind says (tests/chaos/plan.py) once the first
   touch reached them, through the sandboxes' signed webhooks.
3. Meanwhile, at the plan's moments: kill -9 of a worker, of an API replica, of Temporal's
   history service (the supervisor starts each again), a PostgreSQL restart, a sandbox answering
   errors or holding every call for a few seconds. Each is written down with when it began and
   when it was over (the process ready again).
4. Waits until every journey's workflow has closed (or CHAOS_MINUTES have passed since the first
   enrolment), then counts (tests/chaos/tally.py) and prints the table, and for anything wrong the
   fault that was active then. Exits 1 unless every bad column is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from devstack.cluster_stack import WORKER_QUEUES, ClusterStack
from devstack.postgres import ThrowawayPostgres
from devstack.supervisor import StackError
from services.outreach.send_lease import lease_end
from shared.settings import SERVICES, Settings
from tests.chaos.plan import Fault, Happened, Plan, Timeline
from tests.chaos.tally import (
    Observed,
    Report,
    judge,
    judge_notifications,
    started_before,
    table,
)
from tests.chaos.traffic import (
    NURTURE_AFTER_SECONDS,
    STEPS,
    Journey,
    Sandboxes,
    Traffic,
    Unavailable,
    retried,
)
from tests.support.cluster import Sent, cluster_stack, kill, restarted, tended
from tests.support.dev_stack import ARTIFACTS, urls_of
from tests.support.settings import AUTH
from workflows.journey.steps import ACTIVITY_TIMEOUT

# the providers' timeouts, short: a sandbox that hangs longer than this leaves the send's outcome
# unknown, which is what the send lease is for. The wait for the answer to an email's end keeps
# its production default (CLOSEFLOW_SMTP_DATA_TIMEOUT_SECONDS): the mailbox's hangs there are
# waited out, as they would be in production
STACK_ENV = {"CLOSEFLOW_SMTP_TIMEOUT_SECONDS": "5", "CLOSEFLOW_TWILIO_TIMEOUT_SECONDS": "5"}
FIRST_TOUCH_TIMEOUT = 240.0
# How long a journey may legitimately still run after the traffic: a send whose attempt died
# while the provider held the message (a worker killed during an SMTP hang) is not retried before
# its lease ends (send_lease.lease_end: the activity's deadline plus the whole SMTP exchange's
# deadline, a reply's timeout and the wait for the answer to the message's end), then the
# cadence's later steps and its nurture.
_T0 = datetime(2026, 1, 1, tzinfo=UTC)  # any instant: only the lease's length counts
_LEASE_ENDS = lease_end(
    _T0 + ACTIVITY_TIMEOUT,
    float(STACK_ENV["CLOSEFLOW_SMTP_TIMEOUT_SECONDS"])
    + Settings.model_fields["smtp_data_timeout_seconds"].default,
)
assert _LEASE_ENDS is not None
SETTLE_SECONDS = (
    (_LEASE_ENDS - _T0).total_seconds()
    + max(step["offset_seconds"] for step in STEPS)
    + NURTURE_AFTER_SECONDS
    + 30.0  # task queues, the history service's restart
)
START_ATTEMPTS = 2


@dataclass(frozen=True)
class Options:
    seed: int
    journeys: int
    faults: int
    minutes: float

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Options:
        seed = int(env.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
        return cls(
            seed=seed,
            journeys=int(env.get("CHAOS_JOURNEYS") or 200),
            faults=int(env.get("CHAOS_FAULTS") or 20),
            minutes=float(env.get("CHAOS_MINUTES") or 12),
        )

    def windows(self) -> tuple[float, float]:
        """(enrolment window, fault window) in seconds: enrolments about two a second and over
        at least 20 s; the faults over the enrolments and the steps of the last journeys."""
        enrol = max(20.0, self.journeys / 2.0)
        return enrol, enrol + 30.0


class Faults:
    """Injects the plan's faults at their moments and keeps the timeline."""

    def __init__(self, stack: ClusterStack, pg: ThrowawayPostgres, http: httpx.AsyncClient):
        self.stack = stack
        self.pg = pg
        self.http = http
        self.timeline = Timeline()

    async def run(self, faults: list[Fault], started: float) -> None:
        tasks = []
        for fault in faults:
            await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
            happened = self.timeline.add(fault, datetime.now(UTC))
            print(f"chaos: +{fault.at:5.1f}s {fault.describe()}", flush=True)
            tasks.append(asyncio.create_task(self.inject(happened)))
        await asyncio.gather(*tasks)

    async def inject(self, h: Happened) -> None:
        fault = h.fault
        try:
            if fault.kind.startswith("kill-"):
                await self._kill(fault.target)
            elif fault.kind == "restart-postgres":
                away = await asyncio.to_thread(self.pg.restart)
                h.note = f"(down {away:.1f}s)"
            else:
                await self._outage(fault)
        except Exception as exc:  # a fault that could not be made is reported
            h.note = f"NOT INJECTED: {type(exc).__name__}: {exc}"
            h.ended = h.began
            return
        h.ended = datetime.now(UTC)

    async def _kill(self, name: str) -> None:
        child = self.stack.child(name)
        # a process still starting again after an earlier fault: wait for it, then kill it
        await _until(lambda: child.running() and child.is_ready, f"{name} ready", 120)
        old = {name: kill(self.stack, name, signal.SIGKILL)}
        await _until(lambda: restarted(self.stack, old), f"{name} restarted", 180)

    async def _outage(self, fault: Fault) -> None:
        s = self.stack.settings
        port = s.mailbox_http_port if fault.target == "mailbox" else s.twilio_sandbox_port
        mode = fault.kind.split("-", 1)[1]
        body = {"mode": mode, "seconds": fault.seconds}
        response = await self.http.post(f"http://127.0.0.1:{port}/sandbox/faults", json=body)
        response.raise_for_status()
        await asyncio.sleep(fault.seconds)


async def _until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def closed(
    client: Client, journeys: list[Journey], deadline: float
) -> tuple[dict[str, str], dict[str, datetime]]:
    """Each journey's workflow status and close time, once all have closed or the deadline
    passed."""
    status: dict[str, str] = {}
    close_times: dict[str, datetime] = {}
    while True:
        for j in journeys:
            if not j.journey_id or status.get(j.journey_id, "RUNNING") != "RUNNING":
                continue
            with contextlib.suppress(RPCError):
                described = await client.get_workflow_handle(j.journey_id).describe()
                found = described.status or WorkflowExecutionStatus.RUNNING
                status[j.journey_id] = found.name
                if described.close_time is not None:
                    close_times[j.journey_id] = described.close_time
        running = [j for j in journeys if j.journey_id and status.get(j.journey_id) == "RUNNING"]
        unseen = [j for j in journeys if j.journey_id and j.journey_id not in status]
        if (not running and not unseen) or time.monotonic() > deadline:
            return status, close_times
        await asyncio.sleep(3)


async def observe(
    http: httpx.AsyncClient,
    traffic: Traffic,
    j: Journey,
    status: dict[str, str],
    close_times: dict[str, datetime],
) -> Observed:
    u = traffic.urls

    async def get(url: str, **params: Any) -> Any:
        response = await retried(lambda: http.get(url, params=params), what=url)
        return response.json()

    stages = await get(f"{u.prospecting}/prospects/{j.pid}/stages")
    ledger = await get(f"{u.outreach}/prospects/{j.pid}/messages")
    events = await get(f"{u.outreach}/inbox-events", prospect_id=j.pid, limit=500)
    try:
        consent = await get(f"{u.outreach}/consent/{j.pid}")
    except Unavailable:
        consent = {}
    sb = traffic.sandboxes
    sent = Sent(ledger, sb.emails.get(j.email.lower(), []), sb.texts.get(j.phone, []))
    return Observed(
        j,
        status.get(j.journey_id, "UNKNOWN"),
        stages,
        sent,
        events,
        consent,
        close_times.get(j.journey_id),
    )


def keep_traces(report: Report, observed: list[Observed]) -> None:
    """What the journeys with something wrong left behind, for a closer look after the run."""
    wrong = {a.journey.index for a in report.anomalies if a.journey is not None}
    traces = [
        {
            "journey": dataclasses.asdict(o.journey),
            "workflow": o.status,
            "stages": o.stages,
            "ledger": o.sent.ledger,
            "emails": [{k: m.get(k) for k in ("message_id", "subject", "received_at")}
                       for m in o.sent.emails],
            "texts": o.sent.texts,
            "events": o.events,
            "consent": o.consent,
        }
        for o in observed
        if o.journey.index in wrong
    ]  # fmt: skip
    (ARTIFACTS / "chaos-anomalies.json").write_text(json.dumps(traces, indent=1, default=str))


async def chaos(stack: ClusterStack, pg: ThrowawayPostgres, options: Options) -> Report:
    urls = urls_of(stack)
    enrol_seconds, fault_seconds = options.windows()
    history = stack.on_cluster  # the dev server has no history service of its own to kill
    workers = [c.name for q in WORKER_QUEUES for c in stack.workers(q)]
    apis = [c.name for s in SERVICES for c in stack.api_replicas(s)]
    plan = Plan.make(
        options.seed,
        options.journeys,
        options.faults,
        enrol_seconds=enrol_seconds,
        fault_seconds=fault_seconds,
        workers=workers,
        apis=apis,
        history=history,
    )
    limits = httpx.Limits(max_connections=64)
    async with (
        tended(stack),
        httpx.AsyncClient(headers=AUTH, timeout=30.0, limits=limits) as http,
    ):
        sandboxes = Sandboxes(http, urls)
        traffic = Traffic(http, urls, stack.settings.twilio_from_number, sandboxes)
        # the sandbox's own STOP handling would hide a text closeflow sent after an opt-out
        await http.post(f"{urls.twilio}/sandbox/opt-out-enforcement", json={"enforce": False})
        journeys = await traffic.setup(plan.kinds, uuid.uuid4().hex[:6])
        print(f"chaos: {len(journeys)} prospects made; traffic and faults start", flush=True)
        watcher = asyncio.create_task(sandboxes.watch())
        faults = Faults(stack, pg, http)
        started = time.monotonic()
        faults.timeline.started = datetime.now(UTC)
        spacing = enrol_seconds / max(1, len(journeys))

        async def journey(j: Journey) -> None:
            await asyncio.sleep(j.index * spacing)
            await traffic.drive(j, FIRST_TOUCH_TIMEOUT)

        await asyncio.gather(faults.run(plan.faults, started), *(journey(j) for j in journeys))
        print("chaos: faults over; waiting for the journeys to close", flush=True)
        client = await Client.connect(
            stack.settings.temporal_address, namespace=stack.settings.temporal_namespace
        )
        # the traffic's bound, but never less than a late send needs to finish its journey
        deadline = max(started + options.minutes * 60, time.monotonic() + SETTLE_SECONDS)
        status, close_times = await closed(client, journeys, deadline)
        await asyncio.sleep(3)  # the last status callbacks
        await sandboxes.refresh()
        watcher.cancel()
        report = Report()
        started_before(report, journeys)
        observed = [await observe(http, traffic, j, status, close_times) for j in journeys]
        for o in observed:
            judge(report, o)
        judge_notifications(report, sandboxes.emails.get(traffic.notify_address, []))
        keep_traces(report, observed)
    print(table(report, faults.timeline, options.seed), flush=True)
    if not report.clean:
        print(f"\ntheir traces: {ARTIFACTS / 'chaos-anomalies.json'}", flush=True)
    return report


def main() -> int:
    options = Options.from_env(dict(os.environ))
    print(
        f"chaos: seed {options.seed}, {options.journeys} journeys, {options.faults} faults, "
        f"at most {options.minutes:g} minutes of traffic (CHAOS_SEED={options.seed} replays)",
        flush=True,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with ThrowawayPostgres() as pg:
        for attempt in range(1, START_ATTEMPTS + 1):
            data_dir = Path(tempfile.mkdtemp(prefix="closeflow-chaos-"))
            try:
                report = on_stack(pg, data_dir, options)
            except StackError as exc:
                # the ports were free when drawn; on a machine shared with other people's
                # stacks one may be taken before a process binds it: a new draw, once
                if "address already in use" not in str(exc) or attempt == START_ATTEMPTS:
                    raise
                print(f"chaos: the stack did not start ({exc}); again on new ports", flush=True)
            else:
                return 0 if report.clean else 1
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
    raise AssertionError("unreachable")


def on_stack(pg: ThrowawayPostgres, data_dir: Path, options: Options) -> Report:
    with (
        open(ARTIFACTS / "chaos-stack.log", "w") as log,
        cluster_stack(pg.url, "chaos", data_dir, log, env=STACK_ENV) as stack,
    ):
        print(f"chaos: stack up on PostgreSQL port {pg.port} (its log: {log.name})", flush=True)
        return asyncio.run(chaos(stack, pg, options))


if __name__ == "__main__":
    sys.exit(main())
