"""The rep inbox page in a real headless browser (Debian's chromium): sign in with the key,
see the tasks with their context, complete one with a click, see it gone and its outcome kept."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Page

from tests.support.browser import screenshot, sign_in
from tests.support.eventually import eventually
from tests.support.inbox import InboxRig
from tests.support.settings import API_KEY, AUTH

pytestmark = pytest.mark.asyncio
ICP = {
    "criteria": [
        {"name": "vp", "field": "title", "kind": "keywords", "values": ["vp"], "weight": 6},
        {"name": "head", "field": "title", "kind": "keywords", "values": ["head"], "weight": 4},
    ]
}


async def test_rep_completes_a_task_from_the_inbox_page(page: Page, inbox: InboxRig) -> None:
    r = inbox
    rep = await r.rep("Rita Rep")
    assert (await r.prospecting.put("/icp", json=ICP, headers=AUTH)).status_code == 200
    grace = await r.prospect("Grace", title="VP, Head of Engineering", company="Hopper Labs")
    alan = await r.prospect("Alan", title="Head of Data", company="Turing Ltd")
    ada = await r.prospect("Ada", title="CTO", company="Analytical Engines")
    now = datetime.now(UTC)
    call = await r.task(
        grace,
        rep,
        "step-1:call_task",
        title="Call Grace Tester (Hopper Labs)",
        due=now - timedelta(minutes=20),
        body="Touch step-1 of the cadence.\nHi Grace, this is Rita from closeflow: you "
        "asked about routing replies to the right rep...",
    )
    await r.replied(alan["id"], timedelta(minutes=12))
    await r.task(
        alan,
        rep,
        "objection:o1",
        title="Answer Alan Tester's price objection",
        kind="objection",
        stage="objections",
        due=now + timedelta(hours=3),
        body='They said: "too expensive for our team size"\nPrepared answers:\n'
        "- Per-seat pricing starts at five seats\n- Payback in one quarter (case study)",
        context={"category": "price", "deal_id": "d-42"},
    )
    await r.task(
        ada,
        rep,
        "qualify",
        title="Qualify Ada Tester",
        kind="qualify",
        stage="qualifying",
        due=now + timedelta(days=1),
        body="Why now: they entered qualifying. Ask about budget, authority, need and "
        "timeline, then record the answers on deal d-7.",
    )
    await r.start_journey(grace["id"])
    inbox_url = f"{r.outreach_url}/ui/reps/{rep}/inbox"

    # without a key the page asks for one; the form posts it, a cookie keeps it
    await sign_in(page, inbox_url, API_KEY)
    cookies = await page.context.cookies()
    assert any(c["name"] == "closeflow_key" and c["httpOnly"] for c in cookies)
    articles = page.locator("article.task")
    assert await articles.count() == 3
    first = articles.nth(0)
    assert await first.get_attribute("data-task-id") == call  # overdue comes first
    card = await page.locator(f"#task-{call}").inner_text()
    for expected in ("Grace Tester", "VP, Head of Engineering at Hopper Labs", grace["phone"]):
        assert expected in card
    assert "overdue by 20 min" in card and "tier A" in card and "this is Rita" in card
    objection = await articles.nth(1).inner_text()
    assert "replied 12 min ago" in objection and "Per-seat pricing" in objection
    assert "price" in objection  # the objection's category from the task context
    await screenshot(page, "rep-inbox")

    # one click: completed with that outcome, back on the inbox, the task gone
    await page.locator(f"#task-{call} input[name=notes]").fill("Demo on Tuesday")
    await page.locator(f"#task-{call} button[value=meeting_booked]").click()
    await page.wait_for_load_state()
    assert page.url.startswith(inbox_url)
    assert await page.locator(f"#task-{call}").count() == 0
    assert await page.locator("article.task").count() == 2
    assert "Meeting booked" in await page.locator(".notice").inner_text()
    after = await screenshot(page, "rep-inbox-after-complete")
    assert after.exists()

    stored = (await r.api.get(f"/tasks/{call}", headers=AUTH)).json()
    assert stored["status"] == "done" and stored["outcome"] == "meeting_booked"
    assert stored["notes"] == "Demo on Tuesday"

    async def told() -> list[dict[str, str]]:
        return list((await r.recorded(grace["id"]))["replies"])

    replies = await eventually(told, "the booked meeting reaches the journey")
    assert replies[0]["excerpt"] == "meeting_booked: Demo on Tuesday"

    # the same button again (a second tab, say): the inbox says why, nothing changes
    again = await page.request.post(
        f"{r.outreach_url}/ui/reps/{rep}/tasks/{call}/complete", form={"outcome": "done"}
    )
    assert again.ok and "was completed already" in await again.text()
    stored = (await r.api.get(f"/tasks/{call}", headers=AUTH)).json()
    assert stored["outcome"] == "meeting_booked"


async def test_the_notice_after_a_click_carries_no_prospect_name_in_the_url(
    inbox: InboxRig,
) -> None:
    """After a click the browser is sent back to the inbox with what was done. The task's title
    names the prospect; it went into that URL (`?notice=Call Grace Tester ...: Done`), so into
    the browser's history and the access logs. The URL now names the task by its id, and the
    page writes the same notice from the task."""
    r = inbox
    rep = await r.rep("Rita Rep")
    grace = await r.prospect("Grace", title="VP", company="Hopper Labs")
    alan = await r.prospect("Alan", title="CTO", company="Turing Ltd")
    call = await r.task(grace, rep, "step-1:call_task", title="Call Grace Tester (Hopper Labs)")
    snoozed = await r.task(alan, rep, "step-2:call_task", title="Call Alan Tester (Turing Ltd)")
    theirs = await r.task(grace, rep, "step-3:call_task", title="Call Grace for Otto")
    other_rep = await r.rep("Otto Rep")
    moved = await r.api.post(f"/tasks/{theirs}/reassign", json={"rep_id": other_rep}, headers=AUTH)
    assert moved.status_code == 200, moved.text
    async with httpx.AsyncClient(base_url=r.outreach_url, headers=AUTH) as client:
        clicks = [
            (f"/ui/reps/{rep}/tasks/{call}/complete", {"outcome": "done"}, "Call Grace Tester"),
            (f"/ui/reps/{rep}/tasks/{snoozed}/snooze", {"hours": "4"}, "Call Alan Tester"),
        ]
        notices = []
        for path, form, title in clicks:
            answer = await client.post(path, data=form)
            assert answer.status_code == 303, answer.text
            location = answer.headers["location"]
            assert title.split()[1] not in location and "Tester" not in location, location
            page = await client.get(location)
            assert page.status_code == 200
            notices.append(re.search(r'class="notice" role="status">([^<]*)<', page.text))
        assert [m and html.unescape(m[1]) for m in notices] == [
            "Call Grace Tester (Hopper Labs): Done",
            "Call Alan Tester (Turing Ltd): snoozed for 4 h",
        ]
        # the page's headers: not framed by another site, no Referer, not cached
        policy = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and page.headers["Cache-Control"] == "no-store"
        # another rep's task named in the URL: no notice (its title is not shown), nor a text
        # someone put in a link
        for query in ({"task": theirs, "done": "done"}, {"notice": "Call 555-0100 now"}):
            page = await client.get(f"/ui/reps/{rep}/inbox", params=query)
            assert "Otto" not in page.text
            assert page.status_code == 200
            assert 'class="notice"' not in page.text and "555-0100" not in page.text
