"""SendGrid Event Webhook: signed batches in SendGrid's format, deduped by sg_event_id, malformed
items kept aside while the rest is processed, and nothing at all stored for a bad signature."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from services.outreach import models
from shared.providers import sendgrid
from shared.providers.sendgrid import generate_key_pair, public_key_pem, signed_headers
from tests.support.eventually import eventually
from tests.support.webhooks import (
    Rig,
    WebhookRigs,
    signals_of,
)

PRIVATE, PUBLIC = generate_key_pair()
URL = "/webhooks/sendgrid/events"


def ev(kind: str, email: str, smtp_id: str, **fields: Any) -> dict[str, Any]:
    return sendgrid.event(kind, email=email, smtp_id=smtp_id, now=time.time(), **fields)


async def post(rig: Rig, items: list[Any], *, body: bytes | None = None) -> httpx.Response:
    raw = body if body is not None else sendgrid.batch_body(items)
    return await rig.http.post(URL, content=raw, headers=signed_headers(PRIVATE, raw, time.time()))


async def test_a_batch_updates_the_ledger_and_consent(webhooks: WebhookRigs) -> None:
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        rows = {
            name: await rig.add_message("email", f"{name}@example.com", f"<{name}@closeflow>")
            for name in ("ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy")
        }

        def on(name: str, kind: str, **fields: Any) -> dict[str, Any]:
            return ev(kind, f"{name}@example.com", f"<{name}@closeflow>", **fields)

        batch = [
            on("ada", "processed"),
            on("ada", "delivered"),
            on("ada", "open"),
            on("ada", "click", url="https://example.com/pricing"),
            on("bob", "bounce"),  # type "bounce": a hard bounce
            on("cy", "bounce", type="blocked", reason="550 blocked by policy"),
            on("dee", "spamreport"),
            on("eve", "unsubscribe"),
            on("fay", "group_unsubscribe", asm_group_id=42),
            on("gus", "dropped", reason="Bounced Address"),
            on("hal", "deferred", response="451 try later", attempt="1"),
            on("ivy", "dropped", reason="Unsubscribed Address"),
        ]
        response = await post(rig, batch)
        assert response.status_code == 200
        assert response.json() == {"processed": len(batch), "duplicates": 0, "rejected": 0}

        status = {name: (await rig.message(row.id)).status for name, row in rows.items()}
        assert status == {
            "ada": "delivered",
            "bob": "bounced",
            "cy": "failed",
            "dee": "submitted",
            "eve": "submitted",
            "fay": "submitted",
            "gus": "bounced",  # dropped: the address is on SendGrid's bounce list
            "hal": "submitted",
            "ivy": "failed",  # dropped: it never left SendGrid
        }
        assert await rig.suppressed("email") == {
            "bob@example.com",
            "dee@example.com",
            "eve@example.com",
            "fay@example.com",
            "gus@example.com",
            "ivy@example.com",
        }
        stored = await rig.inbox("sendgrid")
        assert [e.event_id for e in stored] == [item["sg_event_id"] for item in batch]
        assert {e.kind for e in stored if e.payload["email"] == "ada@example.com"} == {
            "email_processed",
            "email_delivered",
            "email_open",
            "email_click",
        }

        # SendGrid sends the batch again (our 200 got lost): nothing happens twice
        again = await post(rig, batch)
        assert again.json() == {"processed": 0, "duplicates": len(batch), "rejected": 0}
        assert len(await rig.inbox("sendgrid")) == len(batch)


async def test_malformed_items_are_kept_aside_and_the_rest_processed(webhooks: WebhookRigs) -> None:
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        row = await rig.add_message("email", "ada@example.com", "<ada@closeflow>")
        good = ev("bounce", "ada@example.com", "<ada@closeflow>")
        no_id = ev("delivered", "bob@example.com", "<bob@closeflow>")
        del no_id["sg_event_id"]
        batch = [
            "not an object",
            no_id,
            {**ev("delivered", "cy@example.com", "<cy@closeflow>"), "event": "exploded"},
            good,
            dict(good),  # the same event twice in one batch
        ]
        response = await post(rig, batch)
        assert response.status_code == 200
        assert response.json() == {"processed": 1, "duplicates": 1, "rejected": 3}
        assert (await rig.message(row.id)).status == "bounced"
        rejected = await rig.rejected()
        assert [r.provider for r in rejected] == ["sendgrid"] * 3
        assert [json.loads(r.raw) for r in rejected] == batch[:3]
        reasons = [r.reason for r in rejected]
        assert "item 0" in reasons[0] and "JSON object" in reasons[0]
        assert "item 1" in reasons[1] and "sg_event_id" in reasons[1]
        assert "item 2" in reasons[2] and "exploded" in reasons[2]

        # a signed body that is not a batch at all: kept aside whole, still 2xx
        whole = await post(rig, [], body=b'{"event": "delivered"}')
        assert whole.status_code == 200 and whole.json()["rejected"] == 1
        assert (await rig.rejected())[-1].raw == '{"event": "delivered"}'


async def test_an_address_longer_than_any_column_is_kept_aside_and_the_rest_processed(
    webhooks: WebhookRigs,
) -> None:
    """An unsubscribe for an address of 321 characters: on PostgreSQL its suppression broke the
    batch's transaction (varchar(320)), a 500 SendGrid retried for days with the batch's other
    events never recorded."""
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        long = "a" * 309 + "@example.com"
        batch = [
            ev("unsubscribe", long, "<long@closeflow>"),
            ev("spamreport", "bo@example.com", ""),
        ]
        response = await post(rig, batch)
        assert response.status_code == 200
        assert response.json() == {"processed": 1, "duplicates": 0, "rejected": 1}
        assert await rig.suppressed("email") == {"bo@example.com"}
        [kept] = await rig.rejected()
        assert "email address of 321 characters" in kept.reason and long not in kept.reason


async def test_a_bad_signature_stores_nothing_not_even_rejects(webhooks: WebhookRigs) -> None:
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        row = await rig.add_message("email", "ada@example.com", "<ada@closeflow>")
        batch = [ev("spamreport", "ada@example.com", "<ada@closeflow>"), "malformed"]
        body = sendgrid.batch_body(batch)
        headers = signed_headers(PRIVATE, body, time.time())
        tampered = body.replace(b"spamreport", b"delivered")
        other_private, _ = generate_key_pair()
        attempts = [
            (tampered, headers),
            (body, signed_headers(other_private, body, time.time())),
            (body, {k: v for k, v in headers.items() if k != sendgrid.SIGNATURE_HEADER}),
            (body, {**headers, sendgrid.TIMESTAMP_HEADER: str(int(time.time()) + 1)}),
        ]
        for content, hdrs in attempts:
            response = await rig.http.post(URL, content=content, headers=hdrs)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "invalid_signature"
        assert await rig.count(models.InboxEvent) == 0
        assert await rig.count(models.RejectedItem) == 0
        assert await rig.suppressed("email") == set()
        assert (await rig.message(row.id)).status == "submitted"


async def test_pem_key_works_and_an_empty_key_disables_the_endpoint(webhooks: WebhookRigs) -> None:
    async with webhooks(
        where="pem",
        sendgrid_webhook_public_key=public_key_pem(PUBLIC),
    ) as rig:
        assert (await post(rig, [ev("delivered", "a@example.com", "<a@x>")])).status_code == 200
    async with webhooks(where="off") as rig:
        response = await post(rig, [ev("delivered", "a@example.com", "<a@x>")])
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "webhook_disabled"


async def test_stop_events_end_the_journeys_cadence(webhooks: WebhookRigs) -> None:
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        pid = uuid.uuid4().hex
        await rig.add_message("email", "ada@example.com", "<ada@closeflow>", prospect_id=pid)
        async with rig.journeys():
            handle = await rig.start_journey(pid)
            complaint = ev("spamreport", "ada@example.com", "<ada@closeflow>")
            opened = ev("open", "ada@example.com", "<ada@closeflow>")
            assert (await post(rig, [opened, complaint])).status_code == 200
            assert (await post(rig, [complaint])).status_code == 200
            got = await eventually(lambda: signals_of(handle), "the stop signal", timeout=10)
            await asyncio.sleep(0.3)  # room for a second signal, which must not come
            assert await signals_of(handle) == got
            assert got == [
                {
                    "name": "stop_cadence",
                    # no key holder: the journey names it system:stop (issue 14)
                    "payload": {"reason": "spam complaint", "actor": ""},
                }
            ]
            events = {e.event_id: e for e in await rig.inbox("sendgrid")}
            assert events[complaint["sg_event_id"]].delivery == "delivered"
            assert events[opened["sg_event_id"]].delivery == "none"
            await handle.terminate()


async def test_a_signed_body_nested_too_deep_is_kept_aside_whole(webhooks: WebhookRigs) -> None:
    """Checked against the signature first, then parsed: nested 5000 deep the parser raised
    RecursionError, a 500 that SendGrid would retry for a batch that can never get better."""
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        deep = b"[" * 5000 + b"]" * 5000
        answer = await post(rig, [], body=deep)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"processed": 0, "duplicates": 0, "rejected": 1}
        [kept] = await rig.rejected()
        assert "nested" in kept.reason and kept.raw == deep.decode()


async def test_a_drop_or_bounce_of_an_earlier_email_leaves_a_send_in_flight_alone(
    webhooks: WebhookRigs,
) -> None:
    """A row still `sending` (its attempt may have died before calling SendGrid) is the latest
    email to the address, so an event naming another message is matched to it by the address.
    A drop failed it and a hard bounce bounced it: its retry then took the email for gone
    (nothing sent, no other channel tried). The bounce suppresses the address (the retry finds
    it so); an event naming the row itself still moves it."""
    async with webhooks(sendgrid_webhook_public_key=PUBLIC) as rig:
        jo = await rig.add_message("email", "jo@example.com", "", status="sending")
        kim = await rig.add_message("email", "kim@example.com", "", status="sending")
        lee = await rig.add_message("email", "lee@example.com", "<lee@closeflow>", status="sending")
        batch = [
            ev("dropped", "jo@example.com", "<earlier-jo@closeflow>", reason="Invalid"),
            ev("bounce", "kim@example.com", "<earlier-kim@closeflow>"),
            ev("dropped", "lee@example.com", "<lee@closeflow>", reason="Invalid"),
        ]
        assert (await post(rig, batch)).status_code == 200
        status = {r.to_address: (await rig.message(r.id)).status for r in (jo, kim, lee)}
        assert status == {
            "jo@example.com": "sending",
            "kim@example.com": "sending",
            "lee@example.com": "failed",
        }
        assert await rig.suppressed("email") == {"kim@example.com"}
