"""Pausing, resuming or stopping every journey of a cadence: bounded requests. The request
stores one signal per journey with the change (the inbox: durable, retried, never twice),
tells the first few itself and leaves the rest to the inbox relay; the operation's status says
how far it got. Signalling every journey inside the request made thousands of Temporal calls
that outlived any proxy's timeout, and a request that broke midway left the rest untold."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from tests.support.eventually import eventually
from tests.support.runs import add_enrollment
from tests.support.settings import AUTH
from tests.support.webhooks import FAST, WebhookRigs, signals_of

INLINE = 2  # told by the request itself; the relay tells the rest
CADENCE = {
    "name": "Two steps",
    "steps": [
        {"channel": "email", "offset_seconds": 0, "subject": "Hi", "body": "Hi"},
        {"channel": "sms", "offset_seconds": 0, "body": "Hi"},
    ],
}


async def new_cadence(http: Any) -> str:
    made = await http.post("/cadences", json=CADENCE, headers=AUTH)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def test_a_cadence_pause_is_stored_for_every_journey_and_told_by_the_relay(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks(replace(FAST, inline_items=INLINE)) as rig, rig.journeys():
        cadence_id = await new_cadence(rig.http)
        running = [uuid.uuid4().hex for _ in range(4)]
        ended = uuid.uuid4().hex  # enrolled, its journey no longer running
        async with rig.sessions() as s:
            for pid in [*running, ended]:
                await add_enrollment(s, pid)
            await s.commit()
        handles = {pid: await rig.start_journey(pid) for pid in running}

        r = await rig.http.post(
            f"/cadences/{cadence_id}/pause", json={"reason": "copy review"}, headers=AUTH
        )
        assert r.status_code == 202, r.text
        answer = r.json()
        assert answer["journeys"] == 5
        told = [*answer["signalled"], *answer["skipped"]]
        assert len(told) <= INLINE  # the request itself signals a bounded few
        assert len(told) + answer["pending"] == 5

        status = f"/journey-operations/{answer['operation_id']}"

        async def finished() -> dict[str, Any] | None:
            body = (await rig.http.get(status, headers=AUTH)).json()
            return body if body["done"] else None

        done = await eventually(finished, "every journey of the cadence told")
        assert done == {
            "operation_id": answer["operation_id"],
            "operation": "cadence_pause",
            "journeys": 5,
            "pending": 0,
            "signalled": 4,
            "no_journey": 1,
            "failed": 0,
            "done": True,
        }
        for pid, handle in handles.items():
            pauses = [s for s in await signals_of(handle) if s["name"] == "pause"]
            assert [(p["payload"]["kind"], p["payload"]["reason"]) for p in pauses] == [
                ("cadence", "copy review")
            ], pid

        again = await rig.http.post(f"/cadences/{cadence_id}/resume", headers=AUTH)
        assert again.status_code == 202, again.text
        assert again.json()["operation_id"] != answer["operation_id"]
        missing = await rig.http.get("/journey-operations/nope", headers=AUTH)
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "journey_operation_not_found"


async def test_a_cadence_without_journeys_stores_no_operation(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        cadence_id = await new_cadence(rig.http)
        r = await rig.http.post(f"/cadences/{cadence_id}/stop", json={"reason": "x"}, headers=AUTH)
        assert r.status_code == 202, r.text
        assert r.json() == {
            "operation_id": None,
            "journeys": 0,
            "signalled": [],
            "skipped": {},
            "pending": 0,
        }
