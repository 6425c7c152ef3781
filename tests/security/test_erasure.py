"""What erasure used to leave behind (issue 11): provider items kept aside with the address in
their raw body, inbox events nobody matched to the prospect, and an erased referrer's name in
the records and workflow inputs of the people they referred."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select

# every service's models imported here, at collection: a migration run in a thread (service_app)
# must not import a models module while a running app's relay configures the mappers (a half-
# imported module fails them for the whole process)
import services.referrals.models  # noqa: F401
from services.deals import models as deals_models
from services.outreach import models as outreach_models
from services.outreach.consent.erasure import erased_reason
from services.prospecting import models as prospecting_models
from services.prospecting.outbox import OutboxRelay
from services.prospecting.service import stage_event
from shared.codec import payload_keys
from shared.db import create_engine, session_factory
from shared.erasure import REFERRED_PER_ORDER, digest
from shared.events import event_body
from shared.migrations import upgrade
from shared.providers import postmark, sendgrid
from shared.providers.mailgun import event_payload, inbound_form
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
from tests.support.apps import Api, ServiceApp
from tests.support.eventually import eventually
from tests.support.imap import PASSWORD as IMAP_PASSWORD
from tests.support.imap import bounce as imap_bounce
from tests.support.imap import dovecot
from tests.support.imap import reply as imap_reply
from tests.support.settings import SERVICE_AUTH, make_settings

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
        tables = tuple(getattr(t, "__table__", t) for t in tables)  # models or tables
        rows = [r for t in tables for r in (await session.execute(select(t))).all()]
    # as tuples: a Row's own repr cuts long values short (an address deep in a payload)
    return repr([tuple(r) for r in rows]).lower()


async def _erase_ada(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Outreach erases Ada (the order as prospecting's relay posts it, digests included)."""
    pepper = app.state.settings.erasure_pepper.get_secret_value()
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


async def _assert_nothing_of_ada(app: FastAPI) -> None:
    """Neither Ada's address nor her words are back in outreach's tables, and the digests
    still keep her from being contacted."""
    m = outreach_models
    kept = await _texts_of(
        app, m.Suppression, m.ConsentRecord, m.InboxEvent, m.RejectedItem, m.Message
    )
    for trace in (ADA_EMAIL, ADA_PHONE, ADA_PHONE.removeprefix("+"), "ada lovelace"):
        assert trace not in kept, f"{trace} is back in outreach's tables: {kept}"
    pepper = app.state.settings.erasure_pepper.get_secret_value()
    async with app.state.sessions() as session:
        for channel, address in (("email", ADA_EMAIL), ("sms", ADA_PHONE)):
            assert await erased_reason(session, pepper, channel, address)


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erased_persons_later_texts_mails_and_bounces_store_nothing_of_them(
    service_app: ServiceApp, api: Api
) -> None:
    """After the erasure, the person writes STOP, replies by email, unsubscribes by email and an
    old email of theirs bounces: none of it may put their address (or their words) back in
    outreach's tables in clear. The digests keep them from being contacted."""
    app = await service_app("outreach", outreach_public_url="http://test")
    settings = app.state.settings
    client = await api(app, key=False)
    await _erase_ada(app, client)

    url = "http://test/webhooks/twilio/sms"
    # the last from Bo, who names her: his text is kept, her number and address in it are not
    texts = [(ADA_PHONE, "STOP"), (ADA_PHONE, "who gave you my number?")]
    texts += [("+14155550199", f"Ada moved: {ADA_PHONE}, {ADA_EMAIL}")]
    for sender, body in texts:
        form = {"AccountSid": settings.twilio_account_sid, "MessageSid": f"SM{uuid.uuid4().hex}"}
        form |= {"From": sender, "To": "+15005550006", "Body": body}
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
    await _assert_nothing_of_ada(app)
    assert await _inbox_event_count(app) == 1  # Bo's


async def _ada_erased_in_prospecting(service_app: ServiceApp, api: Api) -> FastAPI:
    """Prospecting, having erased Ada: her three orders wait in its outbox, its relay stopped
    (the test posts them with its own)."""
    prospecting = await service_app("prospecting")
    await prospecting.state.outbox.stop()
    async with prospecting.state.sessions() as session:
        session.add(
            prospecting_models.Prospect(
                id="p-ada", first_name="Ada", last_name="Lovelace", email=ADA_EMAIL, phone=ADA_PHONE
            )
        )
        await session.commit()
    started = await (await api(prospecting)).post("/prospects/p-ada/erasure")
    assert started.status_code == 202, started.text
    return prospecting


