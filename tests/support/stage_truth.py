"""One stage truth (issue 10): the journey owns the stage, so for every prospect of a stack the
journey's stage (its state query, through outreach's GET /journeys/{id}), the stage of the
journey run's deal and the prospect's stage in prospecting agree, and no deal of an earlier run
is left open.

The `stack` fixture checks it when every whole-stack test ends (tests/support/stack.py), over
HTTP only, so it holds for the in-process stacks and the dev stack as processes alike. Tests that
build a stack with `whole_stack` themselves call `assert_one_stage_truth` at their end.
"""

from __future__ import annotations

from typing import Any

from shared.contracts.journey import Stage
from tests.support.eventually import eventually
from tests.support.scenarios import Driver

# The journey's stages after the win are the deal's "won": the deal is decided, the journey
# goes on asking for referrals.
DEAL_STAGE_OF = {Stage.REFERRALS: Stage.WON}
# A deal's stages once decided: an earlier run's deal is left in one of them.
CLOSED = (Stage.WON, Stage.LOST, Stage.DISQUALIFIED, Stage.NURTURE)
# Journeys that ended by force (erasure, a test's terminate) stopped where they were: nothing
# to hold them to.
CHECKED_STATUSES = ("running", "completed")
# A move is recorded by the journey a moment after the API answered: time to settle.
SETTLE_SECONDS = 30.0


async def all_prospects(d: Driver) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = await d.ok("GET", f"{d.u.prospecting}/prospects", params=params)
        found.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return found


async def disagreement(d: Driver, prospect: dict[str, Any]) -> str | None:
    """What disagrees about this prospect's stage, or None."""
    pid = prospect["id"]
    r = await d.http.get(f"{d.u.outreach}/journeys/{pid}")
    if r.status_code == 404:
        return None  # never enrolled: prospecting alone knows the stage
    if r.status_code == 503:
        return f"{pid}: journey state not readable yet ({r.json()['error']['code']})"
    assert r.status_code == 200, f"GET /journeys/{pid}: {r.status_code} {r.text}"
    journey = r.json()
    if journey["status"] not in CHECKED_STATUSES:
        return None
    prospect_stage = (await d.ok("GET", f"{d.u.prospecting}/prospects/{pid}"))["stage"]
    deals = await d.ok("GET", f"{d.u.deals}/deals", params={"prospect_id": pid})
    items = deals["items"] if isinstance(deals, dict) else deals
    stage = journey["stage"]
    # the run's own deal (every run that has one knows it); a run without one yet may follow
    # runs whose deals are closed, none still open
    own = [i for i in items if i["id"] == journey["deal_id"]]
    deal_stage = own[0]["stage"] if own else None
    earlier_open = [i["stage"] for i in items if i not in own and i["stage"] not in CLOSED]
    expected_deal = DEAL_STAGE_OF.get(stage, stage)
    if prospect_stage == stage and deal_stage in (None, expected_deal) and not earlier_open:
        return None
    earlier = f", another deal open at {earlier_open}" if earlier_open else ""
    return f"{pid}: journey {stage}, prospect {prospect_stage}, deal {deal_stage}{earlier}"


async def assert_one_stage_truth(d: Driver, timeout: float = SETTLE_SECONDS) -> None:
    """Every prospect's journey, deal and prospect record agree on the stage (within `timeout`
    for moves still on their way); fails naming each prospect that disagrees."""
    last: list[str] = []

    async def agreed() -> bool:
        last[:] = [
            found
            for prospect in await all_prospects(d)
            if (found := await disagreement(d, prospect)) is not None
        ]
        return not last

    try:
        await eventually(agreed, "journey stage = deal stage = prospect stage", timeout)
    except AssertionError as err:
        raise AssertionError(f"{err}: " + "; ".join(last)) from None
