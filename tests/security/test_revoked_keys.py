"""Issue 11: a revoked issued key stops working in the other services within a second (it was
30 s), unknown keys are never cached, and the cache is a bounded LRU. Prospecting and outreach
run in process; outreach asks prospecting through an ASGI transport, on a clock the test moves."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.issued_keys import CACHE_SECONDS, INTROSPECT_PATH, IntrospectedKeys
from tests.support.apps import Api, ServiceApp
from tests.support.settings import API_KEY, SERVICE_AUTH

RITAS_KEY = "rita-" + "k" * 32
ON_SQLITE = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingTransport(httpx.AsyncBaseTransport):
    """The real prospecting app behind it; counts the key checks that reach it."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app)
        self.introspections = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == INTROSPECT_PATH:
            self.introspections += 1
        return await self.inner.handle_async_request(request)


async def _wired(
    service_app: ServiceApp, api: Api, settings: dict[str, str] | None = None, **cache: float
) -> tuple[httpx.AsyncClient, httpx.AsyncClient, CountingTransport, Clock]:
    prospecting = await service_app("prospecting", **(settings or {}))
    outreach = await service_app("outreach", **(settings or {}))
    transport, clock = CountingTransport(prospecting), Clock()
    lookup = IntrospectedKeys(
        "http://prospecting", SERVICE_AUTH["X-API-Key"], transport, clock=clock, **cache
    )
    outreach.state.key_lookup = lookup
    outreach.state.rep_check = lookup.rep_deactivated
    outreach.state.cleanup.append(lookup.close)
    return await api(prospecting), await api(outreach, key=False), transport, clock


async def _issue(prospecting: httpx.AsyncClient) -> tuple[str, str]:
    made = await prospecting.post("/api-keys", json={"name": "ops laptop", "role": "ops"})
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


async def _works_while_the_rep_is_active(
    prospecting: httpx.AsyncClient,
    outreach: httpx.AsyncClient,
    clock: Clock,
    rep_id: str,
    ritas: dict[str, str],
) -> None:
    """The rep's key works in both services; deactivated, it is refused in prospecting at once
    and in outreach once the cached answer expires; re-activated, it works again."""
    own_rep, own_tasks = f"/reps/{rep_id}", f"/reps/{rep_id}/tasks"
    assert (await prospecting.get(own_rep, headers=ritas)).status_code == 200
    assert (await outreach.get(own_tasks, headers=ritas)).status_code == 200

    left = await prospecting.patch(own_rep, json={"active": False})
    assert left.status_code == 200, left.text
    clock.now += CACHE_SECONDS
    for client, path in ((prospecting, own_rep), (outreach, own_tasks)):
        answer = await client.get(path, headers=ritas)
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_api_key")

    back = await prospecting.patch(own_rep, json={"active": True})
    assert back.status_code == 200, back.text
    for client, path in ((prospecting, own_rep), (outreach, own_tasks)):
        assert (await client.get(path, headers=ritas)).status_code == 200


@ON_SQLITE
async def test_a_revoked_key_stops_working_elsewhere_within_a_second(
    service_app: ServiceApp, api: Api
) -> None:
    prospecting, outreach, _, clock = await _wired(service_app, api)
    key_id, key = await _issue(prospecting)
    assert (await outreach.get("/cadences", headers={"X-API-Key": key})).status_code == 200
    assert (await prospecting.delete(f"/api-keys/{key_id}")).status_code == 204
    clock.now += CACHE_SECONDS
    answer = await outreach.get("/cadences", headers={"X-API-Key": key})
    assert answer.status_code == 401, answer.text
    assert CACHE_SECONDS <= 1.0


@ON_SQLITE
async def test_unknown_keys_are_asked_about_every_time(service_app: ServiceApp, api: Api) -> None:
    _, outreach, transport, _ = await _wired(service_app, api)
    made_up = {"X-API-Key": "cf_" + "x" * 43}
    for _ in range(3):
        assert (await outreach.get("/cadences", headers=made_up)).status_code == 401
    assert transport.introspections == 3


