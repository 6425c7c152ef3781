"""The exactly-once rig: outreach's real send activity failed, or its worker process killed, at
the moments that matter for a send, and what reached the SMTP server, the Twilio sandbox and the
ledger counted afterwards (tests/outreach/test_exactly_once.py)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import workflow
from temporalio.client import WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from devstack.sandbox.mailbox import StoredMessage
from services.outreach import models
from services.outreach.activities import SendFaults, activities_for, close_activities
from shared.contracts.journey import Contact, TouchRequest, TouchResult, journey_id
from shared.contracts.names import Act
from shared.db import create_engine, session_factory
from shared.settings import Settings
from tests.support.faults import OnceFault
from tests.support.fixtures import Ground
from tests.support.forks import Forked, Forks
from tests.support.sandboxes import EMAIL, SMS, Sandboxes, sandboxes, touch_request
from tests.support.scenarios import daytime_zone, random_phone
from tests.support.serve import HTTP_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
FAULT_WORKER = "tests.support.faults"  # the module the killed workers run
# Short, so a killed worker's activity is handed out again quickly; long enough for one send.
ATTEMPT_TIMEOUT = timedelta(seconds=3)
# Settings the worker subprocess needs, passed as CLOSEFLOW_* variables.
CHILD_SETTINGS = (
    "environment",
    "data_dir",
    "outreach_database_url",
    "temporal_address",
    "temporal_namespace",
    "task_queue_prefix",
    "smtp_host",
    "smtp_port",
    "email_from",
    "outreach_public_url",
    "twilio_account_sid",
    "twilio_auth_token",
    "twilio_from_number",
    "twilio_api_base_url",
    "smtp_timeout_seconds",
    "smtp_data_timeout_seconds",
    "twilio_timeout_seconds",
    "postmark_webhook_user",
    "postmark_webhook_password",
    "imap_host",
    "imap_port",
    "imap_tls",
    "imap_username",
    "imap_password",
    "imap_sent_folder",
)


@dataclass
class SendAttempt:
    touch: TouchRequest
    activity_queue: str
    attempt_seconds: float = ATTEMPT_TIMEOUT.total_seconds()


@workflow.defn(name="ExactlyOnceSend")
class ExactlyOnceSend:
    @workflow.run
    async def run(self, inp: SendAttempt) -> TouchResult:
        return await workflow.execute_activity(
            Act.SEND_TOUCH,
            inp.touch,
            task_queue=inp.activity_queue,
            start_to_close_timeout=timedelta(seconds=inp.attempt_seconds),
            # quick retries, then up to 2 s apart: a retry that finds a killed attempt's send
            # lease waits it out (services/outreach/send_lease.py)
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=2),
                maximum_attempts=20,
            ),
            result_type=TouchResult,
        )


@dataclass
class Counted:
    """What one journey left behind, fault on `channel`."""

    channel: str
    contact: Contact
    result: TouchResult
    temporal_attempts: int
    marker: dict[str, Any]
    emails: list[StoredMessage]
    texts: list[dict[str, Any]]
    rows: dict[str, models.Message] = field(default_factory=dict)

    def outcomes(self) -> dict[str, str]:
        return {o.channel: o.status for o in self.result.outcomes}

    def summary(self) -> str:
        return (
            f"fault on {self.channel}: emails={len(self.emails)} "
            f"message_ids={sorted({m.message_id for m in self.emails})} texts={len(self.texts)} "
            f"ledger={ {c: (r.status, r.attempts) for c, r in self.rows.items()} } "
            f"outcomes={self.outcomes()} temporal_attempts={self.temporal_attempts} "
            f"marker={self.marker}"
        )


# Bounds against a hang, not expectations: a worker process starting on a loaded 2-core machine
# (six test workers beside it) took more than 30 s to reach its first activity.
HANG_GUARD = timedelta(seconds=120)


def new_contact() -> Contact:
    return Contact(
        uuid.uuid4().hex,
        "Ada",
        "Lovelace",
        f"ada-{uuid.uuid4().hex[:8]}@example.com",
        random_phone(),
        company="Analytical Engines",
        timezone=daytime_zone(),  # SMS go out only 08:00-21:00 local: the suite runs at any hour
        rep_name="Rita Rep",
    )


def first_touch(c: Contact) -> TouchRequest:
    return touch_request(c, EMAIL, SMS)


def child_env(settings: Settings, prefix: str, temporal_address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEFLOW_")}
    values = settings.model_copy(
        update={"task_queue_prefix": prefix, "temporal_address": temporal_address}
    )
    for name in CHILD_SETTINGS:
        value = getattr(values, name)
        secret = getattr(value, "get_secret_value", None)
        env[f"CLOSEFLOW_{name.upper()}"] = str(secret() if secret else value)
    return env


@dataclass
class Rig:
    sb: Sandboxes
    env: WorkflowEnvironment
    sessions: async_sessionmaker[AsyncSession]
    tmp_path: Path
    queue_prefix: str

    @property
    def journeys_queue(self) -> str:
        return self.sb.settings.task_queue("journeys")

    async def start(
        self, c: Contact, activity_queue: str, attempt: timedelta = ATTEMPT_TIMEOUT
    ) -> WorkflowHandle[Any, TouchResult]:
        return await self.env.client.start_workflow(
            ExactlyOnceSend.run,
            SendAttempt(first_touch(c), activity_queue, attempt.total_seconds()),
            id=f"send-{uuid.uuid4().hex}",
            task_queue=self.journeys_queue,
            execution_timeout=HANG_GUARD,
        )

    async def run_raise(
        self, point: str, channel: str, settings: Settings | None = None
    ) -> Counted:
        """The activity raises at `point` once; the same in-process worker takes the retry."""
        marker = self.tmp_path / f"marker-{channel}.json"
        return await self.run_in_process(
            channel, settings, OnceFault(point, channel, "raise", marker), marker
        )

    async def run_in_process(
        self,
        channel: str,
        settings: Settings | None = None,
        faults: SendFaults | None = None,
        marker: Path | None = None,
        attempt: timedelta = ATTEMPT_TIMEOUT,
    ) -> Counted:
        """One send on an in-process worker (with `faults`, if any), counted as `channel`'s;
        `attempt`: the activity's start-to-close timeout."""
        settings = settings or self.sb.settings
        prefix = f"{self.queue_prefix}{channel}-"
        acts = activities_for(settings, self.sessions, faults=faults)
        c = new_contact()
        try:
            async with Worker(self.env.client, task_queue=f"{prefix}outreach", activities=acts):
                handle = await self.start(c, f"{prefix}outreach", attempt)
                result = await asyncio.wait_for(handle.result(), HANG_GUARD.total_seconds())
        finally:
            await close_activities(acts)
        marker = marker or self.tmp_path / f"no-marker-{channel}.json"
        return await self.count(channel, c, handle, result, marker)

    async def run_kill(
        self,
        point: str,
        channel: str,
        settings: Settings | None = None,
        between: Callable[[Contact], Awaitable[None]] | None = None,
    ) -> Counted:
        """The worker process SIGKILLs itself at `point`; a restarted copy takes the retry.
        `between`: what happens after the death and before the restart."""
        prefix = f"{self.queue_prefix}{channel}-"
        marker = self.tmp_path / f"marker-{channel}.json"
        target = self.env.client.service_client.config.target_host
        env = child_env(settings or self.sb.settings, prefix, target)
        args = ["--point", point, "--channel", channel, "--mode", "kill", "--marker", str(marker)]
        log = self.tmp_path / f"worker-{channel}.log"
        c = new_contact()
        async with worker_process(args, env, log) as first:
            handle = await self.start(c, f"{prefix}outreach")
            try:
                await asyncio.wait_for(first.wait(), HANG_GUARD.total_seconds())
            except TimeoutError:
                pytest.fail(f"the worker did not die at {point} ({channel}): {log.read_text()}")
            assert first.returncode == -signal.SIGKILL, log.read_text()
        if between is not None:
            await between(c)
        # the same command again: the marker keeps it from dying a second time
        async with worker_process(args, env, log):
            result = await asyncio.wait_for(handle.result(), HANG_GUARD.total_seconds())
        return await self.count(channel, c, handle, result, marker)

    async def count(
        self,
        channel: str,
        c: Contact,
        handle: WorkflowHandle[Any, TouchResult],
        result: TouchResult,
        marker: Path,
    ) -> Counted:
        attempts = 0
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                attempts = max(attempts, event.activity_task_started_event_attributes.attempt)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=self.sb.twilio_url) as http:
            texts = (await http.get("/sandbox/messages", params={"to": c.phone})).json()
        if isinstance(texts, dict):
            texts = texts["messages"]
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(models.Message).where(
                        models.Message.journey_id == journey_id(c.prospect_id)
                    )
                )
            ).all()
        return Counted(
            channel=channel,
            contact=c,
            result=result,
            temporal_attempts=attempts,
            marker=json.loads(marker.read_text()) if marker.exists() else {},
            emails=self.sb.mailbox.list(to=c.email),
            texts=[t for t in texts if t.get("direction", "outbound-api") != "inbound"],
            rows={r.channel: r for r in rows},
        )