async def _relay_orders(prospecting: FastAPI, answers: dict[str, httpx.Response]) -> None:
    """One pass of a relay whose peers (outreach, deals, referrals) give these answers."""
    peers = httpx.MockTransport(lambda request: answers[request.url.host])
    settings = prospecting.state.settings.model_copy(
        update={f"{s}_url": f"http://{s}" for s in answers}
    )
    relay = OutboxRelay(lambda: prospecting.state.sessions, settings, transport=peers)
    assert await relay.run_once() == 3
    await relay.stop()


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erasure_order_a_service_refuses_keeps_no_plain_pii_in_the_outbox(
    service_app: ServiceApp, api: Api
) -> None:
    """A 400/422 ends the order (`failed`, never sent again): its row kept the plain email,
    phone and name for good. Confirmed or refused, the row keeps ids and digests only."""
    p = prospecting_models
    prospecting = await _ada_erased_in_prospecting(service_app, api)

    statuses = {"outreach": 422, "deals": 200, "referrals": 400}  # the other services, refusing
    await _relay_orders(
        prospecting, {s: httpx.Response(code, json={"error": {}}) for s, code in statuses.items()}
    )

    async with prospecting.state.sessions() as session:
        rows = (await session.execute(select(p.OutboxMessage.target, p.OutboxMessage.status))).all()
    assert sorted(rows) == [("deals", "done"), ("outreach", "failed"), ("referrals", "failed")]
    kept = await _texts_of(prospecting, p.OutboxMessage)
    for trace in (ADA_EMAIL, ADA_PHONE, "ada lovelace"):
        assert trace not in kept, f"{trace} stayed in the outbox: {kept}"
    # the order still names whom it erased: its digests, for the operator to act on
    pepper = prospecting.state.settings.erasure_pepper.get_secret_value()
    assert digest(pepper, "email", ADA_EMAIL) in kept


