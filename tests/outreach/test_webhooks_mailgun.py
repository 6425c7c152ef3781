"""Mailgun: stale or future timestamps are refused, and a token is single-use.

The signature covers timestamp + token only, not the body. So the same request again (Mailgun
retrying) is a duplicate: 200, no second effect; the token with another body (a captured
signature reused) is a replay: 403 and nothing stored.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from services.outreach import models
from services.outreach.inbox import TOKEN_RETENTION
from services.outreach.webhooks.mailgun import UNSIGNED_FORMS_AT_ONCE, unsigned_forms
from shared.providers.mailgun import (
    PERMANENT,
    TEMPORARY,
    event_payload,
    inbound_form,
    sign_mailgun,
)
from tests.support.eventually import eventually
from tests.support.webhooks import (
    Rig,
    WebhookRigs,
    signals_of,
)


def bounce(rig: Rig, to: str, message_id: str, now: float, **kw: Any) -> dict[str, Any]:
    return event_payload(
        event=kw.pop("event", "failed"),
        recipient=to,
        message_id=message_id,
        event_id=kw.pop("event_id", uuid.uuid4().hex),
        severity=kw.pop("severity", PERMANENT),
        reason="bounce",
        signing_key=rig.settings.mailgun_signing_key.get_secret_value(),
        now=now,
        **kw,
    )


def reply_form(rig: Rig, row: models.Message) -> dict[str, str]:
    """Ada's signed reply to `row`, as the inbound route forwards it."""
    return inbound_form(
        sender="ada@example.com",
        recipient="sales@closeflow.localhost",
        subject="Re: Quick question",
        text="Sounds good, call me",
        in_reply_to=row.provider_id,
        references=row.provider_id,
        message_id="<reply-1@example.com>",
        signing_key=rig.settings.mailgun_signing_key.get_secret_value(),
        now=time.time(),
    )


async def stored_nothing(rig: Rig) -> bool:
    return (
        await rig.count(models.InboxEvent) == 0
        and await rig.count(models.WebhookToken) == 0
        and await rig.suppressed("email") == set()
    )


