"""A rep's manager (prospecting): set at creation, validated, and found by the journey's
escalation activity; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from services.prospecting.activities import ProspectingActivities
from services.prospecting.app import create_app
from shared.contracts.journey import RepRef
from shared.migrations import upgrade
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, make_settings


@pytest.fixture
async def api(
    database_urls: dict[str, str], tmp_path: Path, temporal_local: WorkflowEnvironment
) -> AsyncIterator[tuple[httpx.AsyncClient, ProspectingActivities]]:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "prospecting")
    app = create_app(settings, temporal_client=temporal_local.client)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=transport, base_url="http://test", headers=AUTH
        ) as http,
    ):
        yield http, ProspectingActivities(app.state.sessions)


async def test_manager_is_validated_stored_and_found_for_escalation(
    api: tuple[httpx.AsyncClient, ProspectingActivities],
) -> None:
    http, acts = api
    r = await http.post("/reps", json={"name": "Mia", "email": "mia@example.org"})
    assert r.status_code == 201, r.text
    manager = r.json()
    assert manager["manager_id"] is None

    r = await http.post(
        "/reps", json={"name": "Rita", "email": "rita@example.org", "manager_id": "nobody"}
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "manager_id"
    assert len((await http.get("/reps")).json()) == 1  # nothing written

    r = await http.post(
        "/reps",
        json={"name": "Rita", "email": "rita@example.org", "manager_id": manager["id"]},
    )
    assert (r.status_code, r.json()["manager_id"]) == (201, manager["id"])
    rep = r.json()
    assert (await http.get(f"/reps/{rep['id']}")).json()["manager_id"] == manager["id"]

    run = ActivityEnvironment().run
    found = await run(acts.get_rep_manager, RepRef(rep["id"]))
    assert (found.manager_id, found.manager_name, found.manager_email) == (
        manager["id"],
        "Mia",
        "mia@example.org",
    )
    assert (await run(acts.get_rep_manager, RepRef(manager["id"]))).manager_id is None
    with pytest.raises(ApplicationError) as err:
        await run(acts.get_rep_manager, RepRef("nobody"))
    assert err.value.non_retryable

    # a manager who left hears of no escalation: a new rep's would go nowhere
    gone = (await http.post("/reps", json={"name": "Gus", "email": "gus@example.org"})).json()
    assert (await http.patch(f"/reps/{gone['id']}", json={"active": False})).status_code == 200
    r = await http.post(
        "/reps", json={"name": "Tia", "email": "tia@example.org", "manager_id": gone["id"]}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "manager_id"
    assert "inactive" in r.json()["error"]["details"][0]["problem"]
    assert [x["name"] for x in (await http.get("/reps")).json()] == ["Mia", "Rita", "Gus"]
