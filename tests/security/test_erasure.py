"""What erasure used to leave behind (issue 11): provider items kept aside with the address in
their raw body, inbox events nobody matched to the prospect, and an erased referrer's name in
the records and workflow inputs of the people they referred."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

# every service's models imported here, at collection: a migration run in a thread (service_app)
# must not import a models module while a running app's relay configures the mappers (a half-
# imported module fails them for the whole process)
import services.deals.models
import services.referrals.models  # noqa: F401
from services.outreach import models as outreach_models
from services.outreach.consent.erasure import erased_reason
from services.prospecting import models as prospecting_models
from services.prospecting.outbox import OutboxRelay
from shared.codec import payload_keys
from shared.erasure import digest
from shared.providers.mailgun import event_payload, inbound_form
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
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


async def _texts_of(app: FastAPI, *tables: Any) -> str:
    """Every row of the tables, as one lower-cased text (to look for an address in any column)."""
    async with app.state.sessions() as session:
        rows = [r for t in tables for r in (await session.execute(select(t.__table__))).all()]
    return repr(rows).lower()


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erased_persons_later_texts_mails_and_bounces_store_nothing_of_them(
    service_app: ServiceApp, api: Api
) -> None:
    """After the erasure, the person writes STOP, replies by email, unsubscribes by email and an
    old email of theirs bounces: none of it may put their address (or their words) back in
    outreach's tables in clear. The digests keep them from being contacted."""
    app = await service_app("outreach", outreach_public_url="http://test")
    settings = app.state.settings
    pepper = settings.erasure_pepper.get_secret_value()
    client = await api(app, key=False)
    order = {
        "erasure_id": "e1",
        "prospect_id": "p-ada",
        "email": ADA_EMAIL,
        "phone": ADA_PHONE,
        "email_digest": digest(pepper, "email", ADA_EMAIL),
        "phone_digest": digest(pepper, "phone", ADA_PHONE),
    }
    erased = await client.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
    assert erased.status_code == 200, erased.text

    url = "http://test/webhooks/twilio/sms"
    for body in ("STOP", "who gave you my number?"):
        form = {"AccountSid": settings.twilio_account_sid, "MessageSid": f"SM{uuid.uuid4().hex}"}
        form |= {"From": ADA_PHONE, "To": "+15005550006", "Body": body}
        token = settings.twilio_auth_token.get_secret_value()
        headers = {SIGNATURE_HEADER: sign_twilio_request(token, url, form)}
        assert (await client.post(url, data=form, headers=headers)).status_code == 200
    key = settings.mailgun_signing_key.get_secret_value()
    for subject in ("unsubscribe", "Re: Quick question"):
        mail = inbound_form(
            sender="Ada.L@Example.com",
            recipient="sales@closeflow.test",
            subject=subject,
            text="Please forget me, Ada Lovelace",
            in_reply_to=None,
            references=None,
            message_id=f"<{uuid.uuid4().hex}@mail.example>",
            signing_key=key,
            now=time.time(),
        )
        assert (await client.post("/webhooks/mailgun/inbound", data=mail)).status_code == 200
    bounce = event_payload(
        event="failed",
        recipient=ADA_EMAIL,
        message_id=f"<{uuid.uuid4().hex}@closeflow.test>",
        event_id=uuid.uuid4().hex,
        severity="permanent",
        reason="bounce",
        signing_key=key,
        now=time.time(),
    )
    assert (await client.post("/webhooks/mailgun/events", json=bounce)).status_code == 200

    m = outreach_models
    kept = await _texts_of(app, m.Suppression, m.ConsentRecord, m.InboxEvent, m.RejectedItem)
    for trace in (ADA_EMAIL, ADA_PHONE, ADA_PHONE.removeprefix("+"), "ada lovelace"):
        assert trace not in kept, f"{trace} is back in outreach's tables: {kept}"
    # still never contacted: the digests answer for them
    async with app.state.sessions() as session:
        for channel, address in (("email", ADA_EMAIL), ("sms", ADA_PHONE)):
            assert await erased_reason(session, pepper, channel, address)


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erasure_order_a_service_refuses_keeps_no_plain_pii_in_the_outbox(
    service_app: ServiceApp, api: Api
) -> None:
    """A 400/422 ends the order (`failed`, never sent again): its row kept the plain email,
    phone and name for good. Confirmed or refused, the row keeps ids and digests only."""
    p = prospecting_models
    prospecting = await service_app("prospecting")
    await prospecting.state.outbox.stop()  # this test's relay posts the orders
    async with prospecting.state.sessions() as session:
        session.add(
            p.Prospect(
                id="p-ada", first_name="Ada", last_name="Lovelace", email=ADA_EMAIL, phone=ADA_PHONE
            )
        )
        await session.commit()
    started = await (await api(prospecting)).post("/prospects/p-ada/erasure")
    assert started.status_code == 202, started.text

    answers = {"outreach": 422, "deals": 200, "referrals": 400}  # the other services, refusing
    peers = httpx.MockTransport(
        lambda request: httpx.Response(answers[request.url.host], json={"error": {}})
    )
    settings = prospecting.state.settings.model_copy(
        update={f"{s}_url": f"http://{s}" for s in answers}
    )
    relay = OutboxRelay(lambda: prospecting.state.sessions, settings, transport=peers)
    assert await relay.run_once() == 3
    await relay.stop()

    async with prospecting.state.sessions() as session:
        rows = (await session.execute(select(p.OutboxMessage.target, p.OutboxMessage.status))).all()
    assert sorted(rows) == [("deals", "done"), ("outreach", "failed"), ("referrals", "failed")]
    kept = await _texts_of(prospecting, p.OutboxMessage)
    for trace in (ADA_EMAIL, ADA_PHONE, "ada lovelace"):
        assert trace not in kept, f"{trace} stayed in the outbox: {kept}"
    # the order still names whom it erased: its digests, for the operator to act on
    pepper = prospecting.state.settings.erasure_pepper.get_secret_value()
    assert digest(pepper, "email", ADA_EMAIL) in kept
