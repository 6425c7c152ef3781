"""The simulation endpoint: a cadence's timeline for a time zone and a start, in UTC and local."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from services.outreach.app import create_app
from shared.migrations import upgrade
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, make_settings

CADENCE = {
    "name": "Business hours",
    "steps": [
        {"channel": "email", "offset_seconds": 0, "subject": "Hi", "body": "Hi {{ first_name }}"},
        {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}"},
        {
            "channel": "email",
            "offset_seconds": 0,
            "business_days": 1,
            "subject": "unused",
            "body": "unused",
            "variants": [
                {"name": "short", "subject": "Short follow-up", "body": "?", "weight": 1},
                {"name": "long", "subject": "Long follow-up", "body": "...", "weight": 1},
            ],
        },
        {"channel": "call_task", "offset_seconds": 0, "business_days": 1, "body": "Call them"},
    ],
    "send_window": {
        "days": [0, 1, 2, 3, 4],
        "start_hour": 9,
        "end_hour": 17,
        "holidays": ["2026-12-01"],
    },
    "nurture_after_seconds": 86400,
}


async def test_timeline_in_the_prospects_zone(
    tmp_path: Path, temporal_local: WorkflowEnvironment
) -> None:
    settings = make_settings(tmp_path)
    await asyncio.to_thread(upgrade, settings, "outreach")
    app = create_app(settings, temporal_client=temporal_local.client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            transport=httpx.ASGITransport(app),
            base_url="http://t",
            headers=AUTH,
        ) as api,
    ):
        created = await api.post("/cadences", json=CADENCE)
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        # Friday 20:00 in New York: outside the 09-17 window
        body = {"timezone": "America/New_York", "start_at": "2026-11-27T20:00:00-05:00"}
        timeline = (await api.post(f"/cadences/{cid}/simulate", json=body)).json()
        first, second = timeline["touches"]
        assert [s["channel"] for s in first["sends"]] == ["email", "sms"]
        for send in first["sends"]:
            assert send["send_at_local"] == "2026-11-30T09:00:00-05:00"  # Monday 09:00
            assert send["send_at_utc"] == "2026-11-30T14:00:00+00:00"
            assert send["waits_for_window"] is True
        # one business day after Friday is Monday (20:00, outside the window); Tuesday 1
        # December is a holiday, so it goes out on Wednesday at 09:00
        assert second["due_local"] == "2026-11-30T20:00:00-05:00"
        assert second["sends"][0]["send_at_local"] == "2026-12-02T09:00:00-05:00"
        assert second["sends"][0]["variant"] in ("short", "long")
        assert second["sends"][0]["subject"].endswith("follow-up")
        # the call task is made when the touch is due (20:00), due when a call is allowed then
        call = second["sends"][1]
        assert call["channel"] == "call_task" and "task_due_utc" not in second["sends"][0]
        assert call["send_at_local"] == "2026-11-30T20:00:00-05:00"
        assert call["task_due_local"] == "2026-12-02T09:00:00-05:00"
        assert call["task_due_utc"] == "2026-12-02T14:00:00+00:00"
        assert timeline["timezone_inferred"] is False

        inferred = (
            await api.post(
                f"/cadences/{cid}/simulate",
                json={"phone": "+33612345678", "start_at": "2026-11-27T20:00:00+00:00"},
            )
        ).json()
        assert inferred["timezone"] == "Europe/Paris" and inferred["timezone_inferred"] is True
        assert inferred["touches"][0]["sends"][0]["send_at_local"] == "2026-11-30T09:00:00+01:00"

        naive = await api.post(
            f"/cadences/{cid}/simulate", json={"start_at": "2026-11-27T20:00:00"}
        )
        assert (
            naive.status_code == 422 and naive.json()["error"]["details"][0]["field"] == "start_at"
        )
        missing = await api.post("/cadences/nope/simulate", json={})
        assert missing.status_code == 404


async def test_preview_renders_each_step_for_a_real_prospect(
    tmp_path: Path, temporal_local: WorkflowEnvironment
) -> None:
    from services.prospecting.app import create_app as prospecting_app

    settings = make_settings(tmp_path)
    for service in ("outreach", "prospecting"):
        await asyncio.to_thread(upgrade, settings, service)
    pros = prospecting_app(settings, temporal_client=temporal_local.client)
    out = create_app(
        settings,
        temporal_client=temporal_local.client,
        prospecting_transport=httpx.ASGITransport(pros),
    )
    cadence = {
        **CADENCE,
        "steps": [
            {
                "channel": "email",
                "offset_seconds": 0,
                "subject": "Hello {{ first_name }} at {{ company }}",
                "body": "Dear {{ title | default('friend') }}, {{ rep_name }} here.",
            },
            {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}"},
        ],
    }
    async with (
        pros.router.lifespan_context(pros),
        out.router.lifespan_context(out),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            transport=httpx.ASGITransport(pros),
            base_url="http://p",
            headers=AUTH,
        ) as p_api,
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT,
            transport=httpx.ASGITransport(out),
            base_url="http://o",
            headers=AUTH,
        ) as o_api,
    ):
        prospect = (
            await p_api.post(
                "/prospects",
                json={"first_name": "Ada", "email": "ada@example.com", "company": "Engines"},
            )
        ).json()
        cid = (await o_api.post("/cadences", json=cadence)).json()["id"]
        shown = await o_api.post(f"/cadences/{cid}/preview", json={"prospect_id": prospect["id"]})
        assert shown.status_code == 200, shown.text
        email, sms = shown.json()["touches"][0]["steps"]
        assert email["subject"] == "Hello Ada at Engines"
        assert email["body"] == "Dear friend, the closeflow team here."  # no title, no rep
        assert sms["body"] == "Hi Ada"
        unknown = await o_api.post(f"/cadences/{cid}/preview", json={"prospect_id": "nobody"})
        assert unknown.status_code == 404
