"""The consent and reply tests' rig: outreach's app and real send activity through Temporal on
real sandboxes, with the steps a journey has already scheduled (tests/outreach/
test_consent_and_replies.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.outreach import models
from services.outreach.activities import Clock, SendFaults, activities_for
from services.outreach.app import create_app
from shared.contracts.journey import TouchRequest, TouchResult
from shared.db import create_engine, session_factory
from tests.support.fixtures import Ground
from tests.support.journeys import RecordingJourney
from tests.support.sandboxes import Sandboxes, SendTouchOnce, sandboxes, send_touch
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH
from tests.support.webhooks import FAST

PM_USER, PM_PASSWORD = "postmark", "pm-webhook-secret"
PM = {"postmark_webhook_user": PM_USER, "postmark_webhook_password": PM_PASSWORD}


@dataclass
class Scheduled:
    req: TouchRequest
    delay_seconds: float


@workflow.defn(name="ScheduledTouch")
class ScheduledTouch:
    """A step already scheduled: it waits, then sends, whatever happened meanwhile (a journey
    that has not heard of the opt-out, or never will: a do-not-contact entry tells nobody)."""

    @workflow.run
    async def run(self, job: Scheduled) -> TouchResult:
        await workflow.sleep(job.delay_seconds)
        return await send_touch(job.req)


@dataclass
class OutreachRig:
    sb: Sandboxes
    api: httpx.AsyncClient
    env: WorkflowEnvironment
    sessions: async_sessionmaker[AsyncSession]

    @property
    def journeys_queue(self) -> str:
        return self.sb.settings.task_queue("journeys")

    async def send(self, req: TouchRequest) -> dict[str, str]:
        result = await self.touch(req)
        return {o.channel: o.status for o in result.outcomes}

    async def touch(self, req: TouchRequest) -> TouchResult:
        return await self.env.client.execute_workflow(
            SendTouchOnce.run, req, id=f"send-{uuid.uuid4().hex}", task_queue=self.journeys_queue
        )

    async def schedule(self, req: TouchRequest, delay: float) -> Any:
        return await self.env.client.start_workflow(
            ScheduledTouch.run,
            Scheduled(req, delay),
            id=f"scheduled-{uuid.uuid4().hex}",
            task_queue=self.journeys_queue,
        )

    def emails_to(self, address: str) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.sb.mailbox.list(to=address)]

    async def texts_to(self, number: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as c:
            r = await c.get(f"{self.sb.twilio_url}/sandbox/messages", params={"to": number})
            return [m for m in r.json() if m.get("direction", "outbound-api") != "inbound"]

    async def rows(self, prospect_id: str) -> list[models.Message]:
        async with self.sessions() as s:
            query = select(models.Message).where(models.Message.prospect_id == prospect_id)
            return list((await s.scalars(query.order_by(models.Message.created_at))).all())

    async def consent_of(self, prospect_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/consent/{prospect_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def outreach_rig(
    ground: Ground,
    *,
    faults: SendFaults | None = None,
    smtp_port: int | None = None,
    clock: Clock | None = None,
    **overrides: object,
) -> AsyncIterator[OutreachRig]:
    """Outreach's app (Postmark webhooks on, inbox at test speed) and its real send activity on
    real sandboxes; the journeys' queue runs the one-touch and scheduled-touch workflows and the
    recording journey. faults: the send activity's; smtp_port: the activity worker's SMTP server
    instead of the mailbox sandbox; clock: the one the
    activity reads the send windows on."""
    env = ground.temporal
    urls = {"outreach": ground.database_urls["outreach"]}
    settings = {**PM, **overrides}
    async with sandboxes(ground.tmp_path, urls, ground.queue_prefix, **settings) as sb:
        worker_settings = sb.settings
        if smtp_port is not None:
            worker_settings = sb.settings.model_copy(update={"smtp_port": smtp_port})
        engine = create_engine(sb.settings.database_url("outreach"))
        sessions = session_factory(engine)
        acts = activities_for(worker_settings, sessions, faults=faults, clock=clock)
        q = sb.settings.task_queue
        app = create_app(sb.settings, temporal_client=env.client)
        app.state.inbox.timing = FAST
        async with contextlib.AsyncExitStack() as es:
            await es.enter_async_context(
                Worker(env.client, task_queue=q("outreach"), activities=acts)
            )
            await es.enter_async_context(
                Worker(
                    env.client,
                    task_queue=q("journeys"),
                    workflows=[SendTouchOnce, ScheduledTouch, RecordingJourney],
                    workflow_runner=UnsandboxedWorkflowRunner(),
                )
            )
            await es.enter_async_context(app.router.lifespan_context(app))
            api = await es.enter_async_context(
                httpx.AsyncClient(
                    timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app), base_url="http://test"
                )
            )
            yield OutreachRig(sb, api, env, sessions)
        await acts[0].__self__._sms.close()  # type: ignore[attr-defined]
        await engine.dispose()
