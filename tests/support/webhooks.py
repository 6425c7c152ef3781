"""What the provider-webhook tests share: the outreach app on a migrated database (SQLite or
PostgreSQL) and a real Temporal server, ledger rows as the send activity leaves them, and a
stand-in journey that records every signal it gets."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.outreach import models
from services.outreach.app import create_app
from services.outreach.inbox import InboxTiming
from shared.contracts.journey import journey_id
from shared.migrations import upgrade
from shared.settings import Settings
from tests.support.fixtures import Ground
from tests.support.journeys import RecordingJourney
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import make_settings

FAST = InboxTiming(
    poll_seconds=0.05,
    base_delay=0.1,
    max_delay=0.4,
    signal_timeout=2.0,
    checkpoint_seconds=3600,  # tests checkpoint when they mean to
)


@dataclass
class Rig:
    settings: Settings
    app: FastAPI
    http: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    queue: str
    client: Client  # the Temporal client the app signals journeys with

    def journeys(self) -> contextlib.AbstractAsyncContextManager[Worker]:
        """The stand-in journeys, on this rig's queue."""
        return journeys(self.client, self.queue)

    async def start_journey(self, prospect_id: str, stage: str = "") -> WorkflowHandle[Any, Any]:
        """A stand-in journey for the prospect, at `stage` (none by default)."""
        return await start_journey(self.client, self.queue, prospect_id, stage)

    async def add_message(
        self,
        channel: str,
        to: str,
        provider_id: str,
        prospect_id: str | None = None,
        status: str = "submitted",
    ) -> models.Message:
        """A ledger row as the send activity leaves it once the provider accepted (`sending`:
        as an attempt that died before it recorded the send leaves it)."""
        pid = prospect_id or uuid.uuid4().hex
        row = models.Message(
            journey_id=journey_id(pid),
            touch_key=f"step-{uuid.uuid4().hex[:6]}",
            channel=channel,
            kind="cadence",
            prospect_id=pid,
            to_address=to.lower() if channel == "email" else to,
            subject="Quick question" if channel == "email" else "",
            body="Hello",
            status=status,
            provider_status="accepted" if channel == "sms" else "",
            provider_id=provider_id,
        )
        async with self.sessions() as s:
            s.add(row)
            await s.commit()
        return row

    async def message(self, message_id: str) -> models.Message:
        async with self.sessions() as s:
            row = await s.get(models.Message, message_id)
            assert row is not None
            return row

    async def inbox(self, provider: str | None = None) -> list[models.InboxEvent]:
        query = select(models.InboxEvent).order_by(models.InboxEvent.id)
        if provider:
            query = query.where(models.InboxEvent.provider == provider)
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def rejected(self) -> list[models.RejectedItem]:
        async with self.sessions() as s:
            query = select(models.RejectedItem).order_by(models.RejectedItem.id)
            return list((await s.scalars(query)).all())

    async def count(self, model: type[models.Base]) -> int:
        async with self.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(model)) or 0)

    async def suppressed(self, channel: str) -> set[str]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(models.Suppression.address).where(models.Suppression.channel == channel)
            )
            return set(rows.all())


@contextlib.asynccontextmanager
async def webhook_rig(
    tmp_path: Path,
    database_urls: dict[str, str],
    client: Client,
    timing: InboxTiming = FAST,
    *,
    migrate: bool = True,  # False: the database is at its head already (fresh_databases)
    **overrides: object,
) -> AsyncIterator[Rig]:
    settings = make_settings(
        tmp_path,
        {"outreach": database_urls["outreach"]},
        outreach_public_url="http://test",
        **overrides,
    )
    if migrate:
        await asyncio.to_thread(upgrade, settings, "outreach")
    app = create_app(settings, temporal_client=client)
    app.state.inbox.timing = timing
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app), base_url="http://test"
        ) as http,
    ):
        yield Rig(settings, app, http, app.state.sessions, f"wh-{uuid.uuid4().hex[:8]}", client)


class WebhookRigs(Protocol):
    def __call__(
        self, timing: InboxTiming = ..., *, where: str = "", **overrides: object
    ) -> contextlib.AbstractAsyncContextManager[Rig]: ...


@pytest.fixture
def webhooks(ground: Ground) -> WebhookRigs:
    """`async with webhooks(**overrides) as rig`: the webhook rig above on this test's databases
    (SQLite and PostgreSQL) and the Temporal dev server; `where` names a data directory of its
    own for a second rig in the same test; other options as `webhook_rig` takes them."""

    def rig(
        timing: InboxTiming = FAST, *, where: str = "", **overrides: object
    ) -> contextlib.AbstractAsyncContextManager[Rig]:
        client = ground.temporal.client
        return webhook_rig(
            ground.tmp_path / where, ground.database_urls, client, timing, **overrides
        )

    return rig


@contextlib.asynccontextmanager
async def journeys(client: Client, queue: str) -> AsyncIterator[Worker]:
    async with Worker(
        client,
        task_queue=queue,
        workflows=[RecordingJourney],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ) as worker:
        yield worker


async def start_journey(
    client: Client, queue: str, prospect_id: str, stage: str = ""
) -> WorkflowHandle[Any, Any]:
    if stage:
        return await client.start_workflow(
            RecordingJourney.run, {"stage": stage}, id=journey_id(prospect_id), task_queue=queue
        )
    return await client.start_workflow(
        RecordingJourney.run, id=journey_id(prospect_id), task_queue=queue
    )


async def signals_of(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    return await handle.query(RecordingJourney.recorded)  # type: ignore[no-any-return]
