"""Two prospects through the whole journey, in one process but on real parts: the four services
served over HTTP, the real workers and workflows on the Temporal dev server, SMTP (aiosmtpd),
the Twilio sandbox; on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from closeflow.worker import build_workers
from devstack.sandbox.mailbox import create_app as mailbox_app
from shared.settings import SERVICES
from tests.conftest import free_port
from tests.integration.outreach_harness import sandboxes, serve
from tests.scenarios import Urls, drive_to_qualification_timeout, drive_to_referral


@contextlib.asynccontextmanager
async def whole_stack(
    tmp_path: Path, database_urls: dict[str, str], env: WorkflowEnvironment, prefix: str
) -> AsyncIterator[Urls]:
    ports = {s: free_port() for s in SERVICES}
    base = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    async with sandboxes(
        tmp_path,
        database_urls,
        prefix,
        outreach_url=base["outreach"],
        referrals_public_url=base["referrals"],
        prospecting_url=base["prospecting"],
    ) as sb:
        async with contextlib.AsyncExitStack() as stack:
            for worker in await build_workers(env.client, sb.settings, ["all"], stack):
                await stack.enter_async_context(worker)
            for service in SERVICES:
                module = importlib.import_module(f"services.{service}.app")
                app = module.create_app(sb.settings, temporal_client=env.client)
                await stack.enter_async_context(serve(app, ports[service]))
            mailbox = mailbox_app(
                sb.mailbox,
                outreach_url=base["outreach"],
                signing_key=sb.settings.mailgun_signing_key.get_secret_value(),
            )
            mailbox_url = await stack.enter_async_context(serve(mailbox, free_port()))
            yield Urls(
                base["prospecting"],
                base["outreach"],
                base["deals"],
                base["referrals"],
                mailbox_url,
                sb.twilio_url,
            )


async def test_two_prospects_through_the_whole_journey(
    tmp_path: Path,
    database_urls: dict[str, str],
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> None:
    async with whole_stack(tmp_path, database_urls, temporal_local, queue_prefix) as urls:
        await drive_to_referral(urls)
        await drive_to_qualification_timeout(urls)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
