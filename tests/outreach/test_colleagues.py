"""Colleagues are found by the work domain of their address as well as by company name (issue 10,
point 12): a reply pauses the others on the cadence at the same company; two people at a
free-mail provider are not colleagues. On the whole stack, in process."""

from __future__ import annotations

from typing import Any

from tests.support.eventually import eventually
from tests.support.scenarios import fast_cadence
from tests.support.stack import StackDriver


async def test_a_reply_pauses_colleagues_found_by_company_or_work_domain(
    stack: StackDriver,
) -> None:
    d, urls = stack, stack.u
    await d.setup()
    cadence = await d.ok(
        "POST", f"{urls.outreach}/cadences", json=fast_cadence(pause_company_on_reply=True)
    )
    people: dict[str, dict[str, Any]] = {}
    for first, company, domain in [
        ("Ann", "Acme Inc.", "acme.example"),
        ("Bob", "ACME Corporation", "acme.example"),  # another spelling: the domain tells
        ("Eve", "Eve Consulting", "gmail.com"),
        ("Fay", "Fay Design", "gmail.com"),  # free mail: not Eve's colleague
        ("Gus", "", "globex.example"),  # no company name: the domain alone
        ("Hal", "Globex", "globex.example"),
    ]:
        email = f"{first.lower()}-{cadence['id'][:6]}@{domain}"
        people[first] = await d.new_prospect(first, company=company, email=email)
        await d.enroll(people[first]["id"], cadence["id"])
    for p in people.values():
        await d.wait_mails(p["email"], 1)

    async def paused(name: str) -> bool:
        state = await d.ok("GET", f"{urls.outreach}/journeys/{people[name]['id']}")
        return bool(state["paused"])

    async def reply(name: str) -> None:
        await d.reply_to_first_mail(people[name], "Interested, tell me more")
        await d.wait_stage(people[name]["id"], "qualifying")

    await reply("Eve")  # colleagues are paused before the stage is recorded
    await reply("Ann")
    await eventually(lambda: paused("Bob"), "Bob's journey paused (same work domain as Ann)")
    await reply("Gus")
    await eventually(lambda: paused("Hal"), "Hal's journey paused (same work domain as Gus)")
    assert not await paused("Fay")
