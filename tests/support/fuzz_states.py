"""The fuzz world's things in the state an operation's success needs (issue 13), made the way
the product makes them: FuzzWorld.only gives each of these operations its own values in place
of the world's shared ones. Without them, the truthful answers were all the fuzz ever saw:

- held / no-show: a meeting is marked only once it has started (409 meeting_not_started), and
  the world's one is days ahead (then cancelled: the ending operations run in one order). Each
  gets a meeting that has started, on a deal and rep of its own (one rep's meetings never
  overlap, and the first mark would refuse the other);
- reopen: only a won or lost deal is reopened, and the world's deal is open until the ending
  operations close it (after reopen ran): a deal closed lost that no journey carries (a
  journey's run would have to follow the reopening, and the fuzz world's runs wait);
- PUT /frameworks/{name}: the world's framework is the built-in one, which cannot change (409):
  a custom framework; POST /frameworks: a name no framework has (the world's is the built-in's);
- an objection's outcome names one of the category's prepared responses (422 otherwise);
- PUT /senders/{sender_id}: the address its example and first case name is one POST /senders
  gave another sender (409 sender_exists): the world's sender keeps its own;
- a meeting's start and a snooze's end must be in the future: the generator's first (minimal)
  value is 2000-01-01."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from services.deals.activities import DealsActivities
from shared.contracts.journey import OpenDealRequest, journey_id
from tests.support.deals import GOOD_ANSWERS
from tests.support.settings import AUTH

MARKED = ("held", "no-show")
MEETING_PATH = "/deals/{deal_id}/meetings"


def made(response: httpx.Response, key: str = "id") -> str:
    assert response.is_success, (response.request.url, response.status_code, response.text)
    value: str = response.json()[key]
    return value


async def operation_states(
    apps: dict[str, FastAPI], clients: dict[str, httpx.AsyncClient], ids: dict[str, str]
) -> dict[str, dict[str, str]]:
    """By operation ("METHOD /path"): the values it is given instead of the world's."""
    deals = clients["deals"]
    now = datetime.now(UTC)
    only: dict[str, dict[str, str]] = {
        f"POST {MEETING_PATH}": {"starts_at": (now + timedelta(days=5)).isoformat()},
        # not onto the meeting POST books, nor onto the world's own (days=3)
        f"POST {MEETING_PATH}/{{meeting_id}}/reschedule": {
            "starts_at": (now + timedelta(days=4)).isoformat()
        },
        "POST /tasks/{task_id}/snooze": {"until": (now + timedelta(days=1)).isoformat()},
        "POST /frameworks": {"name": "fuzz_created"},
        "POST /objections/{objection_id}/outcome": {"response": ids["prepared_response"]},
        # its own address: the example's (and the first generated one) is another sender's (409)
        "PUT /senders/{sender_id}": {"from_address": ids["sender_address"]},
    }
    custom = await deals.post(
        "/frameworks",
        headers=AUTH,
        json={
            "name": "fuzz_custom",
            "label": "Fuzz",
            "criteria": [{"key": "budget", "question": "Budget?", "answer_type": "bool"}],
        },
    )
    only["PUT /frameworks/{name}"] = {"name": made(custom, "name")}
    for mark in MARKED:
        deal_id = await _deal(apps, clients, mark, cadence_id=ids["cadence_id"])
        # booked just ahead (a start must be in the future), marked once it has passed
        starts = datetime.now(UTC) + timedelta(seconds=2)
        meeting = await deals.post(
            f"/deals/{deal_id}/meetings",
            headers=AUTH,
            json={"starts_at": starts.isoformat(), "title": "Demo", "duration_minutes": 5},
        )
        only[f"POST {MEETING_PATH}/{{meeting_id}}/{mark}"] = {
            "deal_id": deal_id,
            "meeting_id": made(meeting),
        }
    # a deal no journey carries: reopened, no run is told (one would have to follow it)
    lost = await _deal(apps, clients, "lost")
    closed = await deals.post(
        f"/deals/{lost}/close", headers=AUTH, json={"outcome": "lost", "reason": "no budget"}
    )
    _stored(closed)
    stage = (await deals.get(f"/deals/{lost}", headers=AUTH)).json()["stage"]
    assert stage == "lost", stage
    only["POST /deals/{deal_id}/reopen"] = {"deal_id": lost}
    await asyncio.sleep(max(0.0, (starts - datetime.now(UTC)).total_seconds()) + 0.1)
    return only


async def _deal(
    apps: dict[str, FastAPI],
    clients: dict[str, httpx.AsyncClient],
    name: str,
    *,
    cadence_id: str | None = None,
) -> str:
    """A qualified deal of a prospect and a rep of its own, as the journey opens it; with
    `cadence_id`, the prospect is enrolled first (its running journey carries the deal, and
    hears of its changes), else no journey follows it."""
    prospecting = clients["prospecting"]
    email = f"fuzz-{name}@example.org"
    rep = made(await prospecting.post("/reps", headers=AUTH, json={"name": name, "email": email}))
    prospect = made(
        await prospecting.post(
            "/prospects", headers=AUTH, json={"first_name": name, "email": f"p-{email}"}
        )
    )
    if cadence_id is not None:
        enrolled = await clients["outreach"].post(
            "/enrollments", headers=AUTH, json={"prospect_id": prospect, "cadence_id": cadence_id}
        )
        assert enrolled.is_success, enrolled.text
    deal = await DealsActivities(apps["deals"].state.sessions).open_deal(
        OpenDealRequest(prospect, journey_id(prospect), rep, "cold", "replied")
    )
    qualified = await clients["deals"].post(
        f"/deals/{deal.deal_id}/qualification", headers=AUTH, json={"answers": GOOD_ANSWERS}
    )
    _stored(qualified)
    return deal.deal_id


def _stored(response: httpx.Response) -> None:
    """A change answered 2xx, or stored with no journey to tell (a deal made by hand)."""
    told = response.is_success
    assert told or _code(response) == "journey_not_running", response.text


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code
