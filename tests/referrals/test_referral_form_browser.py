"""The public referral form in a real headless browser (Debian's chromium, JavaScript off: the
page must work without it), served by a running referrals app (uvicorn): fill in two people,
submit, see the thank-you page; the link then refuses with a clear page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.referrals.activities import ReferralsActivities
from services.referrals.app import create_app
from shared.contracts.journey import ReferralAskRequest
from shared.migrations import upgrade
from tests.support.browser import screenshot
from tests.support.ports import free_port
from tests.support.referrals import IntakeDouble
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import AUTH, make_settings


@dataclass
class Served:
    url: str
    activities: ReferralsActivities


@pytest.fixture
async def served(
    tmp_path: Path, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> AsyncIterator[Served]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = {"referrals": f"sqlite+aiosqlite:///{tmp_path / 'referrals.db'}"}
    settings = make_settings(tmp_path, db, task_queue_prefix=queue_prefix, referrals_public_url=url)
    await asyncio.to_thread(upgrade, settings, "referrals")
    app = create_app(settings, temporal_client=temporal_local.client)
    async with Worker(
        temporal_local.client,
        task_queue=f"{queue_prefix}journeys",
        workflows=[IntakeDouble],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        async with serve(app, port) as base:
            yield Served(base, ReferralsActivities(app.state.sessions, url))


@pytest.fixture
async def page_without_js(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def test_a_client_refers_two_people_through_the_form(
    page_without_js: Page, served: Served
) -> None:
    page = page_without_js
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=served.url, headers=AUTH) as api:
        # the ask a won client's journey makes, through the referrals activity
        ask = await served.activities.create_referral_ask(
            ReferralAskRequest("client1", "journey-client1", "Grace Hopper", "rep1", "cad1")
        )

        await page.goto(ask.link)
        assert await page.title() == "Introduce someone"
        await page.get_by_role("heading", name="Who else would benefit?").wait_for()
        await page.fill("#first_name_0", "Katherine")
        await page.fill("#last_name_0", "Johnson")
        await page.fill("#email_0", "katherine@example.com")
        await page.fill("#first_name_1", "Dorothy")
        await page.fill("#last_name_1", "Vaughan")
        await page.fill("#phone_1", "+1 415 555 2671")
        await page.fill("#company_1", "NASA")
        await screenshot(page, "referral-form")
        await page.get_by_role("button", name="Send introductions").click()

        await page.get_by_role("heading", name="Thank you!").wait_for()
        items = await page.locator("li").all_inner_texts()
        assert items == ["Katherine Johnson", "Dorothy Vaughan"]
        await screenshot(page, "referral-form-done")

        resp = await api.get("/referrals", params={"referrer_prospect_id": "client1"})
        stored = resp.json()
        assert [(r["first_name"], r["email"], r["phone"], r["company"]) for r in stored] == [
            ("Katherine", "katherine@example.com", None, ""),
            ("Dorothy", None, "+14155552671", "NASA"),
        ]
        assert all(r["ask_id"] == ask.ask_id for r in stored)

        # the link works once: opening it again (e.g. from the reminder) says so
        response = await page.goto(ask.link)
        assert response is not None and response.status == 410
        await page.get_by_role("heading", name="This link has already been used").wait_for()
        assert await page.locator("form").count() == 0
        await screenshot(page, "referral-form-used")

        unknown = await page.goto(f"{served.url}/r/not-a-real-token")
        assert unknown is not None and unknown.status == 404
        await page.get_by_role("heading", name="This link is not valid").wait_for()
