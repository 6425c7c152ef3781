"""Postmark: basic-auth webhooks in Postmark's own JSON (Bounce, SpamComplaint, Delivery,
SubscriptionChange, Open, Inbound)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.outreach import models
from services.outreach.inbox import REJECTED_RAW_BYTES
from shared.erasure import digest
from shared.providers import postmark
from shared.providers.postmark import basic_auth_header
from tests.support.eventually import eventually
from tests.support.settings import SERVICE_AUTH
from tests.support.webhooks import (
    Rig,
    WebhookRigs,
    signals_of,
)

USER, PASSWORD = "postmark", "pm-webhook-secret"
AUTH = basic_auth_header(USER, PASSWORD)
CREDENTIALS = {"postmark_webhook_user": USER, "postmark_webhook_password": PASSWORD}


def reply(sent: models.Message, from_email: str) -> dict[str, Any]:
    """A reply to `sent` from `from_email`, as the inbound webhook posts it."""
    return postmark.inbound(
        from_email=from_email,
        to_email="sales@closeflow.localhost",
        subject="Re: Quick question",
        text="Yes, let's talk.\n\nOn Monday you wrote:\n> Quick question",
        stripped_reply="Yes, let's talk.",
        message_id_header="<CAF=reply@mail.example>",
        in_reply_to=sent.provider_id,
        references=sent.provider_id,
        now=time.time(),
    )


async def post(
    rig: Rig, path: str, doc: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await rig.http.post(
        f"/webhooks/postmark/{path}", json=doc, headers=AUTH if headers is None else headers
    )


async def test_outbound_events_update_the_ledger_and_consent(webhooks: WebhookRigs) -> None:
    now = time.time()
    async with webhooks(**CREDENTIALS) as rig:
        rows = {
            name: await rig.add_message("email", f"{name}@example.com", f"<{name}@closeflow>")
            for name in ("ada", "bob", "cy", "dee", "eve")
        }
        pm_id = postmark.new_message_id  # Postmark's own ids: matched by recipient
        docs = [
            postmark.delivery(recipient="ada@example.com", message_id=pm_id(), now=now),
            postmark.bounce(email="bob@example.com", message_id=pm_id(), now=now),
            postmark.bounce(
                email="cy@example.com", message_id=pm_id(), now=now, bounce_type="SoftBounce"
            ),
            postmark.spam_complaint(email="dee@example.com", message_id=pm_id(), now=now),
            postmark.subscription_change(recipient="eve@example.com", message_id=pm_id(), now=now),
            {
                "RecordType": "Open",
                "MessageStream": "outbound",
                "Recipient": "ada@example.com",
                "MessageID": pm_id(),
                "ReceivedAt": "2026-11-27T10:00:00Z",
                "FirstOpen": True,
                "Platform": "WebMail",
            },
        ]
        for doc in docs:
            assert (await post(rig, "events", doc)).status_code == 200
        assert (await post(rig, "events", docs[1])).status_code == 200  # Postmark retrying

        got = {name: await rig.message(row.id) for name, row in rows.items()}
        assert {n: m.status for n, m in got.items()} == {
            "ada": "delivered",
            "bob": "bounced",
            "cy": "submitted",  # soft: Postmark keeps trying
            "dee": "submitted",
            "eve": "submitted",
        }
        assert got["cy"].provider_status == "SoftBounce"
        assert await rig.suppressed("email") == {
            "bob@example.com",
            "dee@example.com",
            "eve@example.com",
        }
        kinds = [e.kind for e in await rig.inbox("postmark")]
        assert kinds == [
            "email_Delivery",
            "email_Bounce",
            "email_Bounce",
            "email_SpamComplaint",
            "email_SubscriptionChange",
            "email_Open",
        ]


async def test_two_changes_of_a_long_address_are_two_events(webhooks: WebhookRigs) -> None:
    """A subscription change's id names the message, the recipient and the moment: for an
    address of 200 characters it is longer than the column, and cut there the unsubscribe that
    followed a resubscription of the same message was taken for a repeat of it: no opt-out."""
    async with webhooks(**CREDENTIALS) as rig:
        long = "a" * 188 + "@example.com"
        await rig.add_message("email", long, "<long@closeflow>")
        message_id, now = postmark.new_message_id(), time.time()
        back = postmark.subscription_change(
            recipient=long, message_id=message_id, now=now, suppress=False
        )
        out = postmark.subscription_change(recipient=long, message_id=message_id, now=now + 60)
        assert (await post(rig, "events", back)).status_code == 200
        assert (await post(rig, "events", out)).status_code == 200
        assert await rig.suppressed("email") == {long}
        ids = [e.event_id for e in await rig.inbox("postmark")]
        assert len(ids) == 2 and all(len(i) <= 200 for i in ids)


async def test_an_event_names_its_row_by_the_message_id_in_its_metadata(
    webhooks: WebhookRigs,
) -> None:
    """Postmark returns the metadata of our `X-PM-Metadata-` header in every event: the row it
    names is the one updated, not the latest email to the address, and a row left `sending` by
    an attempt that died after Postmark took the message is recorded sent. An event without it
    is matched by its recipient, and proves nothing about a row still `sending` (that attempt
    may have died before it sent anything)."""
    now = time.time()
    async with webhooks(**CREDENTIALS) as rig:
        first = await rig.add_message("email", "ada@example.com", "<m1@closeflow>")
        later = await rig.add_message(
            "email", "ada@example.com", "<m2@closeflow>", status="sending"
        )
        left = await rig.add_message("email", "bob@example.com", "<m3@closeflow>", status="sending")
        unnamed = await rig.add_message(
            "email", "cy@example.com", "<m4@closeflow>", status="sending"
        )
        pm_id = postmark.new_message_id

        def named(message_id: str) -> dict[str, str]:
            return postmark.metadata_of(postmark.message_id_header(message_id))

        docs = [
            postmark.delivery(
                recipient="ada@example.com",
                message_id=pm_id(),
                now=now,
                metadata=named("<m1@closeflow>"),
            ),
            postmark.bounce(
                email="bob@example.com",
                message_id=pm_id(),
                now=now,
                bounce_type="SoftBounce",
                metadata=named("<m3@closeflow>"),
            ),
            postmark.delivery(recipient="cy@example.com", message_id=pm_id(), now=now),
        ]
        for doc in docs:
            assert (await post(rig, "events", doc)).status_code == 200
        got = {row.id: await rig.message(row.id) for row in (first, later, left, unnamed)}
        assert got[first.id].status == "delivered"
        assert got[later.id].status == "sending"  # the latest to ada, not the one named
        assert (got[left.id].status, got[left.id].provider_status) == ("submitted", "SoftBounce")
        assert got[left.id].sent_at is not None
        assert got[unnamed.id].status == "sending"
        events = {e.prospect_id for e in await rig.inbox("postmark")}
        assert first.prospect_id in events and left.prospect_id in events


async def test_wrong_or_missing_credentials_store_nothing(webhooks: WebhookRigs) -> None:
    now = time.time()
    async with webhooks(**CREDENTIALS) as rig:
        row = await rig.add_message("email", "bob@example.com", "<bob@closeflow>")
        doc = postmark.bounce(email="bob@example.com", message_id="x", now=now)
        for headers in ({}, basic_auth_header(USER, "guess"), basic_auth_header("admin", PASSWORD)):
            response = await post(rig, "events", doc, headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic")
            response = await post(rig, "inbound", {"MessageID": "x", "From": "a@b"}, headers)
            assert response.status_code == 401
        assert await rig.count(models.InboxEvent) == 0
        assert await rig.count(models.RejectedItem) == 0
        assert await rig.suppressed("email") == set()
        assert (await rig.message(row.id)).status == "submitted"
    async with webhooks(where="off") as rig:
        assert (await post(rig, "events", doc)).status_code == 404


async def test_documents_that_cannot_be_understood_are_kept_aside(webhooks: WebhookRigs) -> None:
    async with webhooks(**CREDENTIALS) as rig:
        unknown = {"RecordType": "Teleport", "MessageID": "x"}
        no_email = postmark.bounce(email="", message_id="x", now=time.time())
        for doc in (unknown, no_email, ["not", "an", "object"]):
            assert (await post(rig, "events", doc)).status_code == 200
        broken = await rig.http.post(
            "/webhooks/postmark/inbound", content=b"{not json", headers=AUTH
        )
        assert broken.status_code == 200
        reasons = [r.reason for r in await rig.rejected()]
        assert len(reasons) == 4
        assert "Teleport" in reasons[0] and "Email" in reasons[1] and "object" in reasons[2]
        assert await rig.count(models.InboxEvent) == 0


async def test_a_huge_document_kept_aside_is_cut_and_old_ones_are_pruned(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks(**CREDENTIALS) as rig:
        # the relay's loop prunes too (at its first pass): stopped, the test's prune counts
        await rig.app.state.inbox.stop()
        text = json.dumps({"RecordType": "Inbound", "TextBody": "é" * 200_000}, ensure_ascii=False)
        body = text.encode()  # 400 kB: under the body limit, far over what is kept
        sent = await rig.http.post("/webhooks/postmark/inbound", content=body, headers=AUTH)
        assert sent.status_code == 200
        [kept] = await rig.rejected()
        assert len(kept.raw.encode()) <= REJECTED_RAW_BYTES
        assert text.startswith(kept.raw) and len(kept.raw) > 30_000
        assert "without MessageID or From" in kept.reason
        assert f"the first {REJECTED_RAW_BYTES} of {len(body)} bytes" in kept.reason

        small = b'{"RecordType": "Inbound"}'
        again = await rig.http.post("/webhooks/postmark/inbound", content=small, headers=AUTH)
        assert again.status_code == 200
        async with rig.sessions() as session:
            row = await session.get(models.RejectedItem, kept.id)
            assert row is not None
            row.created_at = datetime.now(UTC) - timedelta(days=31)
            await session.commit()
        assert await rig.app.state.inbox.prune() == 1
        [left] = await rig.rejected()
        assert left.raw == small.decode() and "cut" not in left.reason


async def test_an_inbound_reply_reaches_the_journey_once(webhooks: WebhookRigs) -> None:
    async with webhooks(**CREDENTIALS) as rig:
        pid = uuid.uuid4().hex
        # the reply comes from another address than the one written to: In-Reply-To matches it
        sent = await rig.add_message("email", "ada@work.example", "<t1@closeflow>", prospect_id=pid)
        doc = reply(sent, "ada.lovelace@home.example")
        async with rig.journeys():
            handle = await rig.start_journey(pid)
            assert (await post(rig, "inbound", doc)).status_code == 200
            assert (await post(rig, "inbound", doc)).status_code == 200
            got = await eventually(lambda: signals_of(handle), "the reply", timeout=10)
            await asyncio.sleep(0.3)  # room for a second signal, which must not come
            assert await signals_of(handle) == got
            assert got == [
                {
                    "name": "reply_received",
                    "payload": {
                        "channel": "email",
                        "event_id": "<CAF=reply@mail.example>",
                        "excerpt": "Yes, let's talk.",
                        "actor": "system:reply via postmark",
                    },
                }
            ]
            await handle.terminate()
        [event] = await rig.inbox("postmark")
        assert (event.prospect_id, event.delivery) == (pid, "delivered")


async def test_an_authenticated_body_nested_too_deep_is_kept_aside(webhooks: WebhookRigs) -> None:
    """Nested 5000 deep, the parser raised RecursionError (a 500, and Postmark resending the same
    document); a few hundred deep, the NUL scrub after it did. Both are set aside, answered 200."""
    async with webhooks(**CREDENTIALS) as rig:
        for depth in (5000, 600):
            deep = b"[" * depth + b"]" * depth
            for path in ("events", "inbound"):
                answer = await rig.http.post(
                    f"/webhooks/postmark/{path}", content=deep, headers=AUTH
                )
                assert answer.status_code == 200, (depth, path, answer.text)
        assert len(await rig.rejected()) == 4
        assert await rig.count(models.InboxEvent) == 0


async def test_an_inbound_message_with_odd_address_fields_is_read_as_far_as_it_can_be(
    webhooks: WebhookRigs,
) -> None:
    """`FromFull` that is not an object (an AttributeError, a 500 before) is read as absent: the
    sender is `From`; `ToFull` that is not a list adds no recipient. Without `From` as well, the
    message has no sender and is kept aside, like any message without one."""
    async with webhooks(**CREDENTIALS) as rig:
        pid = uuid.uuid4().hex
        sent = await rig.add_message("email", "ada@example.com", "<t1@closeflow>", prospect_id=pid)
        odd = {
            **reply(sent, "ada@example.com"),
            "FromFull": "ada@example.com",
            "ToFull": 5,
            "CcFull": "x",
        }
        assert (await post(rig, "inbound", odd)).status_code == 200
        [event] = await rig.inbox("postmark")
        assert (event.kind, event.prospect_id) == ("email_reply", sent.prospect_id)

        nobody = {**odd, "From": "", "MessageID": postmark.new_message_id()}
        assert (await post(rig, "inbound", nobody)).status_code == 200
        [kept] = await rig.rejected()
        assert "without MessageID or From" in kept.reason
        assert len(await rig.inbox("postmark")) == 1


async def test_an_item_kept_aside_keeps_no_address_of_an_erased_person(
    webhooks: WebhookRigs,
) -> None:
    """A malformed but authenticated item that mentions an erased person's email or phone is
    kept for a human without them: it would put the address back in clear after the erasure."""
    ada, ada_phone = "ada.l@example.com", "+14155550123"
    async with webhooks(**CREDENTIALS) as rig:
        pepper = rig.settings.erasure_pepper.get_secret_value()
        order = {
            "erasure_id": "e1",
            "prospect_id": "p-ada",
            "email_digest": digest(pepper, "email", ada),
            "phone_digest": digest(pepper, "phone", ada_phone),
        }
        erased = await rig.http.post("/internal/erasures", json=order, headers=SERVICE_AUTH)
        assert erased.status_code == 200, erased.text
        teleport = {"RecordType": "Teleport", "Email": "Ada.L@Example.com", "Phone": ada_phone}
        assert (await post(rig, "events", teleport)).status_code == 200
        other = {"RecordType": "Teleport", "Email": "bo@example.com"}
        assert (await post(rig, "events", other)).status_code == 200
        kept = [r.raw.lower() for r in await rig.rejected()]
        assert len(kept) == 2
        for trace in (ada, ada_phone, ada_phone.removeprefix("+")):
            assert trace not in kept[0], kept[0]
        assert "teleport" in kept[0] and "bo@example.com" in kept[1]  # the rest is kept


LONG_ADDRESS = "a" * 330 + "@example.com"  # longer than any address column (320)


async def test_an_inbound_stop_from_an_address_longer_than_any_is_kept_aside(
    webhooks: WebhookRigs,
) -> None:
    """A STOP from a 342-character address went to the suppression (varchar(320)): on
    PostgreSQL a 500, and Postmark dropping the mail. It is checked where it enters: kept aside
    with the reason, 200; the same for an outbound event naming such a recipient. Nothing else
    is lost: the next inbound message is stored as ever."""
    async with webhooks(**CREDENTIALS) as rig:
        sent = await rig.add_message("email", "ada@example.com", "<t1@closeflow>")
        stop = {**reply(sent, LONG_ADDRESS), "TextBody": "STOP", "StrippedTextReply": "STOP"}
        answer = await post(rig, "inbound", stop)
        assert answer.status_code == 200, answer.text
        event = postmark.bounce(email=LONG_ADDRESS, message_id="x", now=time.time())
        assert (await post(rig, "events", event)).status_code == 200
        reasons = [r.reason for r in await rig.rejected()]
        assert reasons == [
            "From address of 342 characters (at most 320)",
            "Recipient address of 342 characters (at most 320)",
        ]
        assert await rig.suppressed("email") == set()
        assert await rig.count(models.InboxEvent) == 0

        ok = {**reply(sent, "ada@example.com"), "MessageID": postmark.new_message_id()}
        assert (await post(rig, "inbound", ok)).status_code == 200
        [stored] = await rig.inbox("postmark")
        assert (stored.kind, stored.prospect_id) == ("email_reply", sent.prospect_id)


async def test_an_inbound_reply_with_a_2_mb_attachment_is_stored(webhooks: WebhookRigs) -> None:
    """Postmark posts attachments in base64 inside the JSON: a reply with a 2 MB PDF was
    refused 413 by the 1 MiB limit of every route, and Postmark dropped it. The inbound route
    takes CLOSEFLOW_INBOUND_EMAIL_MAX_BODY_BYTES: the reply is stored (the attachment's name
    and size, not its content) and reaches its journey; every other route keeps the 1 MiB limit,
    and the inbound one refuses what is over its own."""
    deck = base64.b64encode(os.urandom(2 * 1024 * 1024)).decode()
    attachment = {"Name": "deck.pdf", "ContentType": "application/pdf", "Content": deck}
    async with webhooks(**CREDENTIALS, inbound_email_max_body_bytes=4 * 1024 * 1024) as rig:
        pid = uuid.uuid4().hex
        sent = await rig.add_message("email", "ada@example.com", "<t1@closeflow>", prospect_id=pid)
        doc = {**reply(sent, "ada@example.com"), "Attachments": [attachment]}
        answer = await post(rig, "inbound", doc)
        assert answer.status_code == 200, answer.text[:300]
        [event] = await rig.inbox("postmark")
        assert (event.kind, event.prospect_id) == ("email_reply", pid)
        assert event.payload["Attachments"] == [
            {"Name": "deck.pdf", "ContentType": "application/pdf"}
        ]

        padded = {**postmark.bounce(email="ada@example.com", message_id="x", now=time.time())}
        padded["Details"] = deck
        refused = await post(rig, "events", padded)
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "payload_too_large"
        twice = {**doc, "Attachments": [attachment, attachment], "MessageID": "other"}
        assert (await post(rig, "inbound", twice)).status_code == 413
        assert len(await rig.inbox("postmark")) == 1
