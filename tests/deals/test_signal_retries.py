"""A request whose change is committed but whose signal to the journey fails answers 503 ("stored,
but the journey could not be told; retry"). The retry must tell the journey everything the first
attempt should have: the qualification verdict too when that attempt passed the gate (a journey
that never hears it stays qualifying, and its timeout escalates a qualified deal).

Temporal refuses the named signals here (a client interceptor), the rest of the app is as
deployed; the recording journey shows what it was told.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio.client import Client, Interceptor, OutboundInterceptor, SignalWorkflowInput
from temporalio.service import RPCError, RPCStatusCode

from shared.contracts.names import Sig
from tests.support.deals import (
    BOOKING_HOURS,
    GOOD_ANSWERS,
    DealsEnv,
    booking_link,
    error,
    in_an_hour,
    signals,
)
from tests.support.settings import ADMIN_ACTOR

VERDICT = Sig.QUALIFICATION_RECORDED


class _Refusing(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, names: frozenset[str]) -> None:
        super().__init__(next)
        self.names = names

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        if input.signal in self.names:
            raise RPCError("Temporal is unavailable", RPCStatusCode.UNAVAILABLE, b"")
        await super().signal_workflow(input)


class _RefuseSignals(Interceptor):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Refusing(next, self.names)


@contextmanager
def refused(env: DealsEnv, *names: str) -> Iterator[None]:
    """While inside, the deals app's signals of `names` fail as when Temporal is away."""
    config = env.client.config()
    config["interceptors"] = [_RefuseSignals(frozenset(names))]
    env.app.state.temporal = Client(**config)
    try:
        yield
    finally:
        env.app.state.temporal = env.client


async def answered(env: DealsEnv) -> tuple[str, Any]:
    """A qualifying deal whose stored answers pass the gate, and its recording journey."""
    deal_id, _, journey = await env.open_deal()
    r = await env.http.post(
        f"/deals/{deal_id}/qualification", json={"answers": GOOD_ANSWERS, "partial": True}
    )
    assert r.status_code == 200, r.text
    return deal_id, journey


def verdict(deal_id: str) -> dict[str, Any]:
    return {
        "name": VERDICT,
        "payload": {"deal_id": deal_id, "qualified": True, "reasons": [], "actor": ADMIN_ACTOR},
    }


def unreachable(r: Any) -> bool:
    return (r.status_code, error(r)["code"]) == (503, "journey_unreachable")


async def test_a_move_past_the_gate_retried_after_its_verdict_failed_tells_the_verdict(
    env: DealsEnv,
) -> None:
    deal_id, journey = await answered(env)
    move = {"stage": "presenting"}
    with refused(env, VERDICT):
        r = await env.http.post(f"/deals/{deal_id}/stage", json=move)
    assert unreachable(r), r.text
    assert (await env.http.get(f"/deals/{deal_id}")).json()["stage"] == "presenting"
    assert await journey.query("signals") == []
    # the retry the 503 asks for: the deal is at presenting already, the verdict is still due
    r = await env.http.post(f"/deals/{deal_id}/stage", json=move)
    assert (r.status_code, r.json()["stage"]) == (200, "presenting"), r.text
    assert await signals(journey, 1) == [verdict(deal_id)]
    # once more (the client did not see the answer): the same verdict again, nothing written
    r = await env.http.post(f"/deals/{deal_id}/stage", json=move)
    assert r.status_code == 200, r.text
    assert await signals(journey, 2) == [verdict(deal_id)] * 2
    history = (await env.http.get(f"/deals/{deal_id}")).json()["history"]
    assert [h["to_stage"] for h in history] == ["qualifying", "presenting"]


async def test_a_move_past_the_gate_to_closing_retried_tells_the_verdict_and_the_move(
    env: DealsEnv,
) -> None:
    deal_id, journey = await answered(env)
    move = {"stage": "closing"}
    with refused(env, VERDICT):
        r = await env.http.post(f"/deals/{deal_id}/stage", json=move)
    assert unreachable(r), r.text
    r = await env.http.post(f"/deals/{deal_id}/stage", json=move)
    assert r.status_code == 200, r.text
    got = await signals(journey, 2)
    assert [s["name"] for s in got] == [VERDICT, Sig.DEAL_STAGE_MOVED]
    assert got[0] == verdict(deal_id)
    assert got[1]["payload"]["stage"] == "closing"
    # the verdict went but the move did not: the retry tells both again, in the same order
    other_id, other = await answered(env)
    with refused(env, Sig.DEAL_STAGE_MOVED):
        r = await env.http.post(f"/deals/{other_id}/stage", json=move)
    assert unreachable(r), r.text
    assert (await env.http.post(f"/deals/{other_id}/stage", json=move)).status_code == 200
    names = [s["name"] for s in await signals(other, 3)]
    assert names == [VERDICT, VERDICT, Sig.DEAL_STAGE_MOVED]


