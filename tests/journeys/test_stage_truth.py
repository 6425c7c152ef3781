"""One stage truth (issue 10, point 4) on the whole stack: every deal move reaches the journey,
which records it in the prospect's stage history; the seven stages appear in order, closing
included, and the funnel counts closing. The `stack` fixture then checks that journey, deal and
prospect agree (tests/support/stage_truth.py)."""

from __future__ import annotations

from typing import Any

from tests.support.eventually import eventually
from tests.support.scenarios import WON_PATH, Driver
from tests.support.stack import StackDriver

ANSWERS = {"budget": True, "authority": "decision_maker", "need": "reports by hand", "timeline": 2}


async def qualifying_deal(d: Driver, first: str) -> tuple[dict[str, Any], str]:
    """A prospect who replied (the journey in qualifying) and the URL of their deal."""
    _rep, cadence = await d.setup()
    prospect = await d.new_prospect(first)
    await d.enroll(prospect["id"], cadence["id"])
    await d.reply_to_first_mail(prospect, "Yes, tell me more")
    await d.wait_stage(prospect["id"], "qualifying")
    deal = await d.deal_of(prospect["id"])
    return prospect, f"{d.u.deals}/deals/{deal['id']}"


async def test_deal_stage_moves_reach_the_history_in_order_and_the_funnel(
    stack: StackDriver,
) -> None:
    ada, deal = await qualifying_deal(stack, "Ada")
    await stack.ok("POST", f"{deal}/qualification", json={"answers": ANSWERS})
    await stack.wait_stage(ada["id"], "presenting")
    moved = await stack.ok("POST", f"{deal}/stage", json={"stage": "closing"})
    assert moved["stage"] == "closing"
    await stack.wait_stage(ada["id"], "closing")
    # a client's retry of the same move: the journey records the stage once
    await stack.ok("POST", f"{deal}/stage", json={"stage": "closing"})
    await stack.ok("POST", f"{deal}/close", json={"outcome": "lost", "reason": "went quiet"})
    path = await stack.wait_stage(ada["id"], "lost")
    assert path == ["prospecting", "contacting", "qualifying", "presenting", "closing", "lost"]
    rows = await stack.ok("GET", f"{stack.u.prospecting}/prospects/{ada['id']}/stages")
    assert rows[-2]["cause"].endswith("moved by the rep")
    assert rows[-1]["cause"] == "closed lost: went quiet"

    funnel = await stack.ok("GET", f"{stack.u.prospecting}/funnel")
    (group,) = funnel["groups"]
    closing = next(s for s in group["stages"] if s["stage"] == "closing")
    assert closing["entered"] == 1 and closing["dropped"] == 1, closing
    # counted under the cadence the journey ran (every change was counted under none)
    cadence = (await stack.ok("GET", f"{stack.u.outreach}/prospects/{ada['id']}/enrollment"))[
        "cadence_id"
    ]
    by_cadence = await stack.ok(
        "GET", f"{stack.u.prospecting}/funnel", params={"cadence_id": cadence}
    )
    (group,) = by_cadence["groups"]
    closing = next(s for s in group["stages"] if s["stage"] == "closing")
    assert closing["entered"] == 1 and closing["dropped"] == 1, by_cadence


async def test_gate_pass_to_objections_then_won_from_objections(stack: StackDriver) -> None:
    """Past the gate straight to objections (presenting first), then won without a move to
    closing: the journey passes through closing, so the seven stages appear in order."""
    bea, deal = await qualifying_deal(stack, "Bea")
    await stack.ok("POST", f"{deal}/qualification", json={"answers": ANSWERS, "partial": True})
    moved = await stack.ok("POST", f"{deal}/stage", json={"stage": "objections"})
    assert (moved["stage"], moved["qualified"]) == ("objections", True)
    await stack.wait_stage(bea["id"], "objections")
    await stack.ok("POST", f"{deal}/close", json={"outcome": "won", "reason": "signed"})
    path = await stack.wait_stage(bea["id"], "referrals")
    assert path == list(WON_PATH)
    assert (await stack.ok("GET", deal))["stage"] == "won"


async def test_won_deal_reopened_while_referrals_run_goes_back_and_wins_again(
    stack: StackDriver,
) -> None:
    """A won deal reopened while its journey asks for referrals (the journey still runs): the
    journey goes back to the deal's stage, is closed again, and the history shows it all."""
    cy, deal = await qualifying_deal(stack, "Cy")
    await stack.ok("POST", f"{deal}/qualification", json={"answers": ANSWERS, "partial": True})
    await stack.ok("POST", f"{deal}/stage", json={"stage": "objections"})
    await stack.ok("POST", f"{deal}/close", json={"outcome": "won", "reason": "signed"})
    await stack.wait_stage(cy["id"], "referrals")  # the reminders keep the journey running
    reopened = await stack.ok("POST", f"{deal}/reopen")
    assert reopened["stage"] == "objections"

    async def path_after(count: int) -> list[str] | None:
        path = await stack.stages(cy["id"])
        return path if len(path) > count else None

    back = await eventually(lambda: path_after(len(WON_PATH)), "the journey back to objections")
    assert back == [*WON_PATH, "objections"]
    rows = await stack.ok("GET", f"{stack.u.prospecting}/prospects/{cy['id']}/stages")
    assert rows[-1]["cause"] == "deal reopened"
    journey = await stack.ok("GET", f"{stack.u.outreach}/journeys/{cy['id']}")
    assert (journey["status"], journey["stage"]) == ("running", "objections")

    await stack.ok("POST", f"{deal}/close", json={"outcome": "won", "reason": "signed again"})
    again = await eventually(lambda: path_after(len(WON_PATH) + 3), "won again, referrals")
    assert again == [*WON_PATH, "objections", "closing", "won", "referrals"]
    assert (await stack.ok("GET", deal))["stage"] == "won"
    # the stack fixture then checks journey = deal = prospect