# the fault worker's processes, forked from one that imported it (tests/support/forks.py)
FAULT_WORKERS = Forks([FAULT_WORKER])
atexit.register(FAULT_WORKERS.close)


@contextlib.asynccontextmanager
async def worker_process(args: list[str], env: dict[str, str], log: Path) -> AsyncIterator[Forked]:
    """`python -m tests.support.faults *args`, its stderr appended to `log`."""
    proc = await FAULT_WORKERS.spawn(FAULT_WORKER, args, env, REPO, log)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def exactly_once_rig(ground: Ground) -> AsyncIterator[Rig]:
    """Outreach on real sandboxes and the journeys' queue running ExactlyOnceSend; each run_*
    brings its own activity worker (in process or a subprocess) with the fault."""
    tmp_path, env, queue_prefix = ground.tmp_path, ground.temporal, ground.queue_prefix
    urls = {"outreach": ground.database_urls["outreach"]}
    # a killed attempt's send lease lasts its 3 s plus the provider's timeout: short ones here
    async with sandboxes(
        tmp_path,
        urls,
        queue_prefix,
        smtp_timeout_seconds=5,
        smtp_data_timeout_seconds=5,
        twilio_timeout_seconds=5,
    ) as sb:
        engine = create_engine(sb.settings.database_url("outreach"))
        try:
            async with Worker(
                env.client,
                task_queue=sb.settings.task_queue("journeys"),
                workflows=[ExactlyOnceSend],
                workflow_runner=UnsandboxedWorkflowRunner(),
            ):
                yield Rig(sb, env, session_factory(engine), tmp_path, queue_prefix)
        finally:
            await engine.dispose()