async def test_a_repeated_move_that_passed_no_gate_tells_no_verdict(env: DealsEnv) -> None:
    deal_id, journey = await env.presenting_deal()  # qualified by its recorded answers
    move = {"stage": "closing"}
    with refused(env, Sig.DEAL_STAGE_MOVED):
        r = await env.http.post(f"/deals/{deal_id}/stage", json=move)
    assert unreachable(r), r.text
    assert (await env.http.post(f"/deals/{deal_id}/stage", json=move)).status_code == 200
    names = [s["name"] for s in await signals(journey, 2)]
    assert names == [VERDICT, Sig.DEAL_STAGE_MOVED]  # the qualification route's, then the move
    # a move on from closing and back: the latest change is no gate pass either
    assert (await env.http.post(f"/deals/{deal_id}/stage", json={"stage": "objections"})).is_success
    assert (await env.http.post(f"/deals/{deal_id}/stage", json=move)).is_success
    assert (await env.http.post(f"/deals/{deal_id}/stage", json=move)).is_success
    names = [s["name"] for s in await signals(journey, 5)]
    assert names == [VERDICT] + [Sig.DEAL_STAGE_MOVED] * 4


async def test_a_meeting_past_the_gate_retried_after_its_verdict_failed_is_the_same_meeting(
    env: DealsEnv,
) -> None:
    """Booking a meeting passes the gate too. Its retry used to be refused (409 slot_taken, by
    the meeting it had booked itself), so the journey heard neither the verdict nor the
    meeting; now it answers the same meeting and tells both."""
    deal_id, journey = await answered(env)
    body = {"starts_at": in_an_hour().isoformat(), "title": "Demo"}
    with refused(env, VERDICT):
        r = await env.http.post(f"/deals/{deal_id}/meetings", json=body)
    assert unreachable(r), r.text
    r = await env.http.post(f"/deals/{deal_id}/meetings", json=body)
    assert r.status_code == 201, r.text
    deal = (await env.http.get(f"/deals/{deal_id}")).json()
    assert deal["stage"] == "presenting"
    assert [m["id"] for m in deal["meetings"]] == [r.json()["id"]]
    got = await signals(journey, 2)
    assert got[0] == verdict(deal_id)
    assert (got[1]["name"], got[1]["payload"]["meeting_id"]) == (
        Sig.MEETING_SCHEDULED,
        r.json()["id"],
    )
    # another title at that time is another meeting: refused as before
    r = await env.http.post(f"/deals/{deal_id}/meetings", json={**body, "title": "Other"})
    assert (r.status_code, error(r)["code"]) == (409, "slot_taken"), r.text


async def test_a_booking_past_the_gate_reloaded_after_its_verdict_failed_tells_the_verdict(
    env: DealsEnv,
) -> None:
    """The booking page never shows the prospect a 503 (logged for the ops): a reload of the
    confirmation is its retry, and tells what the booking should have told."""
    assert (await env.http.put("/reps/rep-1/availability", json=BOOKING_HOURS)).is_success
    deal_id, journey = await answered(env)
    prospect = (await env.http.get(f"/deals/{deal_id}")).json()["prospect_id"]
    link = await booking_link(env, prospect)
    offered = re.search(r'name="slot" value="([^"]+)"', (await env.anon.get(link)).text)
    assert offered is not None
    slot = {"slot": offered[1]}
    with refused(env, VERDICT):
        booked = await env.anon.post(link, data=slot)
    assert booked.status_code == 200 and "You are booked" in booked.text
    assert [s["name"] for s in await signals(journey, 1)] == [Sig.REPLY_RECEIVED]
    again = await env.anon.post(link, data=slot)
    assert again.status_code == 200 and "You are booked" in again.text
    got = await signals(journey, 4)
    assert [s["name"] for s in got] == [
        Sig.REPLY_RECEIVED,
        Sig.REPLY_RECEIVED,  # the same reply (its event id): the journey keeps it once
        VERDICT,
        Sig.MEETING_SCHEDULED,
    ]
    assert got[2]["payload"]["qualified"] is True
