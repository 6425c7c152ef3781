"""Real parts for the rep inbox tests: prospecting and outreach served over HTTP on real ports,
migrated databases, the SMTP mailbox, the Twilio sandbox, a journey that records its signals,
and the real create_rep_task activity to make tasks with: the `inbox` fixture."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.outreach import models
from services.outreach.activities import activities_for, close_activities
from services.outreach.app import create_app as outreach_app
from services.outreach.notifications.notifier import NotifierTiming
from services.prospecting.app import create_app as prospecting_app
from shared.contracts.journey import (
    CloseRepTasks,
    RepTaskRequest,
    journey_id,
)
from shared.db import create_engine, session_factory
from tests.support.eventually import eventually
from tests.support.fixtures import Ground
from tests.support.journeys import RecordingJourney
from tests.support.ports import free_port
from tests.support.sandboxes import Sandboxes, sandboxes
from tests.support.scenarios import random_phone
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import AUTH


@dataclass
class InboxRig:
    sb: Sandboxes
    env: WorkflowEnvironment
    outreach_url: str
    api: httpx.AsyncClient  # outreach
    prospecting: httpx.AsyncClient
    sessions: Any
    create_rep_task: Callable[[RepTaskRequest], Awaitable[str]]
    app: FastAPI  # outreach
    close_rep_tasks: Callable[[CloseRepTasks], Awaitable[int]]
    reps: list[str] = field(default_factory=list)

    async def sweeps(self, count: int = 3) -> None:
        """Let the notifier's loop run `count` more passes."""
        notifier = self.app.state.notifier
        target = notifier.passes + count

        async def done() -> bool:
            return bool(notifier.passes >= target)

        await eventually(done, f"{count} notifier passes")

    async def rep(self, name: str, **extra: Any) -> str:
        slug = name.lower().replace(" ", ".")
        body = {"name": name, "email": f"{slug}@example.com", **extra}
        r = await self.prospecting.post("/reps", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        self.reps.append(r.json()["id"])
        return str(r.json()["id"])

    async def prospect(self, first: str, title: str = "", **extra: Any) -> dict[str, Any]:
        body = {
            "first_name": first,
            "last_name": "Tester",
            "email": f"{first.lower()}-{uuid.uuid4().hex[:6]}@example.com",
            "phone": random_phone(),
            "company": f"{first} Corp",
            "title": title,
            **extra,
        }
        r = await self.prospecting.post("/prospects", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def task(
        self,
        prospect: dict[str, Any],
        rep_id: str,
        key: str,
        *,
        due: datetime | None = None,
        kind: str = "call_task",
        stage: str = "contacting",
        body: str = "Call script: ask about their pipeline.",
        context: dict[str, str] | None = None,
        title: str = "",
    ) -> str:
        pid = prospect["id"]
        return await self.create_rep_task(
            RepTaskRequest(
                key=f"{journey_id(pid)}:{key}",
                rep_id=rep_id,
                prospect_id=pid,
                journey_id=journey_id(pid),
                kind=kind,
                title=title or f"{kind.replace('_', ' ')}: {prospect['first_name']} ({key})",
                body=body,
                context={"stage": stage, **(context or {})},
                due_at=(due or datetime.now(UTC)).isoformat(),
            )
        )

    async def replied(self, prospect_id: str, ago: timedelta) -> None:
        """A reply of the prospect to one of our emails (what the reply webhooks record)."""
        async with self.sessions() as session:
            session.add(
                models.Message(
                    journey_id=journey_id(prospect_id),
                    touch_key=f"step-{uuid.uuid4().hex[:6]}",
                    channel="email",
                    kind="cadence",
                    prospect_id=prospect_id,
                    to_address="someone@example.com",
                    status="delivered",
                    replied_at=datetime.now(UTC) - ago,
                )
            )
            await session.commit()

    async def start_journey(self, prospect_id: str) -> None:
        await self.env.client.start_workflow(
            "ProspectJourney",
            {},
            id=journey_id(prospect_id),
            task_queue=self.sb.settings.task_queue("journeys"),
        )

    async def recorded(self, prospect_id: str) -> dict[str, Any]:
        handle = self.env.client.get_workflow_handle(journey_id(prospect_id))
        return dict(await handle.query("recorded"))

    async def inbox(self, rep_id: str) -> list[dict[str, Any]]:
        r = await self.api.get(f"/reps/{rep_id}/inbox", headers=AUTH)
        assert r.status_code == 200, r.text
        return list(r.json())


@contextlib.asynccontextmanager
async def inbox_rig(
    ground: Ground,
    twilio_in_front: Callable[[str], FastAPI] | None = None,
    prospecting_in_front: Callable[[str], FastAPI] | None = None,
    **changes: Any,
) -> AsyncIterator[InboxRig]:
    """`twilio_in_front`, `prospecting_in_front`: an app outreach reaches Twilio (prospecting)
    through, made with the Twilio sandbox's (prospecting's) URL; `changes`: settings that differ
    from the sandboxes'."""
    env = ground.temporal
    urls = {s: ground.database_urls[s] for s in ("prospecting", "outreach")}
    p_port, o_port = free_port(), free_port()
    outreach_url = f"http://127.0.0.1:{o_port}"
    async with (
        sandboxes(
            ground.tmp_path,
            urls,
            ground.queue_prefix,
            outreach_url,
            prospecting_url=f"http://127.0.0.1:{p_port}",
        ) as sb,
        contextlib.AsyncExitStack() as stack,
    ):
        if twilio_in_front is not None:
            front = twilio_in_front(sb.twilio_url)
            changes["twilio_api_base_url"] = await stack.enter_async_context(
                serve(front, free_port())
            )
        if prospecting_in_front is not None:
            front = prospecting_in_front(f"http://127.0.0.1:{p_port}")
            changes["prospecting_url"] = await stack.enter_async_context(serve(front, free_port()))
        settings = sb.settings.model_copy(update=changes)
        engine = create_engine(settings.database_url("outreach"))
        stack.push_async_callback(engine.dispose)  # last: after everything entered below
        sessions = session_factory(engine)
        acts = activities_for(settings, sessions)
        stack.push_async_callback(close_activities, acts)
        create = next(a for a in acts if getattr(a, "__name__", "") == "create_rep_task")
        o_app = outreach_app(settings, temporal_client=env.client)
        # seconds, not minutes: the sweep and its retries run at test speed
        o_app.state.notifier.timing = NotifierTiming(
            poll_seconds=0.2, base_delay=0.2, max_delay=1.0, lease=5.0
        )
        await stack.enter_async_context(
            Worker(
                env.client,
                task_queue=settings.task_queue("journeys"),
                workflows=[RecordingJourney],
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
        )
        p_url = await stack.enter_async_context(
            serve(prospecting_app(settings, temporal_client=env.client), p_port)
        )
        await stack.enter_async_context(serve(o_app, o_port))
        api = await stack.enter_async_context(
            httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=outreach_url)
        )
        prospecting = await stack.enter_async_context(
            httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=p_url)
        )
        close = next(a for a in acts if getattr(a, "__name__", "") == "close_rep_tasks")
        yield InboxRig(sb, env, outreach_url, api, prospecting, sessions, create, o_app, close)


@pytest.fixture
async def inbox(ground: Ground) -> AsyncIterator[InboxRig]:
    """The rep inbox rig, on SQLite and on PostgreSQL."""
    async with inbox_rig(ground) as rig:
        yield rig
