"""Moving a cadence's running journeys to a new version: bounded requests, as the bulk pause.
The apply stores one migrate signal per journey (the inbox: durable, retried, never twice),
tells the first few itself and leaves the rest to the inbox relay; each enrollment takes the
version its journey says it runs once it was told. The dry run lists a page of journeys, read
from Temporal, with counts that need no Temporal read. Both read and signalled every journey
inside the request: tens of thousands of Temporal calls for a large cadence."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from services.outreach import models
from tests.support.journey_operations import CADENCE, INLINE, new_cadence, operation_done
from tests.support.runs import add_enrollment
from tests.support.settings import AUTH
from tests.support.webhooks import FAST, Rig, WebhookRigs, signals_of

FOLLOW_UP = {"channel": "email", "offset_seconds": 60, "subject": "Again", "body": "Again"}
NEWER: dict[str, Any] = {**CADENCE, "steps": [*CADENCE["steps"], FOLLOW_UP]}


async def versions(rig: Rig) -> dict[str, int]:
    async with rig.sessions() as s:
        e = models.Enrollment
        rows = await s.execute(select(e.prospect_id, e.cadence_version))
        return {pid: version for pid, version in rows.all()}


async def cadence_on_v2_with(rig: Rig, prospects: list[str]) -> str:
    """A cadence whose v2 exists, `prospects` enrolled on its v1."""
    cadence_id = await new_cadence(rig.http)
    async with rig.sessions() as s:
        for pid in prospects:
            await add_enrollment(s, pid)
        await s.commit()
    put = await rig.http.put(f"/cadences/{cadence_id}", json=NEWER, headers=AUTH)
    assert put.status_code == 200 and put.json()["version"] == 2, put.text
    return cadence_id


async def test_a_migration_is_stored_for_every_journey_and_told_by_the_relay(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks(replace(FAST, inline_items=INLINE)) as rig, rig.journeys():
        running = [uuid.uuid4().hex for _ in range(4)]
        ended = uuid.uuid4().hex  # enrolled, its journey no longer running
        cadence_id = await cadence_on_v2_with(rig, [*running, ended])
        handles = {pid: await rig.start_journey(pid, "contacting") for pid in running}

        r = await rig.http.post(f"/cadences/{cadence_id}/migration", headers=AUTH)
        answer, done = await operation_done(rig.http, r, 5)
        assert answer["to_version"] == 2
        assert done["operation"] == "cadence_migration"
        assert (done["journeys"], done["signalled"], done["no_journey"]) == (5, 4, 1)
        for pid, handle in handles.items():
            moves = [s for s in await signals_of(handle) if s["name"] == "migrate_cadence"]
            assert [m["payload"]["version"] for m in moves] == [2], pid
        # each enrollment follows its journey, the one whose journey had ended stays
        assert await versions(rig) == {**dict.fromkeys(running, 2), ended: 1}
        again = (await rig.http.get(f"/cadences/{cadence_id}/migration", headers=AUTH)).json()
        assert again["journeys"] == 1  # the ended run's enrollment, told apart by no read


async def test_an_enrollment_keeps_its_version_when_its_journey_did_not_move(
    webhooks: WebhookRigs,
) -> None:
    # the journey decides (past contacting or stopped it stays where it is): the enrollment
    # follows the version the journey says it runs once told, not the request's wish
    async with webhooks() as rig, rig.journeys():
        moving, past = uuid.uuid4().hex, uuid.uuid4().hex
        cadence_id = await cadence_on_v2_with(rig, [moving, past])
        await rig.start_journey(moving, "contacting")
        handle = await rig.start_journey(past, "qualifying")
        r = await rig.http.post(f"/cadences/{cadence_id}/migration", headers=AUTH)
        assert r.status_code == 202, r.text
        assert sorted(r.json()["signalled"]) == sorted([moving, past])
        moves = [s for s in await signals_of(handle) if s["name"] == "migrate_cadence"]
        assert len(moves) == 1  # told, and it stayed on its version
        assert await versions(rig) == {moving: 2, past: 1}


async def test_the_dry_run_lists_a_page_and_links_the_next(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig, rig.journeys():
        contacting = [uuid.uuid4().hex for _ in range(3)]
        qualifying = uuid.uuid4().hex  # past the cadence: counted, never listed
        cadence_id = await cadence_on_v2_with(rig, [*contacting, qualifying])
        for pid in contacting:
            await rig.start_journey(pid, "contacting")
        await rig.start_journey(qualifying, "qualifying")

        url = f"/cadences/{cadence_id}/migration"
        listed: list[str] = []
        pages = 0
        query = "?limit=2"
        while query:
            r = await rig.http.get(url + query, headers=AUTH)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["to_version"] == 2 and body["journeys"] == 4
            assert len(body["items"]) <= 2
            listed += [i["prospect_id"] for i in body["items"]]
            pages += 1
            link = r.headers.get("link")
            query = link[1 : link.index(">")] if link else ""
        assert pages == 2
        assert sorted(listed) == sorted(contacting)
        bad = await rig.http.get(f"{url}?limit=0", headers=AUTH)
        assert bad.status_code == 422, bad.text
