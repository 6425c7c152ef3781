"""The whole stack in the test's process, on real parts: the four services served over HTTP on
their own ports, the real workers and workflows on the given Temporal server, SMTP (aiosmtpd), the
Twilio sandbox and the mailbox page. Every service reaches the others on this stack's ports, never
on the default ones."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from closeflow.worker import build_workers
from devstack.sandbox.mailbox import create_app as mailbox_app
from services.prospecting.outbox import OutboxTiming
from shared.settings import SERVICES, Settings
from tests.support.ports import free_port
from tests.support.sandboxes import sandboxes
from tests.support.scenarios import Urls
from tests.support.serve import serve

# The prospecting outbox relays within a tenth of a second instead of its production second.
FAST_OUTBOX = OutboxTiming(poll_seconds=0.1, base_delay=0.2, max_delay=1.0)


@dataclass
class RunningStack(Urls):
    """Where each part of a running stack answers, and the settings its services share."""

    settings: Settings


def service_app(
    service: str,
    settings: Settings,
    env: WorkflowEnvironment,
    outbox: OutboxTiming = FAST_OUTBOX,
) -> FastAPI:
    """One service's app as the stack serves it (prospecting's outbox on test timing)."""
    module = importlib.import_module(f"services.{service}.app")
    if service == "prospecting":
        return module.create_app(settings, temporal_client=env.client, outbox_timing=outbox)  # type: ignore[no-any-return]
    return module.create_app(settings, temporal_client=env.client)  # type: ignore[no-any-return]


def service_urls(base: dict[str, str]) -> dict[str, str]:
    """Settings pointing each service at the others on the given base URLs."""
    return {f"{service}_url": url for service, url in base.items()}


@contextlib.asynccontextmanager
async def whole_stack(
    tmp_path: Path,
    database_urls: dict[str, str],
    env: WorkflowEnvironment,
    prefix: str,
    outbox_timing: OutboxTiming = FAST_OUTBOX,
) -> AsyncIterator[RunningStack]:
    ports = {s: free_port() for s in SERVICES}
    base = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    async with sandboxes(
        tmp_path,
        database_urls,
        prefix,
        public_url=base["outreach"],
        referrals_public_url=base["referrals"],
        **service_urls(base),
    ) as sb:
        async with contextlib.AsyncExitStack() as stack:
            for worker in await build_workers(env.client, sb.settings, ["all"], stack):
                await stack.enter_async_context(worker)
            for service in SERVICES:
                app = service_app(service, sb.settings, env, outbox_timing)
                await stack.enter_async_context(serve(app, ports[service]))
            mailbox = mailbox_app(
                sb.mailbox,
                outreach_url=base["outreach"],
                signing_key=sb.settings.mailgun_signing_key.get_secret_value(),
            )
            mailbox_url = await stack.enter_async_context(serve(mailbox, free_port()))
            yield RunningStack(
                base["prospecting"],
                base["outreach"],
                base["deals"],
                base["referrals"],
                mailbox_url,
                sb.twilio_url,
                sb.settings,
            )


@pytest.fixture
async def stack(
    tmp_path: Path,
    database_urls: dict[str, str],
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> AsyncIterator[RunningStack]:
    """A ready in-process stack on this test's ports, on SQLite and on PostgreSQL."""
    async with whole_stack(tmp_path, database_urls, temporal_local, queue_prefix) as running:
        yield running
