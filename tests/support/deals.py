"""The deals API and activities on a real database and Temporal server, with a recording
journey: each test asserts what the API told the journey."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.deals.activities import DealsActivities
from services.deals.app import create_app
from services.outreach.booking_links import BookingLinks
from shared.booking import BookingClaim, sign
from shared.contracts.journey import Contact, OpenDealRequest, journey_id
from shared.migrations import upgrade
from tests.support.journeys import RecordingJourney
from tests.support.runs import as_run
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, make_settings

GOOD_ANSWERS = {
    "budget": True,
    "authority": "decision_maker",
    "need": "reports take two days each month",
    "timeline": 2,
}
DEFAULT_CATEGORIES = ["authority", "competitor", "need", "price", "timing", "trust"]


# a rep taking 30-minute meetings every day from 09:00 to 17:00 Berlin time, at no notice
# a time a booking page offers: its form's radio button carries the slot's start
SLOT = re.compile(r'name="slot" value="([^"]+)"')
BOOKING_HOURS = {
    "timezone": "Europe/Berlin",
    "days": [0, 1, 2, 3, 4, 5, 6],
    "start": "09:00",
    "end": "17:00",
    "meeting_minutes": 30,
    "buffer_minutes": 10,
    "min_notice_minutes": 0,
    "days_ahead": 3,
    "title": "Intro call",
}


async def booking_link(
    env: DealsEnv, prospect_id: str, rep_id: str = "rep-1", zone: str = "America/New_York"
) -> str:
    """The path of the prospect's booking link, as outreach renders `{{ booking_link }}`:
    outreach's own client asks the deals app (in process) for it."""
    client = BookingLinks(
        "http://deals", env.app.state.settings.internal_api_key, httpx.ASGITransport(env.app)
    )
    try:
        contact = Contact(prospect_id, "Ada", rep_id=rep_id, timezone=zone)
        url = await client.link_for(contact, journey_id(prospect_id))
    finally:
        await client.close()
    return "/book/" + url.rpartition("/book/")[2]


def booking_token(
    env: DealsEnv, prospect_id: str, rep_id: str = "rep-1", zone: str = "America/New_York"
) -> str:
    """A signed booking link's token as outreach rendered them before links were stored (they
    keep working until they expire)."""
    secret = env.app.state.settings.booking_link_secret.get_secret_value()
    claim = BookingClaim(
        prospect_id, rep_id, journey_id(prospect_id), int(time.time()) + 3600, zone, "cold"
    )
    return sign(secret, claim)


@dataclass
class DealsEnv:
    http: httpx.AsyncClient
    anon: httpx.AsyncClient
    acts: DealsActivities
    client: Client
    queue: str
    app: FastAPI
    journeys: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    async def start_journey(self, prospect_id: str) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            RecordingJourney.run, id=journey_id(prospect_id), task_queue=self.queue
        )
        self.journeys.append(handle)
        return handle

    async def open_deal(
        self, *, journey: bool = True, source: str = "cold"
    ) -> tuple[str, str, WorkflowHandle[Any, Any] | None]:
        """(deal id, prospect id, the recording journey) for a fresh prospect; with a journey,
        opened as its run opens it (the activity knows the run: the deal's signals go to it)."""
        prospect_id = uuid.uuid4().hex
        handle = await self.start_journey(prospect_id) if journey else None
        req = OpenDealRequest(prospect_id, journey_id(prospect_id), "rep-1", source, "replied")
        status = await (
            in_run(handle).run(self.acts.open_deal, req)
            if handle is not None
            else self.acts.open_deal(req)
        )
        assert status.stage == "qualifying"
        return status.deal_id, prospect_id, handle

    async def presenting_deal(self) -> tuple[str, WorkflowHandle[Any, Any]]:
        deal_id, _, handle = await self.open_deal()
        assert handle is not None
        r = await self.http.post(f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS})
        assert r.status_code == 200, r.text
        return deal_id, handle


def in_run(handle: WorkflowHandle[Any, Any]) -> ActivityEnvironment:
    """An activity context as the journey run of `handle` calls its activities in."""
    return as_run(handle.id, handle.result_run_id or "")


async def signals(handle: WorkflowHandle[Any, Any], count: int) -> list[dict[str, Any]]:
    """The signals the journey holds once it has `count` of them (or after 10 s)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        got: list[dict[str, Any]] = await handle.query("signals")
        if len(got) >= count or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.05)


@pytest.fixture
async def env(
    database_urls: dict[str, str],
    tmp_path: Path,
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> AsyncIterator[DealsEnv]:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "deals")
    app = create_app(settings, temporal_client=temporal_local.client)
    queue = f"{queue_prefix}journeys"
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        Worker(
            temporal_local.client,
            task_queue=queue,
            workflows=[RecordingJourney],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=transport, base_url="http://test", headers=AUTH
        ) as http,
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=transport, base_url="http://test"
        ) as anon,
    ):
        deals_env = DealsEnv(
            http, anon, DealsActivities(app.state.sessions), temporal_local.client, queue, app
        )
        yield deals_env
        for handle in deals_env.journeys:
            await handle.terminate("test over")


def error(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


def fields(r: httpx.Response) -> set[str]:
    return {d["field"] for d in error(r)["details"]}


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


# --- auth and lookups ---------------------------------------------------------------------------
