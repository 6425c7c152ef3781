"""A reopened deal whose journey ended (issue 10) through the whole stack on the real Temporal dev
server: the journey comes back as a new run at presenting with the same deal, which it then
follows to its close."""

from __future__ import annotations

from tests.support.eventually import eventually
from tests.support.runs import cadence, decide, wait_run
from tests.support.stack import StackDriver


async def test_reopening_a_lost_deal_starts_a_run_at_presenting(stack: StackDriver) -> None:
    d = stack
    await d.setup()
    plan = await cadence(d, referral_delay_seconds=1, referral_reminders=0)
    una = await d.new_prospect("Una")
    deal = await decide(d, una, plan["id"], "lost")
    await wait_run(d, una["id"], 1, outcome="lost", status="ended")

    reopened = await d.ok("POST", f"{d.u.deals}/deals/{deal['id']}/reopen")
    assert reopened["stage"] == "presenting"
    runs = await wait_run(d, una["id"], 2, status="running", origin="deal_reopened")
    assert runs[1]["start_stage"] == "presenting"

    async def back_in_presenting() -> list[str] | None:
        path = await d.stages(una["id"])
        return path if path[-2:] == ["lost", "presenting"] else None

    await eventually(back_in_presenting, "Una back in presenting")
    # the new run knows the deal: closing it now ends run 2
    won = {"outcome": "won", "reason": "came back", "value": 500, "currency": "EUR"}
    await d.ok("POST", f"{d.u.deals}/deals/{deal['id']}/close", json=won)
    await d.wait_stage(una["id"], "won")
    await wait_run(d, una["id"], 2, outcome="won", status="ended")
