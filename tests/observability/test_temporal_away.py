"""An API starts while Temporal is down (issue 12): /healthz answers, /readyz is 503 naming
Temporal, a route that needs Temporal answers 503 with Retry-After; once a Temporal server comes
up on the configured address the API connects by itself: /readyz goes 200 and the same
enrollment succeeds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from services.outreach.app import create_app as outreach_app
from shared.migrations import upgrade
from tests.support.apps import ServiceApp
from tests.support.eventually import eventually
from tests.support.fixtures import binary
from tests.support.ports import free_port
from tests.support.scenarios import fast_cadence
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, make_settings

SQLITE = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)


@SQLITE
async def test_an_api_starts_without_temporal_and_connects_once_it_is_up(
    tmp_path: Path, database_urls: dict[str, str], service_app: ServiceApp
) -> None:
    port = free_port()  # nothing listens here until the test starts a server on it
    settings = make_settings(tmp_path, database_urls, temporal_address=f"127.0.0.1:{port}")
    await asyncio.to_thread(upgrade, settings, "outreach")
    prospecting = await service_app("prospecting")
    app = outreach_app(settings, prospecting_transport=httpx.ASGITransport(prospecting))
    async with (
        app.router.lifespan_context(app),  # no Temporal client given: the app connects itself
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            transport=httpx.ASGITransport(app),
            base_url="http://test",
            headers=AUTH,
        ) as outreach,
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            transport=httpx.ASGITransport(prospecting),
            base_url="http://test",
            headers=AUTH,
        ) as prospects,
    ):
        assert (await outreach.get("/healthz")).status_code == 200
        ready = await outreach.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["temporal"].startswith("down: "), ready.json()

        # what needs no Temporal works: a cadence, a prospect
        cadence = await outreach.post("/cadences", json=fast_cadence())
        assert cadence.status_code in (200, 201), cadence.text
        person = {
            "first_name": "Tess",
            "last_name": "Away",
            "email": "tess.away@example.com",
            "timezone": "UTC",
        }
        prospect = await prospects.post("/prospects", json=person)
        assert prospect.status_code in (200, 201), prospect.text
        enrollment = {"prospect_id": prospect.json()["id"], "cadence_id": cadence.json()["id"]}

        refused = await outreach.post("/enrollments", json=enrollment)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "temporal_unreachable"
        assert "Temporal" in refused.json()["error"]["message"]

        env = await WorkflowEnvironment.start_local(
            port=port,
            namespace=settings.temporal_namespace,
            dev_server_existing_path=binary("temporal"),
            dev_server_extra_args=["--log-level", "error"],
        )
        try:

            async def ready_now() -> bool:
                return (await outreach.get("/readyz")).status_code == 200

            await eventually(ready_now, "outreach ready once Temporal is up")
            enrolled = await outreach.post("/enrollments", json=enrollment)
            assert enrolled.status_code == 200, enrolled.text
            journey = await env.client.get_workflow_handle(enrolled.json()["journey_id"]).describe()
            assert journey.workflow_type == "ProspectJourney"
        finally:
            await env.shutdown()
