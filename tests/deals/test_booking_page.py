"""The booking page in a real headless browser (Debian's chromium) with JavaScript off, as a
prospect without scripts sees it: the free slots in their zone, a click books one, the
confirmation; a second prospect who clicked the same time meanwhile gets the taken page with the
times still free. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Browser

from tests.support.browser import screenshot
from tests.support.deals import BOOKING_HOURS, DealsEnv, booking_token, signals
from tests.support.ports import free_port
from tests.support.serve import serve


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_prospect_books_with_clicks_and_no_javascript(
    browser: Browser, env: DealsEnv
) -> None:
    assert (await env.http.put("/reps/rep-1/availability", json=BOOKING_HOURS)).status_code == 200
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    journey = await env.start_journey(first)
    await env.start_journey(second)
    context = await browser.new_context(
        java_script_enabled=False, viewport={"width": 900, "height": 900}
    )
    async with serve(env.app, free_port(), lifespan=False) as base:
        page, other = await context.new_page(), await context.new_page()
        opened = await page.goto(f"{base}/book/{booking_token(env, first, zone='Asia/Tokyo')}")
        assert opened is not None and opened.status == 200
        assert await page.locator("h1").inner_text() == "Intro call"
        assert "Asia/Tokyo" in await page.locator("main").inner_text()
        buttons = page.locator('button[name="slot"]')
        assert await buttons.count() > 3
        await screenshot(page, "booking-page-slots")
        # the second prospect has the same time on screen
        await other.goto(f"{base}/book/{booking_token(env, second)}")
        chosen = await buttons.first.get_attribute("value")
        async with page.expect_navigation():
            await buttons.first.click()
        assert "You are booked" in await page.locator("h1").inner_text()
        await screenshot(page, "booking-page-booked")
        assert [s["name"] for s in await signals(journey, 2)][-1] == "meeting_scheduled"

        async with other.expect_navigation() as answer:
            await other.locator(f'button[value="{chosen}"]').click()
        assert (await answer.value) is not None and (await answer.value).status == 409
        assert "just taken" in await other.locator('[role="alert"]').inner_text()
        assert await other.locator(f'button[value="{chosen}"]').count() == 0
        assert await other.locator('button[name="slot"]').count() > 2
        await screenshot(other, "booking-page-taken")
    await context.close()
