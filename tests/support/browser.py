"""A real headless browser for the pages people use: Debian's chromium driven by playwright.

Screenshots are test artifacts: they land in `test-artifacts/screenshots/` (CI keeps the folder;
git ignores it). Playwright is pointed at the system chromium, so it downloads nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Without the background-networking flags chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError(
            "chromium not found: install Debian's chromium (`apt-get install chromium`; "
            ".ci/run does)"
        )
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # playwright gives every launch a new empty profile of its own
    async with async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as a test artifact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Page, url: str, key: str) -> None:
    """Open a page (/ui/...) signed out, give the key in the form it answers with (the form
    posts: no key in any address) and land back on the page."""
    refused = await page.goto(url)
    assert refused is not None and refused.status == 401, "the page did not ask for a key"
    assert await page.locator('form[method="post"] input[name=key]').count() == 1
    await page.locator("input[name=key]").fill(key)
    async with page.expect_navigation():
        await page.locator("form button[type=submit]").click()
    assert page.url == url, page.url
