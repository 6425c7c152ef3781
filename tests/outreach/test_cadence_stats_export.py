"""A cadence's numbers per step, channel and variant as CSV (issue 14: exports), the same as
GET /cadences/{id}/stats."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from services.outreach import models
from tests.support.apps import Api, ServiceApp

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True),
]
CADENCE = {
    "name": "Two steps",
    "steps": [
        {"channel": "email", "offset_seconds": 0, "subject": "Hi", "body": "Hi {{ first_name }}"},
        {"channel": "sms", "offset_seconds": 0, "body": "Hi {{ first_name }}"},
    ],
}


async def test_cadence_stats_export_as_csv(service_app: ServiceApp, api: Api) -> None:
    app = await service_app("outreach")
    http = await api(app)
    made = await http.post("/cadences", json=CADENCE)
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    async with app.state.sessions() as session:
        for i, (status, replied) in enumerate(
            [("delivered", True), ("delivered", False), ("bounced", False)]
        ):
            session.add(
                models.Message(
                    journey_id=f"journey-p{i}",
                    touch_key="=step-0",  # a formula-looking key: defused in the CSV
                    channel="email",
                    kind="cadence",
                    cadence_id=cid,
                    prospect_id=f"p{i}",
                    to_address=f"p{i}@example.com",
                    status=status,
                    replied_at=datetime.now(UTC) if replied else None,
                )
            )
        await session.commit()
    r = await http.get(f"/cadences/{cid}/stats.csv")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    [row] = list(csv.DictReader(io.StringIO(r.text)))
    assert row["touch"] == "'=step-0" and row["channel"] == "email"
    assert (row["sent"], row["delivered"], row["bounced"], row["replied"]) == ("3", "2", "1", "1")
    assert row["reply_rate"] == str(
        (await http.get(f"/cadences/{cid}/stats")).json()["steps"][0]["reply_rate"]
    )
    assert (await http.get("/cadences/nope/stats.csv")).status_code == 404