async def _inbox_event_count(app: FastAPI) -> int:
    return len(await _rows(app, outreach_models.InboxEvent.id))


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erased_persons_later_postmark_replies_and_events_store_nothing_of_them(
    service_app: ServiceApp, api: Api
) -> None:
    """Postmark (basic auth, as its webhook URLs carry it): after the erasure, Ada replies,
    unsubscribes by email, and her old emails bounce (hard and soft), are reported as spam,
    unsubscribed from, delivered and opened: nothing of it is stored. Bo's reply, beside
    hers, is (the webhooks did take the requests)."""
    user, password = "postmark", "pm-webhook-secret"
    app = await service_app(
        "outreach", postmark_webhook_user=user, postmark_webhook_password=password
    )
    client = await api(app, key=False)
    await _erase_ada(app, client)
    auth = postmark.basic_auth_header(user, password)
    now = time.time()

    def inbound(sender: str, subject: str) -> dict[str, Any]:
        return postmark.inbound(
            from_email=sender,
            to_email="sales@closeflow.test",
            subject=subject,
            text="Please forget me, Ada Lovelace",
            stripped_reply="Please forget me, Ada Lovelace",
            message_id_header=f"<{uuid.uuid4().hex}@mail.example>",
            in_reply_to=None,
            references=None,
            now=now,
            from_name="Ada Lovelace",
        )

    for subject in ("unsubscribe", "Re: Quick question"):
        answer = await client.post(
            "/webhooks/postmark/inbound", json=inbound("Ada.L@Example.com", subject), headers=auth
        )
        assert answer.status_code == 200, answer.text
    pm_id = postmark.new_message_id
    events = [
        postmark.bounce(email="Ada.L@Example.com", message_id=pm_id(), now=now),
        postmark.bounce(email=ADA_EMAIL, message_id=pm_id(), now=now, bounce_type="SoftBounce"),
        postmark.spam_complaint(email=ADA_EMAIL, message_id=pm_id(), now=now),
        postmark.subscription_change(recipient=ADA_EMAIL, message_id=pm_id(), now=now),
        postmark.delivery(recipient=ADA_EMAIL, message_id=pm_id(), now=now),
        {"RecordType": "Open", "Recipient": ADA_EMAIL, "MessageID": pm_id(), "FirstOpen": True},
    ]
    for event in events:
        answer = await client.post("/webhooks/postmark/events", json=event, headers=auth)
        assert answer.status_code == 200, answer.text
    await _assert_nothing_of_ada(app)

    bo = inbound("bo@example.com", "Re: Quick question")
    assert (await client.post("/webhooks/postmark/inbound", json=bo, headers=auth)).is_success
    assert await _inbox_event_count(app) == 1


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erased_persons_later_sendgrid_events_store_nothing_of_them(
    service_app: ServiceApp, api: Api
) -> None:
    """SendGrid (its Event Webhook signs each batch with ECDSA; it has no inbound replies here:
    Inbound Parse is not used): after the erasure, a batch of events about Ada's old emails
    (bounces, a drop for her suppressed address, a spam report, unsubscribes, a delivery, an
    open, a click) stores nothing of her; Bo's event in the same batch is stored."""
    private, public = sendgrid.generate_key_pair()
    app = await service_app("outreach", sendgrid_webhook_public_key=public)
    client = await api(app, key=False)
    await _erase_ada(app, client)
    now = time.time()

    def event(kind: str, email: str = "Ada.L@Example.com", **fields: Any) -> dict[str, Any]:
        smtp_id = f"<{uuid.uuid4().hex}@closeflow.test>"
        return sendgrid.event(kind, email=email, smtp_id=smtp_id, now=now, **fields)

    batch = [
        event("bounce"),
        event("bounce", type="blocked", reason=f"550 {ADA_EMAIL} blocked"),
        event("dropped", reason="Bounced Address"),
        event("spamreport"),
        event("unsubscribe"),
        event("group_unsubscribe", asm_group_id=42),
        event("delivered"),
        event("open"),
        event("click", url="https://example.com/pricing"),
        event("deferred", email=ADA_EMAIL, response="451 try later"),
        event("delivered", email="bo@example.com"),
    ]
    body = sendgrid.batch_body(batch)
    headers = sendgrid.signed_headers(private, body, now)
    answer = await client.post("/webhooks/sendgrid/events", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 0
    await _assert_nothing_of_ada(app)
    assert await _inbox_event_count(app) == 1  # Bo's


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erased_persons_later_mail_in_the_imap_mailbox_stores_nothing_of_them(
    service_app: ServiceApp, api: Api
) -> None:
    """The reply mailbox (a real dovecot, watched over IMAP): after the erasure, Ada replies,
    writes STOP, and a mail server returns one of her old emails, as a delivery status
    notification and as a plain-text bounce: nothing of it is stored; Bo's reply after them
    is."""
    with dovecot() as server:
        user = server.add_user()
        app = await service_app(
            "outreach",
            imap_host="127.0.0.1",
            imap_port=server.port,
            imap_tls="none",
            imap_username=user,
            imap_password=IMAP_PASSWORD,
            imap_poll_seconds=0.2,
        )
        client = await api(app, key=False)
        await _erase_ada(app, client)
        ada = "Ada Lovelace <Ada.L@Example.com>"
        await server.append(
            user,
            imap_reply(sender=ada, text="Please forget me, Ada Lovelace"),
            imap_reply(sender=ada, subject="STOP", text="STOP. Ada Lovelace"),
            imap_bounce(recipient=ADA_EMAIL, original_id="<a1@closeflow.test>"),
            imap_reply(
                sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
                subject="Undelivered Mail Returned to Sender",
                text=f"Your message to {ADA_EMAIL} could not be delivered: no such user.",
                headers={"Auto-Submitted": "auto-replied"},
            ),
            imap_reply(sender="bo@example.com"),
        )

        async def read() -> bool:
            mailbox = await _rows(app, outreach_models.ImapMailbox.last_uid)
            return mailbox == [5]

        await eventually(read, "the mailbox read to its 5th message")
        await _assert_nothing_of_ada(app)
        # Bo's reply, and the plain-text bounce: kept, without Ada's address
        assert await _inbox_event_count(app) == 2


async def _add_task(session: Any, task: Any, subject: str, text: str) -> None:
    """The task, and its notification to the rep with this subject and text."""
    session.add(task)
    await session.flush()
    session.add(
        outreach_models.TaskNotification(
            task_id=task.id,
            reason="urgent",
            recipient_rep_id="rep-1",
            channel="email",
            target="rep@closeflow.test",
            subject=subject,
            text=text,
        )
    )


def _event(prospect_id: str, event_type: str = "prospect.replied") -> dict[str, Any]:
    data = {"prospect_id": prospect_id, "channel": "email", "provider": "mailgun"}
    return event_body(event_type, f"fact-{prospect_id}-{uuid.uuid4().hex}", data)


async def test_what_was_queued_for_or_about_an_erased_person_goes_with_the_erasure(
    service_app: ServiceApp, api: Api
) -> None:
    """Queued before the erasure: an email to Ada not yet sent (and one to her address on a
    duplicate record), a scheduled follow-up, a rep task about her with its notification, and
    events about her waiting for the subscribers (outreach's deliveries, deals' outbox). After
    it nothing of her is in outreach's tables, and no event about her goes out; Bo's stay."""
    m = outreach_models
    outreach = await service_app("outreach")
    at = datetime.now(UTC)
    events = {pid: _event(pid) for pid in ("p-ada", "p-bo")}
    async with outreach.state.sessions() as session:
        for pid, to in (("p-ada", ADA_EMAIL), ("p-ada-duplicate", ADA_EMAIL)):
            session.add(
                m.Message(
                    journey_id=f"journey-{pid}",
                    touch_key="step-1",
                    channel="email",
                    kind="cadence",
                    prospect_id=pid,
                    to_address=to,
                    subject="Ada Lovelace, a quick question",
                    body="Book here: http://deals.test/book/tok-ada",
                    status="pending",
                )
            )
        session.add(
            m.FollowUp(
                prospect_id="p-ada",
                after_run=1,
                from_cadence_id="c1",
                cadence_id="c2",
                due_at=at,
                reason="nurture Ada Lovelace",
            )
        )
        task = m.RepTask(
            key="task-ada",
            rep_id="rep-1",
            prospect_id="p-ada",
            journey_id="journey-p-ada",
            kind="call",
            title="Call Ada Lovelace",
            body=f"Ada ({ADA_EMAIL}, {ADA_PHONE}) asked for a call",
            context={"email": ADA_EMAIL, "phone": ADA_PHONE},
            prospect_card={"name": "Ada Lovelace", "email": ADA_EMAIL},
        )
        await _add_task(session, task, "Urgent: Ada Lovelace", f"Call {ADA_PHONE}")
        subscription = m.EventSubscription(
            url="https://crm.example/hook", events=["prospect.replied"], secret="whsec_x"
        )
        session.add(subscription)
        await session.flush()
        for body in events.values():
            session.add(
                m.WebhookEvent(id=body["id"], type=body["type"], payload=body, occurred_at=at)
            )
            await session.flush()
            session.add(
                m.EventDelivery(
                    subscription_id=subscription.id, event_id=body["id"], event_type=body["type"]
                )
            )
        await session.commit()
    deals = await service_app("deals")
    await deals.state.event_forwarder.stop()  # the events stay queued for the erasure to find
    async with deals.state.sessions() as session:
        for pid in ("p-ada", "p-bo"):
            body = _event(pid, "meeting.booked")
            session.add(deals_models.EventOutbox(event_id=body["id"], body=body))
        await session.commit()

    order = {"erasure_id": "e1", "prospect_id": "p-ada", "email": ADA_EMAIL, "phone": ADA_PHONE}
    for app in (outreach, deals):
        answer = await (await api(app)).post("/internal/erasures", json=order, headers=SERVICE_AUTH)
        assert answer.status_code == 200, answer.text

    # her id stays in one place, the ids of erased prospects (no personal data): events about
    # her relayed later are dropped by it
    assert await _rows(outreach, m.ErasedProspect.prospect_id) == ["p-ada"]
    tables = [t for t in m.Base.metadata.sorted_tables if t is not m.ErasedProspect.__table__]
    kept = await _texts_of(outreach, *tables)
    for trace in (ADA_EMAIL, ADA_PHONE, "ada lovelace", "p-ada", "tok-ada"):
        assert trace not in kept, f"{trace} is still in outreach's tables: {kept}"
    assert await _rows(outreach, m.WebhookEvent.id) == [events["p-bo"]["id"]]
    assert await _rows(outreach, m.EventDelivery.event_id) == [events["p-bo"]["id"]]
    async with deals.state.sessions() as session:
        outbox = (await session.scalars(select(deals_models.EventOutbox.body))).all()
    assert [body["data"]["prospect_id"] for body in outbox] == ["p-bo"]


async def _across_migration(
    settings: Any, service: str, revision: str, rows: list[Any], key: Any, value: Any
) -> dict[Any, Any]:
    """The service's database migrated to `revision`, these rows written, then migrated to its
    heads: {key: value} of the rows as they are then."""
    await asyncio.to_thread(upgrade, settings, service, revision)
    engine = create_engine(settings.database_url(service))
    try:
        async with session_factory(engine)() as session:
            session.add_all(rows)
            await session.commit()
        await asyncio.to_thread(upgrade, settings, service)
        async with session_factory(engine)() as session:
            return dict((await session.execute(select(key, value))).tuples().all())
    finally:
        await engine.dispose()


@pytest.mark.empty_databases
async def test_erasure_orders_finished_before_the_scrub_lose_their_plain_data_on_migrating(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    """Rows confirmed or refused before the outbox scrubbed finished orders kept the plain
    email, phone and name for good: migration 0013 leaves them ids and digests, as the outbox
    now does; an order still pending keeps what its target needs, other calls are untouched."""
    settings = make_settings(tmp_path, database_urls)
    order = {
        "erasure_id": "e1",
        "prospect_id": "p-ada",
        "email": ADA_EMAIL,
        "phone": ADA_PHONE,
        "email_digest": "digest-of-the-email",
        "phone_digest": "digest-of-the-phone",
        "name": "Ada Lovelace",
        "referred_prospect_ids": ["p-bob"],
    }
    rows = {
        "done": ("erasure", "done"),
        "failed": ("erasure", "failed"),
        "pending": ("erasure", "pending"),
        "move": ("rep_move", "done"),
    }
    o = prospecting_models.OutboxMessage
    outbox = [
        o(
            id=row_id,
            kind=kind,
            target="outreach",
            path="/internal/erasures",
            payload=order,
            subject_id="e1",
            status=status,
        )
        for row_id, (kind, status) in rows.items()
    ]
    kept = await _across_migration(settings, "prospecting", "0012", outbox, o.id, o.payload)
    ids_and_digests = {k: order[k] for k in order if k not in ("email", "phone", "name")}
    assert kept == {
        "done": ids_and_digests,
        "failed": ids_and_digests,
        "pending": order,
        "move": order,
    }


async def test_an_event_about_an_erased_person_relayed_after_the_erasure_is_dropped(
    service_app: ServiceApp, api: Api
) -> None:
    """Deals' outbox (or prospecting's) relays an event about Ada after outreach erased her: it
    is not stored for the subscribers (nor queued for them); Bo's, relayed beside it, is."""
    m = outreach_models
    outreach = await service_app("outreach")
    async with outreach.state.sessions() as session:
        session.add(
            m.EventSubscription(
                url="https://crm.example/hook",
                events=["meeting.booked", "prospect.stage_changed"],
                secret="whsec_x",
            )
        )
        await session.commit()
    client = await api(outreach)
    await _erase_ada(outreach, client)

    bo = _event("p-bo", "meeting.booked")
    for body in (_event("p-ada", "meeting.booked"), _event("p-ada", "prospect.stage_changed"), bo):
        answer = await client.post("/internal/events", json=body, headers=SERVICE_AUTH)
        assert answer.status_code == 202, answer.text  # the relay is done with it: not retried
        assert answer.json() == {"stored": body is bo}
    assert await _rows(outreach, m.WebhookEvent.id) == [bo["id"]]
    assert await _rows(outreach, m.EventDelivery.event_id) == [bo["id"]]


def _stage_event_row(pid: str, cause: str, status: str) -> Any:
    at = datetime.now(UTC)
    change = {"key": f"{pid}-{uuid.uuid4().hex}", "prospect_id": pid, "from_stage": None}
    change |= {"to_stage": "qualifying", "cause": cause, "rep_id": None, "actor": "x", "at": at}
    row = prospecting_models.OutboxMessage(**stage_event(change))
    row.status = status
    return row


async def test_an_erased_referrers_name_leaves_the_events_and_tasks_of_those_they_referred(
    service_app: ServiceApp, api: Api
) -> None:
    """Journeys before issue 11 wrote "referred by <name>" as the cause of a referred person's
    first stage: it travelled in their stage-change event (prospecting's outbox, then
    outreach's events for the subscribers), and a task about them may quote the name too."""
    p = prospecting_models
    prospecting = await service_app("prospecting")
    await prospecting.state.outbox.stop()  # the events stay in the outbox for the erasure
    async with prospecting.state.sessions() as session:
        session.add(p.Prospect(id="p-ada", first_name="Ada", last_name="Lovelace", email=ADA_EMAIL))
        session.add(p.Prospect(id="p-grace", first_name="Grace", referrer_prospect_id="p-ada"))
        session.add(p.Prospect(id="p-bo", first_name="Bo"))
        session.add_all(
            [
                _stage_event_row("p-grace", "referred by Ada Lovelace", "pending"),
                _stage_event_row("p-grace", "referred by Ada Lovelace", "failed"),
                _stage_event_row("p-bo", "referred by Bo's friend", "failed"),
            ]
        )
        await session.commit()
    started = await (await api(prospecting)).post("/prospects/p-ada/erasure")
    assert started.status_code == 202, started.text
    async with prospecting.state.sessions() as session:
        rows = (
            await session.scalars(select(p.OutboxMessage).where(p.OutboxMessage.kind == "event"))
        ).all()
        order = await session.scalar(
            select(p.OutboxMessage.payload).where(
                p.OutboxMessage.kind == "erasure", p.OutboxMessage.target == "outreach"
            )
        )
    causes = sorted((r.subject_id, r.payload["data"]["cause"]) for r in rows)
    assert causes == [
        ("p-bo", "referred by Bo's friend"),
        ("p-grace", "referred by client p-ada"),
        ("p-grace", "referred by client p-ada"),
    ]

    m = outreach_models
    outreach = await service_app("outreach")
    at = datetime.now(UTC)
    async with outreach.state.sessions() as session:
        for pid in ("p-grace", "p-bo"):
            data = {
                "prospect_id": pid,
                "to_stage": "qualifying",
                "cause": "referred by Ada Lovelace",
            }
            body = event_body("prospect.stage_changed", f"stage-{pid}", data)
            session.add(
                m.WebhookEvent(id=body["id"], type=body["type"], payload=body, occurred_at=at)
            )
            task = m.RepTask(
                key=f"task-{pid}",
                prospect_id=pid,
                journey_id=f"journey-{pid}",
                kind="call",
                title="Call: referred by Ada Lovelace",
                body="Ada Lovelace suggested we talk",
            )
            subject = f"{pid}: referred by Ada Lovelace"
            await _add_task(session, task, subject, "Ada Lovelace suggested we talk")
        await session.commit()
    assert order is not None
    answer = await (await api(outreach)).post(
        "/internal/erasures", json=order, headers=SERVICE_AUTH
    )
    assert answer.status_code == 200, answer.text
    async with outreach.state.sessions() as session:
        events = (await session.scalars(select(m.WebhookEvent))).all()
        tasks = (await session.scalars(select(m.RepTask))).all()
        notes = (
            await session.execute(select(m.TaskNotification.subject, m.TaskNotification.text))
        ).all()
    assert sorted(
        (e.payload["data"]["prospect_id"], e.payload["data"]["cause"]) for e in events
    ) == [
        ("p-bo", "referred by Ada Lovelace"),  # not someone Ada referred: another Ada's
        ("p-grace", "referred by client p-ada"),
    ]
    assert sorted((t.prospect_id, t.title, t.body) for t in tasks) == [
        ("p-bo", "Call: referred by Ada Lovelace", "Ada Lovelace suggested we talk"),
        ("p-grace", "Call: referred by A client of ours", "A client of ours suggested we talk"),
    ]
    assert sorted(notes) == [
        ("p-bo: referred by Ada Lovelace", "Ada Lovelace suggested we talk"),
        ("p-grace: referred by A client of ours", "A client of ours suggested we talk"),
    ]


async def test_the_erased_persons_other_calls_leave_prospectings_outbox(
    service_app: ServiceApp, api: Api
) -> None:
    """Their stage changes and rep moves in the outbox, waiting, refused (kept for good),
    superseded or done (kept for days), carry their id and their stage causes: they go with the
    erasure; Bo's stay."""
    p = prospecting_models
    prospecting = await service_app("prospecting")
    await prospecting.state.outbox.stop()
    cause = f"Ada Lovelace asked to be called on {ADA_PHONE}"
    async with prospecting.state.sessions() as session:
        session.add(p.Prospect(id="p-ada", first_name="Ada", last_name="Lovelace", email=ADA_EMAIL))
        for status in ("pending", "failed", "superseded", "done"):
            session.add(_stage_event_row("p-ada", cause, status))
            session.add(
                p.OutboxMessage(
                    kind="rep_move",
                    target="outreach",
                    path="/internal/prospects/p-ada/rep",
                    payload={"rep_id": "rep-1"},
                    subject_id="p-ada",
                    status=status,
                )
            )
        session.add(_stage_event_row("p-bo", "first touch", "failed"))
        await session.commit()
    started = await (await api(prospecting)).post("/prospects/p-ada/erasure")
    assert started.status_code == 202, started.text
    async with prospecting.state.sessions() as session:
        rows = (
            await session.execute(select(p.OutboxMessage.kind, p.OutboxMessage.subject_id))
        ).all()
    assert sorted(rows) == [("erasure", started.json()["id"])] * 3 + [("event", "p-bo")]


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_answer_that_quotes_an_erasure_order_is_not_kept_nor_logged(
    service_app: ServiceApp, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A service's answer may quote the order it refuses (a validation error echoing its input,
    a proxy's page): the order's last_error (shown in the erasure's status) and the log keep
    its status and error code, not its text."""
    prospecting = await _ada_erased_in_prospecting(service_app, api)

    quoted = f"Ada Lovelace, {ADA_EMAIL}, {ADA_PHONE}"
    answers = {
        "outreach": httpx.Response(422, json={"detail": [{"msg": "bad", "input": quoted}]}),
        "deals": httpx.Response(
            409, json={"error": {"code": "busy", "message": quoted, "details": []}}
        ),
        "referrals": httpx.Response(502, text=f"<html>bad gateway: {quoted}</html>"),
    }
    await _relay_orders(prospecting, answers)

    status = await (await api(prospecting)).get("/prospects/p-ada/erasure")
    assert status.status_code == 200, status.text
    errors = {s["service"]: s["last_error"] for s in status.json()["services"]}
    assert errors["deals"] == "erasure to deals: answered 409: busy"
    assert errors["outreach"].startswith("erasure to outreach: answered 422: ")
    kept = repr(errors).lower() + caplog.text.lower()
    for trace in (ADA_EMAIL, ADA_PHONE, "ada lovelace"):
        assert trace not in kept, f"{trace} kept from an answer: {kept}"


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_person_with_the_longest_names_allowed_can_be_erased(
    service_app: ServiceApp, api: Api
) -> None:
    """A first and a last name of 200 characters each (the most a prospect or a referral may
    have) make a full name of 401: the erasure order must carry it, and every service take it."""
    prospecting = await service_app("prospecting")
    await prospecting.state.outbox.stop()
    client = await api(prospecting)
    created = await client.post(
        "/prospects",
        json={"first_name": "A" * 200, "last_name": "B" * 200, "email": ADA_EMAIL},
    )
    assert created.status_code in (200, 201), created.text
    started = await client.post(f"/prospects/{created.json()['id']}/erasure")
    assert started.status_code == 202, started.text
    async with prospecting.state.sessions() as session:
        orders = (await session.scalars(select(prospecting_models.OutboxMessage.payload))).all()
    assert len(orders) == 3
    for target in ("outreach", "deals", "referrals"):
        app = await service_app(target)
        answer = await (await api(app)).post(
            "/internal/erasures", json=orders[0], headers=SERVICE_AUTH
        )
        assert answer.status_code == 200, f"{target}: {answer.text}"


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_erased_persons_address_on_the_do_not_contact_list_leaves_the_audit_log(
    service_app: ServiceApp, api: Api
) -> None:
    """Ops list Ada's address and number as do-not-contact, then she asks to be erased: the
    entries go with the erasure, and the audit log (which outlives them) never held the
    values: it says an entry was made, by whom and when."""
    app = await service_app("outreach")
    client = await api(app)
    for value in (ADA_EMAIL, ADA_PHONE):
        listed = await client.post("/do-not-contact", json={"value": value, "reason": "asked"})
        assert listed.status_code == 201, listed.text
    await _erase_ada(app, client)
    assert await _rows(app, outreach_models.DoNotContact.id) == []
    audit = (await client.get("/audit", params={"resource": "do_not_contact"})).json()
    assert len(audit["entries"]) == 2  # who listed something, and when, stays
    kept = await _texts_of(app, outreach_models.AuditEntry)
    for trace in (ADA_EMAIL, ADA_PHONE):
        assert trace not in kept, f"{trace} stayed in the audit log: {kept}"


@pytest.mark.empty_databases
@pytest.mark.parametrize(
    ("service", "revision", "resource", "column", "models"),
    [
        ("outreach", "0017_audit_log", "do_not_contact", "value", outreach_models),
        ("deals", "0009", "qualification_answers", "answer", deals_models),
        ("prospecting", "0011_audit_log", "prospects", "custom", prospecting_models),
        ("outreach", "0017_audit_log", "event_subscriptions", "url", outreach_models),
        ("outreach", "0017_audit_log", "rep_notification_prefs", "webhook_url", outreach_models),
    ],
)
async def test_values_audited_before_they_were_sensitive_are_forgotten_on_migrating(
    database_urls: dict[str, str],
    tmp_path: Path,
    service: str,
    revision: str,
    resource: str,
    column: str,
    models: Any,
) -> None:
    """Audit entries made before kept personal data under a name the audit did not know (a
    listed address; a rep's free-text answer about the person, with no prospect to redact it
    by): the migration leaves them saying it changed; other entries keep their values."""
    settings = make_settings(tmp_path, database_urls)
    made = {"kind": {"after": "email"}, column: {"after": f"Ada Lovelace, {ADA_EMAIL}"}}
    other = {column: {"after": "kept"}}
    a = models.AuditEntry
    entries = [
        a(id="theirs", resource=resource, action="create", changes=made),
        a(id="other", resource="cadences", action="create", changes=other),
    ]
    kept = await _across_migration(settings, service, revision, entries, a.id, a.changes)
    assert kept == {"theirs": {**made, column: {"changed": True}}, "other": other}


# more than either database takes as bind parameters in one statement (SQLite 32,766, asyncpg
# 32,767), and more than an erasure order carried
MANY_REFERRED = 33_000


async def test_a_person_who_referred_more_people_than_one_statement_holds_can_be_erased(
    service_app: ServiceApp, api: Api
) -> None:
    """Their erasure names every person they referred (whose records lose the name): in orders
    of a bounded size, each of which every service takes, and with no statement listing them
    all. The erasure's status still shows one line per service."""
    p = prospecting_models
    prospecting = await service_app("prospecting")
    await prospecting.state.outbox.stop()
    referred = [f"r{i:06d}" for i in range(MANY_REFERRED)]
    at = datetime.now(UTC)
    async with prospecting.state.sessions() as session:
        session.add(p.Prospect(id="p-ada", first_name="Ada", last_name="Lovelace", email=ADA_EMAIL))
        await session.flush()
        await session.execute(
            insert(p.Prospect),
            [{"id": r, "first_name": "R", "referrer_prospect_id": "p-ada"} for r in referred],
        )
        for pid in (referred[0], referred[-1]):
            session.add(
                p.StageHistory(
                    key=f"{pid}-1", prospect_id=pid, to_stage="qualifying", at=at,
                    cause="referred by Ada Lovelace",
                )
            )  # fmt: skip
        await session.commit()
    started = await (await api(prospecting)).post("/prospects/p-ada/erasure")
    assert started.status_code == 202, started.text
    assert await _rows(prospecting, p.StageHistory.cause) == ["referred by client p-ada"] * 2

    async with prospecting.state.sessions() as session:
        rows = (
            await session.execute(select(p.OutboxMessage.target, p.OutboxMessage.payload))
        ).all()
    for target in ("outreach", "deals", "referrals"):
        orders = [payload for to, payload in rows if to == target]
        named = [r for o in orders for r in o["referred_prospect_ids"]]
        assert sorted(named) == referred, target
        assert max(len(o["referred_prospect_ids"]) for o in orders) <= REFERRED_PER_ORDER
    status = (await (await api(prospecting)).get("/prospects/p-ada/erasure")).json()
    assert [s["service"] for s in status["services"]] == [
        "prospecting", "deals", "outreach", "referrals",
    ]  # fmt: skip

    outreach = await service_app("outreach")
    client = await api(outreach)
    for order in (o for to, o in rows if to == "outreach"):
        answer = await client.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
        assert answer.status_code == 200, answer.text
