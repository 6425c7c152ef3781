"""Which cadences the ops dashboard shows when outreach has more than it has room for."""

from __future__ import annotations

import pytest

from services.prospecting.dashboard import MAX_CADENCES
from tests.support.apps import Api, ServiceApp
from tests.support.ports import free_port
from tests.support.serve import serve

pytestmark = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
STEPS = [
    {"channel": "email", "subject": "Hi", "body": "Hi {{ first_name }}"},
    {"channel": "sms", "body": "Hi {{ first_name }}"},
]


async def test_the_newest_cadences_are_shown_and_the_rest_are_counted(
    service_app: ServiceApp, api: Api
) -> None:
    outreach = await service_app("outreach")
    out = await api(outreach)
    ids = []
    for i in range(MAX_CADENCES + 2):
        made = await out.post("/cadences", json={"name": f"Cadence {i}", "steps": STEPS})
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    async with serve(outreach, free_port(), lifespan=False) as outreach_url:
        http = await api("prospecting", outreach_url=outreach_url)
        page = await http.get("/ui/dashboard")
        # filtered by a cadence, as the funnel above it is: that cadence's numbers alone (it
        # listed every cadence's)
        one = await http.get("/ui/dashboard", params={"cadence_id": ids[3]})
    assert one.status_code == 200, one.text
    assert [i for i in ids if f'data-cadence="{i}"' in one.text] == [ids[3]]
    assert 'data-testid="cadences-not-shown"' not in one.text
    assert page.status_code == 200, page.text
    shown = [i for i in ids if f'data-cadence="{i}"' in page.text]
    assert shown == ids[-MAX_CADENCES:]  # the one made last is there, the two oldest are not
    assert page.text.index(ids[-1]) < page.text.index(ids[2])  # newest first
    assert 'data-testid="cadences-not-shown"' in page.text and "2 older cadences" in page.text