@ON_SQLITE
async def test_the_cache_is_a_bounded_lru(service_app: ServiceApp, api: Api) -> None:
    prospecting, outreach, transport, _ = await _wired(service_app, api, max_entries=2)
    keys = [(await _issue(prospecting))[1] for _ in range(3)]
    for key in (keys[0], keys[1], keys[0], keys[2]):  # keys[1] is the least recently used
        assert (await outreach.get("/cadences", headers={"X-API-Key": key})).status_code == 200
    assert transport.introspections == 3
    assert (await outreach.get("/cadences", headers={"X-API-Key": keys[0]})).status_code == 200
    assert transport.introspections == 3  # still cached
    assert (await outreach.get("/cadences", headers={"X-API-Key": keys[1]})).status_code == 200
    assert transport.introspections == 4  # evicted, asked again


@ON_SQLITE
async def test_a_deactivated_reps_issued_key_stops_working_everywhere(
    service_app: ServiceApp, api: Api
) -> None:
    """A rep who left (`active: false`) keeps no access through the keys issued to them: in
    prospecting at once, elsewhere once the cached answer expires; back at work, they work."""
    prospecting, outreach, _, clock = await _wired(service_app, api)
    rep = await prospecting.post("/reps", json={"name": "Rita", "email": "rita@ex.com"})
    assert rep.status_code == 201, rep.text
    rep_id = rep.json()["id"]
    made = await prospecting.post(
        "/api-keys", json={"name": "Rita's laptop", "role": "rep", "rep_id": rep_id}
    )
    assert made.status_code == 201, made.text
    ritas = {"X-API-Key": made.json()["key"]}
    await _works_while_the_rep_is_active(prospecting, outreach, clock, rep_id, ritas)

    # the key list says which keys answer 401 now: an admin sees it was not revoked, yet stopped
    async def listed() -> dict[str, Any]:
        keys = (await prospecting.get("/api-keys")).json()
        return {k["id"]: (k["revoked_at"], k["works"]) for k in keys}

    assert (await listed())[made.json()["id"]] == (None, True)
    assert (await prospecting.patch(f"/reps/{rep_id}", json={"active": False})).is_success
    assert (await listed())[made.json()["id"]] == (None, False)
    assert (await prospecting.delete(f"/api-keys/{made.json()['id']}")).status_code == 204
    assert (await prospecting.patch(f"/reps/{rep_id}", json={"active": True})).is_success
    assert (await listed())[made.json()["id"]][1] is False


@ON_SQLITE
async def test_a_deactivated_reps_configured_key_stops_working_everywhere(
    service_app: ServiceApp, api: Api
) -> None:
    """A rep's key in CLOSEFLOW_API_KEYS stops with the rep as their issued keys do: the services
    ask prospecting about the rep's standing, on the same one-second cache."""
    # the rep first (through an app on the same database): the setting names their id
    rep = await (await api("prospecting")).post("/reps", json={"name": "Rita", "email": "r@ex.com"})
    assert rep.status_code == 201, rep.text
    rep_id = rep.json()["id"]
    keys = f"{API_KEY}, rep:{rep_id}:{RITAS_KEY}"
    prospecting, outreach, _, clock = await _wired(service_app, api, {"api_keys": keys})
    ritas = {"X-API-Key": RITAS_KEY}
    await _works_while_the_rep_is_active(prospecting, outreach, clock, rep_id, ritas)


async def test_no_key_is_issued_to_a_deactivated_rep(service_app: ServiceApp, api: Api) -> None:
    """A key for a rep who left would be refused on every call (401): issuing one is refused
    instead, saying why, and nothing is stored (on PostgreSQL the rep's row is held meanwhile)."""
    prospecting, _, _, _ = await _wired(service_app, api)
    rep = await prospecting.post("/reps", json={"name": "Rita", "email": "rita@ex.com"})
    assert rep.status_code == 201, rep.text
    rep_id = rep.json()["id"]
    left = await prospecting.patch(f"/reps/{rep_id}", json={"active": False})
    assert left.status_code == 200, left.text
    made = await prospecting.post(
        "/api-keys", json={"name": "Rita's laptop", "role": "rep", "rep_id": rep_id}
    )
    assert made.status_code == 422, made.text
    assert made.json()["error"]["details"] == [
        {"field": "rep_id", "problem": f"rep {rep_id} is inactive: activate them first"}
    ]
    assert (await prospecting.get("/api-keys")).json() == []
