"""The ops dashboard in a real headless browser (Debian's chromium, JavaScript off): prospecting
and outreach both served by uvicorn, journeys recorded through the real write path, cadence
numbers fetched by the page from outreach over HTTP. The rendered numbers must equal a brute
force over the raw stage changes and outreach's own stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page
from temporalio.testing import WorkflowEnvironment

from services.outreach import models as outreach_models
from services.outreach.app import create_app as create_outreach
from services.prospecting.activities import ProspectingActivities
from services.prospecting.app import create_app as create_prospecting
from shared.migrations import upgrade
from tests.support.browser import screenshot, sign_in
from tests.support.funnel import Truth, brute_force, record_journeys
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import API_KEY, AUTH, make_settings

TODAY = datetime.now(UTC).date()
START = datetime.combine(TODAY - timedelta(days=100), datetime.min.time(), tzinfo=UTC)


@dataclass
class Stack:
    prospecting: str
    outreach: str
    truth: Truth
    cadence: dict[str, Any]


async def _seed_outreach(app: Any, cadence_id: str) -> None:
    """Messages as sends and webhooks leave them: per variant, sent / delivered / replied."""
    now = datetime.now(UTC)
    plan = {"A": (10, 9, 3), "B": (10, 7, 1)}
    async with app.state.sessions() as session:
        for variant, (sent, delivered, replied) in plan.items():
            for i in range(sent):
                session.add(
                    outreach_models.Message(
                        journey_id=f"journey-{variant}{i}",
                        touch_key="step-0",
                        channel="email",
                        kind="cadence",
                        prospect_id=f"{variant}{i}",
                        to_address=f"{variant}{i}@example.com",
                        status="delivered" if i < delivered else "bounced",
                        cadence_id=cadence_id,
                        variant=variant,
                        replied_at=now if i < replied else None,
                        sent_at=now,
                    )
                )
        await session.commit()


@pytest.fixture
async def stack(
    database_urls: dict[str, str], tmp_path: Path, temporal_local: WorkflowEnvironment
) -> AsyncIterator[Stack]:
    out_port, pros_port = free_port(), free_port()
    outreach_url = f"http://127.0.0.1:{out_port}"
    settings = make_settings(tmp_path, database_urls, outreach_url=outreach_url)
    for service in ("prospecting", "outreach"):
        await asyncio.to_thread(upgrade, settings, service)
    outreach = create_outreach(settings, temporal_client=temporal_local.client)
    prospecting = create_prospecting(settings, temporal_client=temporal_local.client)
    async with serve(outreach, out_port) as out, serve(prospecting, pros_port) as pros:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=out, headers=AUTH) as http:
            step = {"channel": "email", "subject": "Hi", "body": "Hi {{ first_name }}"}
            variants = [{"name": v, "subject": f"Hi {v}", "body": f"Body {v}"} for v in "AB"]
            resp = await http.post(
                "/cadences",
                json={
                    "name": "Q4 outbound",
                    "steps": [
                        {**step, "variants": variants},
                        {"channel": "sms", "body": "Hi {{ first_name }}"},
                        {**step, "offset_seconds": 86400},
                    ],
                },
            )
            assert resp.status_code == 201, resp.text
            cadence = resp.json()
        await _seed_outreach(outreach, cadence["id"])
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=pros, headers=AUTH) as http:
            for i in range(3):
                r = await http.post("/reps", json={"name": f"R{i}", "email": f"r{i}@example.com"})
                assert r.status_code == 201, r.text
            truth = await record_journeys(
                http,
                ProspectingActivities(prospecting.state.sessions),
                prospects=45,
                start=START,
                days=90,
                cadences=[cadence["id"]],
            )
        yield Stack(pros, out, truth, cadence)


async def _cells(page: Page, row: str) -> dict[str, str]:
    cells = page.locator(f"{row} td[data-field]")
    out = {}
    for i in range(await cells.count()):
        cell = cells.nth(i)
        out[str(await cell.get_attribute("data-field"))] = (await cell.inner_text()).strip()
    return out


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


async def test_dashboard_shows_funnel_bottleneck_and_cadence_numbers(
    browser: Browser, stack: Stack
) -> None:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    page = await context.new_page()
    # the last 30 of the 90 days of journeys, against the two 30-day periods before them
    start, end = START.date() + timedelta(days=60), START.date() + timedelta(days=90)
    query = f"from={start}&to={end}&periods=2&min_left=3"
    # signed out: the key form (it posts), then back on the page with the same filters
    await sign_in(page, f"{stack.prospecting}/ui/dashboard?{query}", API_KEY)
    assert await page.title() == "Ops dashboard · closeflow"

    expected = brute_force(stack.truth, start, end)[None]
    for stage, want in expected["stages"].items():
        got = await _cells(page, f'tr[data-stage="{stage}"]')
        assert got["entered"] == str(want["entered"]), stage
        assert got["left"] == str(want["left"]), stage
        assert got["advanced"] == str(want["advanced"]), stage
        conversion = want["advanced"] / want["left"] if want["left"] else None
        assert got["conversion"] == _percent(conversion), stage
        if want["dropped"]:
            assert got["dropped"].startswith(str(want["dropped"]))
            top_cause, top_n = want["causes"].most_common(1)[0]
            assert f"{top_cause}: {top_n}" in got["dropped"] or len(want["causes"]) > 4
    for outcome, n in expected["outcomes"].items():
        assert await page.locator(f'[data-outcome="{outcome}"]').inner_text() == str(n)

    # the bottleneck as the API computes it (its definition is tested in test_funnel.py)
    async with httpx.AsyncClient(
        timeout=HTTP_TIMEOUT, base_url=stack.prospecting, headers=AUTH
    ) as http:
        found = (
            await http.get(
                "/funnel/bottleneck",
                params={"from": str(start), "to": str(end), "periods": 2, "min_left": 3},
            )
        ).json()
    assert found["stage"] is not None  # these journeys (seed 7) have one in that window
    b = found["bottleneck"]
    assert await page.get_by_test_id("bottleneck-stage").inner_text() == b["stage"]
    assert await page.get_by_test_id("bottleneck-current").inner_text() == _percent(b["current"])
    assert await page.get_by_test_id("bottleneck-benchmark").inner_text() == _percent(
        b["benchmark"]
    )
    counts = b["counts"]["current"]
    assert await page.get_by_test_id("bottleneck-counts-current").inner_text() == (
        f"{counts['left']} / {counts['advanced']} / {counts['dropped']}"
    )

    # cadence and variant performance, from outreach over HTTP
    cid = stack.cadence["id"]
    heading = await page.locator(f'h3[data-cadence="{cid}"]').inner_text()
    assert "Q4 outbound" in heading and "20 sent" in heading and "4 replied" in heading
    a = await _cells(page, f'[data-testid="cadence-{cid}"] tr[data-variant="A"]')
    b_row = await _cells(page, f'[data-testid="cadence-{cid}"] tr[data-variant="B"]')
    assert (a["sent"], a["delivered"], a["bounced"], a["replied"]) == ("10", "9", "1", "3")
    assert (a["reply_rate"], b_row["reply_rate"]) == ("30.0%", "10.0%")
    assert (b_row["delivered"], b_row["bounced"]) == ("7", "3")

    await screenshot(page, "ops-dashboard")
    await context.close()


async def test_dashboard_says_when_outreach_is_unreachable_and_needs_a_key(
    tmp_path: Path, temporal_local: WorkflowEnvironment, page: Page
) -> None:
    db = {"prospecting": f"sqlite+aiosqlite:///{tmp_path / 'prospecting.db'}"}
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = make_settings(tmp_path, db, outreach_url=closed)
    await asyncio.to_thread(upgrade, settings, "prospecting")
    app = create_prospecting(settings, temporal_client=temporal_local.client)
    async with serve(app, free_port()) as base:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=base) as http:
            assert (await http.get("/ui/dashboard")).status_code == 401
            assert (await http.get("/ui/dashboard?key=wrong")).status_code == 401
            by_header = await http.get("/ui/dashboard", headers=AUTH)
            assert by_header.status_code == 200
            assert 'data-testid="outreach-unavailable"' in by_header.text
        await sign_in(page, f"{base}/ui/dashboard", API_KEY)
        warning = await page.get_by_test_id("outreach-unavailable").inner_text()
        assert "Cadence numbers are unavailable" in warning and closed in warning
        # an empty funnel renders zeros, not errors
        entered = page.locator('tr[data-stage="qualifying"] td[data-field="entered"]')
        assert await entered.inner_text() == "0"
