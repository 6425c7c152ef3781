"""A rig for the sending-policy tests: outreach on real sandboxes, its real send activity run
through Temporal, and the contacts and touches they send to."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.outreach import models
from services.outreach.activities import AfterSend, activities_for, close_activities
from services.outreach.app import create_app
from shared.contracts.journey import (
    Contact,
    SendWindow,
    TouchRequest,
    TouchResult,
    journey_id,
)
from shared.contracts.meetings import InviteRequest
from shared.db import create_engine, session_factory
from shared.settings import Settings
from tests.support.fixtures import Ground
from tests.support.journeys import RecordingJourney
from tests.support.sandboxes import (
    EMAIL,
    Sandboxes,
    SendInviteOnce,
    SendTouchOnce,
    sandboxes,
    touch_request,
)
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH

POSTAL = "Closeflow Test Ltd\n1 Harbour Road, Bristol BS1 5TT, UK"


@dataclass
class Rig:
    sb: Sandboxes
    api: httpx.AsyncClient
    env: WorkflowEnvironment
    sessions: async_sessionmaker[AsyncSession]

    @property
    def settings(self) -> Settings:
        return self.sb.settings

    async def start(self, req: TouchRequest) -> WorkflowHandle[Any, TouchResult]:
        return await self.env.client.start_workflow(
            SendTouchOnce.run,
            req,
            id=f"send-{uuid.uuid4().hex}",
            task_queue=self.settings.task_queue("journeys"),
        )

    async def recording_journey(self, c: Contact) -> WorkflowHandle[Any, Any]:
        """A stand-in journey for the contact: the webhooks signal it, it records what it got."""
        return await self.env.client.start_workflow(
            RecordingJourney.run,
            {"contact": c.__dict__},
            id=journey_id(c.prospect_id),
            task_queue=self.settings.task_queue("journeys"),
        )

    async def send(self, req: TouchRequest) -> TouchResult:
        return await (await self.start(req)).result()

    async def invite(self, req: InviteRequest) -> TouchResult:
        """A meeting invitation through the real activity (tests/outreach/test_meeting_invites)."""
        return await self.env.client.execute_workflow(
            SendInviteOnce.run,
            req,
            id=f"invite-{uuid.uuid4().hex}",
            task_queue=self.settings.task_queue("journeys"),
        )

    async def ledger(self, c: Contact) -> list[models.Message]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(models.Message).where(models.Message.prospect_id == c.prospect_id)
            )
            return list(rows.all())


@contextlib.asynccontextmanager
async def rig(
    ground: Ground,
    *,
    activity_workers: int = 1,
    settings_for_activities: Callable[[Settings], Settings] = lambda s: s,
    after_send: AfterSend | None = None,
    key: bool = True,
    **overrides: object,
) -> AsyncIterator[Rig]:
    """activity_workers > 1: that many workers on the outreach queue, each with its own engine
    (connection pool), as separate worker processes would have. after_send: called by the send
    activity once the provider accepted. key=False: `api` sends no API key. The journeys' queue
    runs the one-touch workflow and the recording journey."""
    env = ground.temporal
    urls = {"outreach": ground.database_urls["outreach"]}
    overrides = {"postal_address": POSTAL, **overrides}
    async with sandboxes(ground.tmp_path, urls, ground.queue_prefix, **overrides) as sb:
        q = sb.settings.task_queue
        act_settings = settings_for_activities(sb.settings)
        engines: list[AsyncEngine] = []
        act_sets = []
        for _ in range(activity_workers):
            engines.append(create_engine(act_settings.database_url("outreach")))
            act_sets.append(activities_for(act_settings, session_factory(engines[-1]), after_send))
        app = create_app(sb.settings, temporal_client=env.client)
        async with contextlib.AsyncExitStack() as stack:
            for index, acts in enumerate(act_sets):
                # one worker per client and queue: another worker needs its own connection
                client = (
                    env.client
                    if index == 0
                    else await Client.connect(
                        env.client.service_client.config.target_host,
                        namespace=env.client.namespace,
                    )
                )
                await stack.enter_async_context(
                    Worker(client, task_queue=q("outreach"), activities=acts)
                )
            await stack.enter_async_context(
                Worker(
                    env.client,
                    task_queue=q("journeys"),
                    workflows=[SendTouchOnce, SendInviteOnce, RecordingJourney],
                    workflow_runner=UnsandboxedWorkflowRunner(),
                )
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            api = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=HTTP_TIMEOUT,
                    transport=httpx.ASGITransport(app),
                    base_url="http://test",
                    headers=AUTH if key else None,
                )
            )
            yield Rig(sb, api, env, session_factory(engines[0]))
        for acts in act_sets:
            await close_activities(acts)
        for engine in engines:
            await engine.dispose()


class SendingRig(Protocol):
    def __call__(self, **options: Any) -> contextlib.AbstractAsyncContextManager[Rig]: ...


@pytest.fixture
def sending_rig(ground: Ground) -> SendingRig:
    """`async with sending_rig(**options) as r`: the rig above on this test's databases (SQLite
    and PostgreSQL), the Temporal dev server and task queues; options as `rig` takes them."""
    return functools.partial(rig, ground)


def contact(domain: str = "example.com", **kw: Any) -> Contact:
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "email": f"ada-{tag}@{domain}",
        "phone": None,
        "company": "Analytical Engines",
        "timezone": "UTC",
        "rep_name": "Rita Rep",
        **kw,
    }
    return Contact(uuid.uuid4().hex, "Ada", "Lovelace", **values)


def email_touch(c: Contact, key: str = "step-0", window: SendWindow | None = None) -> TouchRequest:
    return touch_request(c, EMAIL, key=key, send_window=window or SendWindow())


def outcome(result: TouchResult, channel: str = "email") -> str:
    return next(o.status for o in result.outcomes if o.channel == channel)