@pytest.mark.parametrize("future", [False, True])
async def test_stale_and_future_timestamps_are_refused(future: bool, webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        skew = 16 * 60 if future else -rig.settings.mailgun_max_age_seconds - 60
        # correctly signed, just not now
        payload = bounce(rig, "ada@example.com", row.provider_id or "", time.time() + skew)
        response = await rig.http.post("/webhooks/mailgun/events", json=payload)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "invalid_signature"
        assert await stored_nothing(rig)
        assert (await rig.message(row.id)).status == "submitted"


async def test_a_retry_hours_later_with_the_first_signature_is_taken_once(
    webhooks: WebhookRigs,
) -> None:
    """Mailgun retries a webhook it could not deliver for 8 hours (5, 10, 15 minutes, then 1, 2
    and 4 hours) and does not say it signs a retry again: one signed 7 hours ago still counts,
    once, and its token with another body is still a replay."""
    async with webhooks() as rig:
        assert rig.settings.mailgun_max_age_seconds >= 8 * 3600
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        late = bounce(rig, "ada@example.com", row.provider_id or "", time.time() - 7 * 3600)
        assert (await rig.http.post("/webhooks/mailgun/events", json=late)).status_code == 200
        assert (await rig.http.post("/webhooks/mailgun/events", json=late)).status_code == 200
        assert len(await rig.inbox("mailgun")) == 1
        assert await rig.suppressed("email") == {"ada@example.com"}
        other = {**late, "event-data": {**late["event-data"], "recipient": "bob@example.com"}}
        replayed = await rig.http.post("/webhooks/mailgun/events", json=other)
        assert replayed.status_code == 403
        assert replayed.json()["error"]["code"] == "replayed_token"
        assert await rig.suppressed("email") == {"ada@example.com"}


async def test_a_used_token_is_pruned_with_the_inbox_relays_rows_after_a_day(
    webhooks: WebhookRigs,
) -> None:
    """A token only has to outlive the age a signature is accepted at; the relay's prune, the
    one every table that grows goes through, deletes it after TOKEN_RETENTION."""
    async with webhooks() as rig:
        await rig.app.state.inbox.stop()  # its loop prunes too: stopped, the test's prune counts
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        tokens = []
        for _ in range(2):
            payload = bounce(rig, "ada@example.com", row.provider_id or "", time.time())
            assert (await rig.http.post("/webhooks/mailgun/events", json=payload)).is_success
            tokens.append(payload["signature"]["token"])
        async with rig.sessions() as session:
            await session.execute(
                update(models.WebhookToken)
                .where(models.WebhookToken.token == tokens[0])
                .values(created_at=datetime.now(UTC) - TOKEN_RETENTION - timedelta(minutes=1))
            )
            await session.commit()
        assert await rig.app.state.inbox.prune() == 1
        async with rig.sessions() as session:
            left = (await session.scalars(select(models.WebhookToken.token))).all()
        assert left == [tokens[1]]


async def test_a_token_replayed_with_another_body_is_refused(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        delivered = bounce(
            rig, "ada@example.com", row.provider_id or "", time.time(), event="delivered"
        )
        delivered["event-data"].pop("severity", None)
        assert (await rig.http.post("/webhooks/mailgun/events", json=delivered)).status_code == 200
        # Mailgun retrying the very same request: a duplicate, no second effect
        assert (await rig.http.post("/webhooks/mailgun/events", json=delivered)).status_code == 200
        assert len(await rig.inbox("mailgun")) == 1

        # someone who captured it turns it into a complaint about another address
        forged = {
            "signature": delivered["signature"],
            "event-data": {
                **delivered["event-data"],
                "event": "complained",
                "id": uuid.uuid4().hex,
                "recipient": "grace@example.com",
            },
        }
        response = await rig.http.post("/webhooks/mailgun/events", json=forged)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "replayed_token"
        assert await rig.suppressed("email") == set()
        assert len(await rig.inbox("mailgun")) == 1
        assert (await rig.message(row.id)).status == "delivered"


async def test_an_inbound_token_replayed_with_another_text_is_refused(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks() as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        form = reply_form(rig, row)
        async with rig.journeys():
            handle = await rig.start_journey(row.prospect_id)
            assert (await rig.http.post("/webhooks/mailgun/inbound", data=form)).status_code == 200
            again = await rig.http.post("/webhooks/mailgun/inbound", data=form)
            assert again.status_code == 200
            tampered = {**form, "stripped-text": "Unsubscribe me", "Message-Id": "<other@x>"}
            refused = await rig.http.post("/webhooks/mailgun/inbound", data=tampered)
            assert refused.status_code == 403

            async def replies() -> list[dict[str, Any]]:
                return [s for s in await signals_of(handle) if s["name"] == "reply_received"]

            got = await eventually(replies, "the reply signal", timeout=10)
            await asyncio.sleep(0.3)  # room for a second signal, which must not come
            assert await replies() == got
            assert [s["payload"]["excerpt"] for s in got] == ["Sounds good, call me"]
            await handle.terminate()
        assert len(await rig.inbox("mailgun")) == 1


async def test_a_wrong_signature_stores_nothing(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        payload = bounce(rig, "ada@example.com", row.provider_id or "", time.time())
        sig = payload["signature"]
        sig["signature"] = sign_mailgun("another-key", sig["timestamp"], sig["token"])
        assert (await rig.http.post("/webhooks/mailgun/events", json=payload)).status_code == 403
        assert await stored_nothing(rig)


@pytest.mark.parametrize(("event", "severity"), [("accepted", None), ("failed", TEMPORARY)])
async def test_an_event_naming_a_message_left_sending_records_it_sent(
    event: str, severity: str | None, webhooks: WebhookRigs
) -> None:
    """A row left `sending` by an attempt that died after the SMTP server accepted it: an event
    that names it by its Message-ID (Mailgun queued it; Mailgun is retrying the recipient's
    server) says the provider has it, so the row is `submitted` and a retry sends nothing. An
    event that only matches the address it went to proves nothing about that row."""
    async with webhooks() as rig:
        named = await rig.add_message("email", "ada@example.com", "<m1@x>", status="sending")
        unnamed = await rig.add_message("email", "bob@example.com", "<m2@x>", status="sending")
        for to, message_id in (("ada@example.com", "m1@x"), ("bob@example.com", "other@x")):
            payload = bounce(rig, to, message_id, time.time(), event=event, severity=severity)
            assert (
                await rig.http.post("/webhooks/mailgun/events", json=payload)
            ).status_code == 200
        row = await rig.message(named.id)
        assert (row.status, row.sending_until, row.provider_status) == ("submitted", None, event)
        assert row.sent_at is not None
        assert (await rig.message(unnamed.id)).status == "sending"
        assert await rig.suppressed("email") == set()


async def test_an_event_body_that_cannot_be_parsed_is_a_400_storing_nothing(
    webhooks: WebhookRigs,
) -> None:
    """The signature is inside the body, so nothing is authenticated while it is parsed: a body
    the parser refuses, however it fails, is a 400. Nested 5000 deep it raised RecursionError,
    a RuntimeError no `except ValueError` caught: a 500 for anyone."""
    async with webhooks() as rig:
        bodies = [b"[" * 5000 + b"]" * 5000, b"[" * 40 + b"]" * 40, b"{not json", b'"\xff"']
        for body in bodies:
            answer = await rig.http.post(
                "/webhooks/mailgun/events",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert answer.status_code == 400, (body[:10], answer.text)
            assert answer.json()["error"]["code"] == "invalid_payload"
        assert await stored_nothing(rig)


async def test_a_signed_event_with_parts_of_another_shape_is_stored_all_the_same(
    webhooks: WebhookRigs,
) -> None:
    """Parts Mailgun sends as objects (`message`, its `headers`, `delivery-status`) that come in
    another shape are read as absent: the event is authentic, so it is stored and applied by its
    recipient. They raised AttributeError before (a 500, and Mailgun retrying for 8 hours)."""
    async with webhooks() as rig:
        odd_parts: list[dict[str, Any]] = [
            {"message": "not an object"},
            {"message": {"headers": ["message-id", "m1@x"]}},
            {"delivery-status": ["550"]},
            {"delivery-status": {"description": {"text": "mailbox full"}}},
        ]
        for index, odd in enumerate(odd_parts):
            to = f"p{index}@example.com"
            row = await rig.add_message("email", to, f"<m{index}@x>")
            payload = bounce(rig, to, f"m{index}@x", time.time())
            payload["event-data"].update(odd)
            answer = await rig.http.post("/webhooks/mailgun/events", json=payload)
            assert answer.status_code == 200, (odd, answer.text)
            assert (await rig.message(row.id)).status == "bounced"
        assert len(await rig.inbox("mailgun")) == len(odd_parts)
        assert await rig.suppressed("email") == {f"p{i}@example.com" for i in range(4)}


async def test_inbound_message_headers_nested_too_deep_fall_back_to_the_posted_fields(
    webhooks: WebhookRigs,
) -> None:
    """`message-headers` is JSON inside a signed form: nested past the parser's limit it is not
    read (a 500 before), and the headers Mailgun posts as fields of their own are used."""
    async with webhooks() as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        form = reply_form(rig, row)
        form["message-headers"] = "[" * 5000 + "]" * 5000
        answer = await rig.http.post("/webhooks/mailgun/inbound", data=form)
        assert answer.status_code == 200, answer.text
        [event] = await rig.inbox("mailgun")
        assert (event.kind, event.prospect_id) == ("email_reply", row.prospect_id)


async def test_an_inbound_stop_from_an_address_longer_than_any_is_kept_aside(
    webhooks: WebhookRigs,
) -> None:
    """A signed STOP whose sender is longer than any address column (320): on PostgreSQL its
    suppression raised (varchar(320)), a 500 Mailgun gives up on. Checked where it enters: kept
    aside with the reason, 200, and its retry is a duplicate; the next message is stored."""
    long_address = "a" * 330 + "@example.com"
    async with webhooks() as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        form = {**reply_form(rig, row), "sender": long_address, "stripped-text": "STOP"}
        answer = await rig.http.post("/webhooks/mailgun/inbound", data=form)
        assert answer.status_code == 200, answer.text
        assert (await rig.http.post("/webhooks/mailgun/inbound", data=form)).status_code == 200
        [kept] = await rig.rejected()
        assert kept.reason == "sender address of 342 characters (at most 320)"
        assert await rig.suppressed("email") == set()
        assert await rig.count(models.InboxEvent) == 0
        answer = await rig.http.post("/webhooks/mailgun/inbound", data=reply_form(rig, row))
        assert answer.status_code == 200
        [event] = await rig.inbox("mailgun")
        assert (event.kind, event.prospect_id) == ("email_reply", row.prospect_id)


async def test_an_inbound_reply_with_a_long_quoted_thread_is_stored(webhooks: WebhookRigs) -> None:
    """A reply quoting a long thread: its body-plain, one field of Mailgun's multipart form, is
    over 1 MiB. Starlette's form parser refused any field over 1 MiB (400), and Mailgun retried
    then dropped the reply. The inbound route reads fields up to its own body limit."""
    thread = "> " + "an earlier message in this thread, quoted again. " * 30_000  # 1.5 MB
    async with webhooks(inbound_email_max_body_bytes=4 * 1024 * 1024) as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        form = {**reply_form(rig, row), "attachment-count": "1"}
        form["body-plain"] = f"{form['body-plain']}\n\n{thread}"
        files = {"attachment-1": ("note.txt", b"hello", "text/plain")}  # multipart, as Mailgun
        answer = await rig.http.post("/webhooks/mailgun/inbound", data=form, files=files)
        assert answer.status_code == 200, answer.text
        [event] = await rig.inbox("mailgun")
        assert (event.kind, event.prospect_id) == ("email_reply", row.prospect_id)


async def test_an_unsigned_post_with_large_files_writes_nothing_to_disk(
    webhooks: WebhookRigs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature covers no attachment, and the form is read before it can be checked:
    Starlette spooled each file over 1 MiB to a temporary file, so strangers' posts up to the
    route's 40 MiB limit filled the pod's /tmp (a 64 MiB emptyDir). Attachments are dropped
    unread: no temporary file, signed or not."""
    spilled: list[object] = []
    real = tempfile.TemporaryFile

    def recording(*args: Any, **kwargs: Any) -> Any:
        spilled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    deck = os.urandom(3 * 1024 * 1024)
    async with webhooks(inbound_email_max_body_bytes=16 * 1024 * 1024) as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        files = [(f"attachment-{n}", (f"deck-{n}.pdf", deck, "application/pdf")) for n in (1, 2)]
        forged = {**reply_form(rig, row), "attachment-count": "2", "signature": "0" * 64}
        refused = await rig.http.post("/webhooks/mailgun/inbound", data=forged, files=files)
        assert refused.status_code == 403
        signed = {**reply_form(rig, row), "attachment-count": "2"}
        answer = await rig.http.post("/webhooks/mailgun/inbound", data=signed, files=files)
        assert answer.status_code == 200, answer.text
        [event] = await rig.inbox("mailgun")
        assert (event.kind, event.prospect_id) == ("email_reply", row.prospect_id)
    assert spilled == []


async def test_an_inbound_reply_with_a_2_mb_attachment_is_stored(webhooks: WebhookRigs) -> None:
    """Mailgun's forward() posts the attachments as files of a multipart form: a reply with a
    2 MB PDF was refused 413 by the 1 MiB limit of every route, and Mailgun dropped it. The
    inbound route takes CLOSEFLOW_INBOUND_EMAIL_MAX_BODY_BYTES (the file spooled while the form
    is read, its signature checked before anything is stored, the file itself never stored);
    the event route keeps the 1 MiB limit."""
    deck = os.urandom(2 * 1024 * 1024)
    async with webhooks(inbound_email_max_body_bytes=4 * 1024 * 1024) as rig:
        row = await rig.add_message("email", "ada@example.com", "<m1@closeflow.localhost>")
        form = {**reply_form(rig, row), "attachment-count": "1"}
        files = {"attachment-1": ("deck.pdf", deck, "application/pdf")}
        answer = await rig.http.post("/webhooks/mailgun/inbound", data=form, files=files)
        assert answer.status_code == 200, answer.text
        [event] = await rig.inbox("mailgun")
        assert (event.kind, event.prospect_id) == ("email_reply", row.prospect_id)
        assert "attachment-1" not in event.payload

        forged = {**reply_form(rig, row), "signature": "0" * 64}
        refused = await rig.http.post("/webhooks/mailgun/inbound", data=forged, files=files)
        assert refused.status_code == 403
        assert len(await rig.inbox("mailgun")) == 1

        big = bounce(rig, "ada@example.com", "m1@closeflow.localhost", time.time())
        big["event-data"]["reason"] = deck.hex()
        too_large = await rig.http.post("/webhooks/mailgun/events", json=big)
        assert too_large.status_code == 413


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)  # no database matter
async def test_unsigned_inbound_forms_are_read_two_at_a_time(webhooks: WebhookRigs) -> None:
    """A form is read whole before its signature (in its fields) can refuse it: a stranger's
    posts of 40 MiB fields each held about twice that at once. Two are read at a time; a third
    waits for a place, and is then read and refused as ever."""
    async with webhooks() as rig:
        places = unsigned_forms(rig.app.state)
        held = [await _hold(places) for _ in range(UNSIGNED_FORMS_AT_ONCE)]
        post = asyncio.create_task(
            rig.http.post("/webhooks/mailgun/inbound", data={"body-plain": "x" * 100_000})
        )
        done, _ = await asyncio.wait([post], timeout=1.0)
        assert not done  # waiting for a place, not read
        for release in held:
            release()
        answer = await post
        assert answer.status_code == 403, answer.text
        assert await stored_nothing(rig)


async def _hold(semaphore: asyncio.Semaphore) -> Callable[[], None]:
    await semaphore.acquire()
    return semaphore.release
