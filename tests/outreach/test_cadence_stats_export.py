"""A cadence's numbers per step, channel and variant as CSV (issue 14: exports), the same as
GET /cadences/{id}/stats."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

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


def replied_at(replied: bool) -> datetime | None:
    return datetime.now(UTC) if replied else None


def message(cid: str, i: int, channel: str, status: str, **fields: Any) -> models.Message:
    """Prospect i's message of the cadence's first touch."""
    address = f"p{i}@example.com" if channel == "email" else f"+1415555000{i}"
    values: dict[str, Any] = {"touch_key": "step-0", **fields}
    return models.Message(
        journey_id=f"journey-p{i}",
        channel=channel,
        kind="cadence",
        cadence_id=cid,
        prospect_id=f"p{i}",
        to_address=address,
        status=status,
        **values,
    )


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
            # a formula-looking key: defused in the CSV
            session.add(
                message(
                    cid, i, "email", status, touch_key="=step-0", replied_at=replied_at(replied)
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


async def test_a_message_that_never_went_out_is_not_counted_sent(
    service_app: ServiceApp, api: Api
) -> None:
    """`failed` is also the status of a message that never left: a template that could not
    render for the prospect, an address the provider refused at the send. Those were counted as
    sent (a template error across a cadence showed hundreds of sends and a reply rate divided by
    them); a text that went and then failed on the way (Twilio's `undelivered`) was sent."""
    app = await service_app("outreach")
    http = await api(app)
    made = await http.post("/cadences", json=CADENCE)
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    now = datetime.now(UTC)
    async with app.state.sessions() as session:
        for i, (status, sent_at, error) in enumerate(
            [
                ("failed", None, "template: step-0 sms body: the rendered text is too long"),
                ("failed", None, "Twilio 400 21211: not a valid phone number"),
                ("failed", now, "Twilio error 30003: Unreachable destination handset"),
                ("submitted", now, ""),
            ]
        ):
            replied = replied_at(i == 3)
            session.add(
                message(cid, i, "sms", status, sent_at=sent_at, error=error, replied_at=replied)
            )
        await session.commit()
    [step] = (await http.get(f"/cadences/{cid}/stats")).json()["steps"]
    assert (step["sent"], step["replied"], step["reply_rate"]) == (2, 1, 0.5)


async def test_steps_come_in_cadence_order_past_the_tenth(
    service_app: ServiceApp, api: Api
) -> None:
    """Touch keys are text (step-0 .. step-99): step-10 is the eleventh touch, not the third."""
    app = await service_app("outreach")
    http = await api(app)
    made = await http.post("/cadences", json=CADENCE)
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    touches = ["step-10", "step-2", "step-0", "step-1", "step-11"]
    async with app.state.sessions() as session:
        for i, touch in enumerate(touches):
            session.add(
                models.Message(
                    journey_id="journey-p",
                    touch_key=touch,
                    channel="email",
                    kind="cadence",
                    cadence_id=cid,
                    prospect_id="p",
                    to_address="p@example.com",
                    status="delivered",
                    variant="B" if i % 2 else "A",
                )
            )
        await session.commit()
    order = ["step-0", "step-1", "step-2", "step-10", "step-11"]
    steps = (await http.get(f"/cadences/{cid}/stats")).json()["steps"]
    assert [s["touch"] for s in steps] == order
    rows = list(csv.DictReader(io.StringIO((await http.get(f"/cadences/{cid}/stats.csv")).text)))
    assert [r["touch"] for r in rows] == order


async def test_the_cadence_list_costs_the_same_few_statements_however_many_cadences(
    service_app: ServiceApp, api: Api
) -> None:
    """GET /cadences (the dashboard asks it on every load) read each cadence's current version
    with a statement of its own: N+1."""
    app = await service_app("outreach")
    http = await api(app)
    engine = app.state.engine.sync_engine
    sent: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "cadence" in statement:  # the app's background loops share the engine
            sent.append(statement)

    async def statements_to_list() -> int:
        sent.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            listed = await http.get("/cadences")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert listed.status_code == 200, listed.text
        return len(sent)

    made = []
    for _ in range(6):
        r = await http.post("/cadences", json=CADENCE)
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
        if len(made) == 2:  # after a first request: what the app reads once is read
            two = await statements_to_list()
    edited = await http.put(f"/cadences/{made[2]}", json={**CADENCE, "name": "Edited"})
    assert edited.status_code == 200, edited.text
    six = await statements_to_list()
    assert six == two, sent
    listed = (await http.get("/cadences")).json()
    assert [c["id"] for c in listed] == made
    assert [(c["version"], c["name"]) for c in listed][1:4] == [
        (1, "Two steps"),
        (2, "Edited"),
        (1, "Two steps"),
    ]
