"""What the deals API tells the journey so that it owns the stage (issue 10, point 4), and how
a prospect's new rep reaches the deals (point 10): against the deals app with a recording
journey on the Temporal dev server."""

from __future__ import annotations

from typing import Any

from tests.support.deals import GOOD_ANSWERS, DealsEnv, signals
from tests.support.settings import ADMIN_ACTOR, SERVICE_AUTH


def moves(got: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(s["name"], s["payload"].get("stage")) for s in got]


async def test_every_stage_move_reaches_the_journey_in_order(env: DealsEnv) -> None:
    deal_id, _, journey = await env.open_deal()
    assert journey is not None
    r = await env.http.post(
        f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS, "partial": True}
    )
    assert r.status_code == 200, r.text
    # past the gate straight to closing: the verdict first (the journey enters presenting),
    # then the move
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "closing"})
    assert (r.status_code, r.json()["stage"]) == (200, "closing")
    r = await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "objections"})
    assert (r.status_code, r.json()["stage"]) == (200, "objections")
    r = await env.http.post(f"/deals/{deal_id}/close", json={"outcome": "lost", "reason": "no"})
    assert r.status_code == 200, r.text
    got = await signals(journey, 4)
    assert moves(got) == [
        ("qualification_recorded", None),
        ("deal_stage_moved", "closing"),
        ("deal_stage_moved", "objections"),
        ("deal_closed", None),
    ]
    assert got[1]["payload"] == {
        "deal_id": deal_id,
        "stage": "closing",
        "cause": "moved by the rep",
        "actor": ADMIN_ACTOR,
    }


async def test_a_new_rep_takes_the_open_deals_and_closed_ones_stay(env: DealsEnv) -> None:
    open_id, prospect_id, _ = await env.open_deal()
    r = await env.http.post(
        f"/internal/prospects/{prospect_id}/rep", json={"rep_id": "rep-2"}, headers=SERVICE_AUTH
    )
    assert r.json() == {"prospect_id": prospect_id, "rep_id": "rep-2", "moved": 1}
    again = await env.http.post(
        f"/internal/prospects/{prospect_id}/rep", json={"rep_id": "rep-2"}, headers=SERVICE_AUTH
    )
    assert again.json()["moved"] == 0  # the outbox's retry changes nothing
    assert (await env.http.get(f"/deals/{open_id}")).json()["rep_id"] == "rep-2"

    won_id, _ = await env.presenting_deal()
    won = (await env.http.get(f"/deals/{won_id}")).json()
    await env.http.post(f"/deals/{won_id}/close", json={"outcome": "won", "reason": "signed"})
    r = await env.http.post(
        f"/internal/prospects/{won['prospect_id']}/rep", json={"rep_id": "x"}, headers=SERVICE_AUTH
    )
    assert r.json()["moved"] == 0
    assert (await env.http.get(f"/deals/{won_id}")).json()["rep_id"] == "rep-1"
    r = await env.http.post(
        f"/internal/prospects/{prospect_id}/rep", json={"rep_id": ""}, headers=SERVICE_AUTH
    )
    assert r.status_code == 422
