"""A prospect's way to be reached changes while their journey runs (an import fills in their
time zone, say): the journey follows, through the whole stack on the real Temporal dev server.
Its send windows and quiet hours are the prospect's zone's as prospecting knows it now, not as
it was at the enrolment."""

from __future__ import annotations

import random
from typing import Any

from tests.support.eventually import eventually
from tests.support.runs import cadence
from tests.support.stack import StackDriver


async def test_a_zone_an_import_fills_in_reaches_the_running_journey(stack: StackDriver) -> None:
    """Zoe was created with a New York number and no time zone: her journey's calendar is the
    number's. A later import of her row names her zone, Europe/London: the journey sends by
    London's clock from then on. It kept New York's, texting her at night."""
    d = stack
    await d.setup()
    plan = await cadence(d)
    zoe = await d.new_prospect("Zoe", phone=f"+1212555{random.randint(1000, 9999)}", timezone="")
    await d.enroll(zoe["id"], plan["id"])
    await d.wait_mails(zoe["email"], 1)

    async def journey_zone() -> str:
        journey = await d.ok("GET", f"{d.u.outreach}/journeys/{zoe['id']}")
        return str(journey["timezone"])

    assert await journey_zone() == "America/New_York"
    csv = f"first_name,email,timezone\nZoe,{zoe['email']},Europe/London\n".encode()
    report = await d.ok(
        "POST", f"{d.u.prospecting}/imports", content=csv, headers={"Content-Type": "text/csv"}
    )
    assert (report["merged"], report["created"]) == (1, 0), report
    prospect = await d.ok("GET", f"{d.u.prospecting}/prospects/{zoe['id']}")
    assert prospect["timezone"] == "Europe/London"

    async def followed() -> Any:
        return await journey_zone() == "Europe/London" or None

    await eventually(followed, "the journey in Zoe's zone")
