"""Issue 11: a NUL character inside a correctly signed provider webhook, on PostgreSQL (whose text
and jsonb cannot hold one). Every inbound provider webhook answers it with a clear 4xx or stores
the event safely, never a 500; the same endpoint then still takes a clean event."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from services.outreach import models
from shared.providers import postmark, sendgrid
from shared.providers.mailgun import event_payload, inbound_form
from shared.providers.postmark import basic_auth_header
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
from shared.requests import has_nul
from tests.support.webhooks import Rig, WebhookRigs

ON_POSTGRES = pytest.mark.parametrize(
    "database_urls", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
NUL = "\x00"
PRIVATE, PUBLIC = sendgrid.generate_key_pair()
PM_USER, PM_PASSWORD = "postmark", "pm-webhook-secret"
SETTINGS = {
    "sendgrid_webhook_public_key": PUBLIC,
    "postmark_webhook_user": PM_USER,
    "postmark_webhook_password": PM_PASSWORD,
}

# one request per webhook: (the text to put in a free field) -> response
Post = Callable[[Rig, str], Awaitable[httpx.Response]]


async def _twilio(rig: Rig, path: str, params: dict[str, str]) -> httpx.Response:
    url = f"http://test/webhooks/twilio/{path}"
    token = rig.settings.twilio_auth_token.get_secret_value()
    signature = sign_twilio_request(token, url, params)
    return await rig.http.post(url, data=params, headers={SIGNATURE_HEADER: signature})


async def twilio_sms(rig: Rig, text: str) -> httpx.Response:
    params = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": "+14155550123", "Body": text}
    return await _twilio(rig, "sms", params)


async def twilio_status(rig: Rig, text: str) -> httpx.Response:
    sid = f"SM{uuid.uuid4().hex}"
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorMessage": text}
    return await _twilio(rig, "status", params)


def _mailgun_key(rig: Rig) -> str:
    return rig.settings.mailgun_signing_key.get_secret_value()


async def mailgun_inbound(rig: Rig, text: str) -> httpx.Response:
    form = inbound_form(
        sender="ada@example.com",
        recipient="sales@closeflow.localhost",
        subject=f"Re: {text}",
        text=text,
        in_reply_to=None,
        references=None,
        message_id=f"<{uuid.uuid4().hex}@example.com>",
        signing_key=_mailgun_key(rig),
        now=time.time(),
    )
    return await rig.http.post("/webhooks/mailgun/inbound", data=form)


async def mailgun_events(rig: Rig, text: str) -> httpx.Response:
    doc = event_payload(
        event="failed",
        recipient="ada@example.com",
        message_id=f"{uuid.uuid4().hex}@closeflow",
        event_id=uuid.uuid4().hex,
        severity="permanent",
        reason="bounce",
        description=text,
        signing_key=_mailgun_key(rig),
        now=time.time(),
    )
    return await rig.http.post("/webhooks/mailgun/events", json=doc)


async def _postmark(rig: Rig, path: str, doc: dict[str, Any]) -> httpx.Response:
    auth = basic_auth_header(PM_USER, PM_PASSWORD)
    return await rig.http.post(f"/webhooks/postmark/{path}", json=doc, headers=auth)


async def postmark_events(rig: Rig, text: str) -> httpx.Response:
    doc = postmark.bounce(
        email="ada@example.com", message_id=postmark.new_message_id(), now=time.time()
    )
    doc["Details"] = text
    return await _postmark(rig, "events", doc)


async def postmark_inbound(rig: Rig, text: str) -> httpx.Response:
    doc = postmark.inbound(
        from_email="ada@example.com",
        to_email="sales@closeflow.localhost",
        subject=f"Re: {text}",
        text=text,
        stripped_reply=text,
        message_id_header=f"<{uuid.uuid4().hex}@example.com>",
        in_reply_to=None,
        references=None,
        now=time.time(),
    )
    return await _postmark(rig, "inbound", doc)


async def sendgrid_events(rig: Rig, text: str) -> httpx.Response:
    item = sendgrid.event(
        "bounce",
        email="ada@example.com",
        smtp_id=f"<{uuid.uuid4().hex}@closeflow>",
        now=time.time(),
        type="bounce",
        reason=text,
        status="5.1.1",
    )
    raw = json.dumps([item]).encode()  # "\u0000" in the JSON text, as a provider would send it
    headers = sendgrid.signed_headers(PRIVATE, raw, time.time())
    return await rig.http.post("/webhooks/sendgrid/events", content=raw, headers=headers)


async def postmark_unreadable(rig: Rig, text: str) -> httpx.Response:
    """A body that is not JSON, with a raw NUL byte: kept aside for a human (rejected_items)."""
    auth = basic_auth_header(PM_USER, PM_PASSWORD)
    raw = f"not json: {text}".encode()
    return await rig.http.post("/webhooks/postmark/events", content=raw, headers=auth)


async def sendgrid_unreadable(rig: Rig, text: str) -> httpx.Response:
    raw = f"not json: {text}".encode()
    headers = sendgrid.signed_headers(PRIVATE, raw, time.time())
    return await rig.http.post("/webhooks/sendgrid/events", content=raw, headers=headers)


WEBHOOKS: dict[str, Post] = {
    "twilio sms": twilio_sms,
    "twilio status": twilio_status,
    "mailgun inbound": mailgun_inbound,
    "mailgun events": mailgun_events,
    "postmark events": postmark_events,
    "postmark inbound": postmark_inbound,
    "sendgrid events": sendgrid_events,
    "postmark, not JSON": postmark_unreadable,
    "sendgrid, not JSON": sendgrid_unreadable,
}


@ON_POSTGRES
async def test_a_nul_in_a_signed_webhook_is_a_4xx_or_stored_safely(webhooks: WebhookRigs) -> None:
    answers: dict[str, tuple[int, int]] = {}
    async with webhooks(**SETTINGS) as rig:
        for name, post in WEBHOOKS.items():
            stored = await rig.count(models.InboxEvent) + await rig.count(models.RejectedItem)
            with_nul = await post(rig, f"call me{NUL}maybe")
            if with_nul.is_success:  # stored safely: readable, without the NUL
                events = await rig.inbox()
                rejected = await rig.rejected()
                assert len(events) + len(rejected) > stored, f"{name}: 2xx but nothing stored"
                kept = [e.payload for e in events] + [r.raw for r in rejected]
                # read back as stored: a NUL kept in the payload (PostgreSQL's json type holds
                # it escaped) would reach text columns and Temporal payloads downstream
                assert not has_nul(kept), f"{name}: a NUL was stored"
            else:
                assert with_nul.status_code < 500, f"{name}: {with_nul.status_code}"
                assert with_nul.json()["error"]["code"], name
            clean = await post(rig, "call me maybe")  # the endpoint still works
            answers[name] = (with_nul.status_code, clean.status_code)
    assert {name: clean for name, (_, clean) in answers.items()} == {
        name: 204 if name == "twilio status" else 200 for name in WEBHOOKS
    }, answers
    assert all(code < 500 for code, _ in answers.values()), answers
