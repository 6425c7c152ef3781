"""What erasure used to leave behind (issue 11): provider items kept aside with the address in
their raw body, inbox events nobody matched to the prospect, and an erased referrer's name in
the records and workflow inputs of the people they referred."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

# every service's models imported here, at collection: a migration run in a thread (service_app)
# must not import a models module while a running app's relay configures the mappers (a half-
# imported module fails them for the whole process)
import services.deals.models
import services.referrals.models  # noqa: F401
from services.outreach import models as outreach_models
from services.prospecting import models as prospecting_models
from shared.codec import payload_keys
from tests.support.apps import Api, ServiceApp
from tests.support.settings import SERVICE_AUTH

ADA_EMAIL, ADA_PHONE = "ada.l@example.com", "+14155550123"


async def _rows(app: FastAPI, column: Any) -> list[Any]:
    async with app.state.sessions() as session:
        return list((await session.scalars(select(column).order_by(column))).all())


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_outreach_erases_unmatched_events_and_rejected_items_by_address(
    service_app: ServiceApp, api: Api
) -> None:
    app = await service_app("outreach")
    m = outreach_models
    async with app.state.sessions() as session:
        session.add_all(
            [
                # form-encoded, as Mailgun and Twilio post them; the case as the sender typed it
                m.RejectedItem(
                    provider="mailgun", raw="recipient=Ada.L%40Example.com&x=1", reason="r"
                ),
                m.RejectedItem(provider="twilio", raw="From=%2B14155550123&Body=hi", reason="r"),
                m.RejectedItem(
                    provider="sendgrid", raw='[{"email": "ada.l@example.com"}]', reason="r"
                ),
                m.RejectedItem(provider="mailgun", raw="recipient=bo%40example.com", reason="keep"),
                m.InboxEvent(
                    provider="mailgun",
                    event_id="e-ada",
                    kind="bounce",
                    payload={"recipient": "Ada.L@example.com", "event": "failed"},
                ),
                m.InboxEvent(
                    provider="twilio",
                    event_id="e-ada-sms",
                    kind="inbound_sms",
                    payload={"From": ADA_PHONE, "Body": "who is this?"},
                ),
                m.InboxEvent(
                    provider="mailgun",
                    event_id="e-bo",
                    kind="bounce",
                    payload={"recipient": "bo@example.com"},
                ),
                m.InboxEvent(
                    provider="mailgun",
                    event_id="e-other-prospect",
                    kind="reply",
                    payload={"body": "cc ada.l@example.com"},
                    prospect_id="p-bo",  # another person's record: theirs to keep
                ),
            ]
        )
        await session.commit()

    client = await api(app)
    order = {"erasure_id": "e1", "prospect_id": "p-ada", "email": ADA_EMAIL, "phone": ADA_PHONE}
    answer = await client.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json()["deleted"]["rejected_items"] == 3
    assert answer.json()["deleted"]["inbox_events"] == 2
    assert await _rows(app, m.RejectedItem.reason) == ["keep"]
    assert await _rows(app, m.InboxEvent.event_id) == ["e-bo", "e-other-prospect"]
    again = await client.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert again.json()["deleted"]["rejected_items"] == 0


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erased_referrers_name_leaves_the_records_of_those_they_referred(
    service_app: ServiceApp, api: Api
) -> None:
    p = prospecting_models
    prospecting = await service_app("prospecting")
    at = datetime.now(UTC)
    async with prospecting.state.sessions() as session:
        session.add(p.Prospect(id="p-ada", first_name="Ada", last_name="Lovelace", email=ADA_EMAIL))
        session.add(
            p.Prospect(
                id="p-grace", first_name="Grace", referrer_prospect_id="p-ada", referral_id="ref-1"
            )
        )
        session.add(p.Prospect(id="p-bo", first_name="Bo"))
        for pid, cause in (("p-grace", "referred by Ada Lovelace"), ("p-bo", "first touch")):
            session.add(
                p.StageHistory(
                    key=f"{pid}-1", prospect_id=pid, to_stage="qualifying", cause=cause, at=at
                )
            )
        await session.commit()
    started = await (await api(prospecting)).post("/prospects/p-ada/erasure")
    assert started.status_code == 202, started.text
    causes = await _rows(prospecting, p.StageHistory.cause)
    assert causes == ["first touch", "referred by client p-ada"]
    async with prospecting.state.sessions() as session:
        orders = (await session.scalars(select(p.OutboxMessage.payload))).all()
    assert {(o["name"], tuple(o["referred_prospect_ids"])) for o in orders} == {
        ("Ada Lovelace", ("p-grace",))
    }

    # Grace's erasure shreds her payload key and her referral intake's
    erased = await (await api(prospecting)).post("/prospects/p-grace/erasure")
    assert erased.status_code == 202, erased.text
    shredded = await _rows(prospecting, payload_keys.c.scope)
    assert shredded == ["p-ada", "p-grace", "referral:ref-1"]

    # outreach: the introduction Grace received quotes Ada; its text loses the name
    outreach = await service_app("outreach")
    m = outreach_models
    async with outreach.state.sessions() as session:
        for pid, body in (("p-grace", "Ada Lovelace suggested we talk"), ("p-bo", "Hi Bo")):
            session.add(
                m.Message(
                    journey_id=f"journey-{pid}",
                    touch_key="warm-intro",
                    channel="email",
                    kind="warm_intro",
                    prospect_id=pid,
                    to_address=f"{pid}@example.com",
                    subject=body,
                    body=f"Hi,\n\n{body}.",
                )
            )
        await session.commit()
    answer = await (await api(outreach)).post(
        "/internal/erasures", json=orders[0], headers=SERVICE_AUTH
    )
    assert answer.status_code == 200, answer.text
    assert await _rows(outreach, m.Message.subject) == [
        "A client of ours suggested we talk",
        "Hi Bo",
    ]
