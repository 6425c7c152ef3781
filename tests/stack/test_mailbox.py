"""The dev mailbox end to end: real SMTP in, JSON/HTML out, signed Mailgun webhooks out."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from devstack.sandbox.mailbox import Mailbox, create_app, start_smtp
from shared.providers.email import EmailSendError, OutgoingEmail, SmtpEmail
from shared.providers.mailgun import verify_mailgun_signature
from tests.support.emails import plain_email
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT

KEY = "test-signing-key"
FROM = "closeflow <sales@closeflow.test>"


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def signed(fields: dict[str, Any]) -> bool:
    """Mailgun's check of timestamp, token and signature, as outreach makes it."""
    parts = (str(fields.get(name, "")) for name in ("timestamp", "token", "signature"))
    return verify_mailgun_signature(KEY, *parts, now=time.time())


def receiver_app(received: dict[str, list[Any]]) -> FastAPI:
    """Stands in for outreach's webhook endpoints: verifies like production, records what came."""
    app = FastAPI()

    @app.post("/webhooks/mailgun/inbound")
    async def inbound(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        if not signed(form):
            return Response("bad signature", status_code=403)
        received["inbound"].append(form)
        return Response("ok")

    @app.post("/webhooks/mailgun/events")
    async def events(request: Request) -> Response:
        body = await request.json()
        if not signed(body.get("signature", {})):
            return Response("bad signature", status_code=403)
        received["events"].append(body)
        return Response("ok")

    return app


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mailbox")


@pytest.fixture(scope="module")
async def smtp(folder: Path) -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox = Mailbox(folder)
    port = free_port()
    controller = await start_smtp(mailbox, "127.0.0.1", port)
    yield mailbox, port
    await asyncio.to_thread(controller.stop)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[str, dict[str, list[Any]]]]:
    received: dict[str, list[Any]] = {"inbound": [], "events": []}
    port = free_port()
    server = QuietServer(
        uvicorn.Config(receiver_app(received), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    yield f"http://127.0.0.1:{port}", received
    server.should_exit = True
    await task


def mailbox_client(mailbox: Mailbox, outreach_url: str, key: str = KEY) -> httpx.AsyncClient:
    app = create_app(mailbox, outreach_url=outreach_url, signing_key=key)
    return httpx.AsyncClient(
        timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app=app), base_url="http://mailbox"
    )


async def send(port: int, to: str, subject: str = "Quick question", **kw: Any) -> OutgoingEmail:
    sender = SmtpEmail("127.0.0.1", port, "", "", "none", FROM)
    msg = OutgoingEmail(
        to=to,
        subject=subject,
        text="Hello,\nare you the right person to talk to?",
        html="<p>Hello, are you the right person?</p>",
        message_id=sender.new_message_id(),
        unsubscribe_url="https://out.closeflow.test/unsubscribe/tok-1",
        **kw,
    )
    assert await sender.send(msg) == msg.message_id
    return msg


async def test_sent_message_appears_with_headers(smtp, receiver) -> None:
    mailbox, port = smtp
    msg = await send(port, "Ada <ada@example.com>")
    async with mailbox_client(mailbox, receiver[0]) as client:
        listed = (await client.get("/api/messages", params={"to": "ada@example.com"})).json()
        assert [m["message_id"] for m in listed] == [msg.message_id]
        one = listed[0]
        assert one["subject"] == "Quick question"
        assert one["from"] == FROM and one["to"] == "Ada <ada@example.com>"
        assert one["headers"]["List-Unsubscribe"] == f"<{msg.unsubscribe_url}>"
        assert one["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert one["text"] == "Hello,\nare you the right person to talk to?\n"
        assert "<p>Hello" in one["html"]
        assert one["envelope_to"] == ["ada@example.com"]
        assert (await client.get(f"/api/messages/{one['id']}")).json() == one
        nobody = await client.get("/api/messages", params={"to": "nobody@example.com"})
        assert nobody.json() == []


async def test_a_long_subject_folded_on_the_wire_reads_as_sent(smtp, receiver) -> None:
    """Python's generator folds this subject before its first word ("Subject:" CRLF SP ...);
    a mail client unfolds it without the space: so does the mailbox."""
    mailbox, port = smtp
    subject = "Invitation: Intro call on Sunday 06 December at 09:40 (America/New_York)"
    await send(port, "fold@example.com", subject=subject)
    async with mailbox_client(mailbox, receiver[0]) as client:
        listed = (await client.get("/api/messages", params={"to": "fold@example.com"})).json()
        assert [m["subject"] for m in listed] == [subject]


async def test_newest_first_and_html_escaped(smtp, receiver) -> None:
    mailbox, port = smtp
    await send(port, "eve@example.com", subject="first")
    await send(port, "eve@example.com", subject="<script>alert(1)</script>")
    async with mailbox_client(mailbox, receiver[0]) as client:
        listed = (await client.get("/api/messages", params={"to": "eve@example.com"})).json()
        assert [m["subject"] for m in listed] == ["<script>alert(1)</script>", "first"]
        index = (await client.get("/")).text
        assert "<script>alert(1)</script>" not in index
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
        page = (await client.get(f"/messages/{listed[0]['id']}")).text
        assert "<script>" not in page and "&lt;script&gt;" in page
        assert 'action="https://out.closeflow.test/unsubscribe/tok-1"' in page
        assert f'action="/messages/{listed[0]["id"]}/reply"' in page


async def test_reply_posts_signed_mailgun_form(smtp, receiver) -> None:
    mailbox, port = smtp
    url, received = receiver
    msg = await send(port, "Bob <bob@example.com>", reply_to="replies@closeflow.test")
    async with mailbox_client(mailbox, url) as client:
        ident = (await client.get("/api/messages", params={"to": "bob@example.com"})).json()[0]
        before = len(received["inbound"])
        result = await client.post(
            f"/api/messages/{ident['id']}/reply", json={"text": "Yes, call me Tuesday."}
        )
        assert result.status_code == 200, result.text
        assert result.json() == {"webhook_status": 200, "webhook_body": "ok"}
    form = received["inbound"][before]
    assert form["In-Reply-To"] == msg.message_id
    assert form["References"] == msg.message_id
    assert form["recipient"] == "replies@closeflow.test"
    assert form["sender"] == "bob@example.com"
    assert form["subject"] == "Re: Quick question"
    assert form["stripped-text"] == "Yes, call me Tuesday."
    assert "> Hello," in form["body-plain"]


async def test_reply_signed_with_wrong_key_is_refused(smtp, receiver) -> None:
    mailbox, port = smtp
    url, received = receiver
    await send(port, "carol@example.com")
    async with mailbox_client(mailbox, url, key="not-the-key") as client:
        ident = (await client.get("/api/messages", params={"to": "carol@example.com"})).json()[0]
        before = len(received["inbound"])
        result = await client.post(f"/api/messages/{ident['id']}/reply", json={"text": "hi"})
        assert result.json()["webhook_status"] == 403
    assert len(received["inbound"]) == before


async def test_html_reply_form(smtp, receiver) -> None:
    mailbox, port = smtp
    url, received = receiver
    await send(port, "dan@example.com")
    async with mailbox_client(mailbox, url) as client:
        ident = (await client.get("/api/messages", params={"to": "dan@example.com"})).json()[0]
        page = await client.post(
            f"/messages/{ident['id']}/reply",
            data={"text": "From the form", "from": "Dan <dan.other@example.com>"},
        )
        assert page.status_code == 200 and "HTTP 200" in page.text
    form = received["inbound"][-1]
    assert form["stripped-text"] == "From the form"
    assert form["sender"] == "dan.other@example.com"


async def test_bounce_posts_signed_failed_event(smtp, receiver) -> None:
    mailbox, port = smtp
    url, received = receiver
    msg = await send(port, "gone@example.com")
    async with mailbox_client(mailbox, url) as client:
        ident = (await client.get("/api/messages", params={"to": "gone@example.com"})).json()[0]
        result = await client.post(f"/api/messages/{ident['id']}/bounce")
        assert result.json()["webhook_status"] == 200
    data = received["events"][-1]["event-data"]
    assert data["event"] == "failed" and data["severity"] == "permanent"
    assert data["recipient"] == "gone@example.com"
    assert data["message"]["headers"]["message-id"] == msg.message_id.strip("<>")


async def test_unknown_ids_are_404(smtp, receiver) -> None:
    mailbox, _ = smtp
    async with mailbox_client(mailbox, receiver[0]) as client:
        for ident in ("0000000000000000000-deadbeef", "..%2Fsecret", "nope"):
            response = await client.get(f"/api/messages/{ident}")
            assert response.status_code == 404
        reply = await client.post("/api/messages/nope/reply", json={"text": "x"})
        assert reply.status_code == 404


async def test_unreachable_outreach_is_502(smtp) -> None:
    mailbox, port = smtp
    await send(port, "frank@example.com")
    async with mailbox_client(mailbox, f"http://127.0.0.1:{free_port()}") as client:
        ident = (await client.get("/api/messages", params={"to": "frank@example.com"})).json()[0]
        result = await client.post(f"/api/messages/{ident['id']}/bounce")
        assert result.status_code == 502
        assert result.json()["error"]["code"] == "webhook_unreachable"


async def test_messages_survive_a_new_mailbox(smtp, folder: Path) -> None:
    mailbox, port = smtp
    msg = await send(port, "grace@example.com")
    reopened = Mailbox(folder)
    assert [m.message_id for m in reopened.list(to="grace@example.com")] == [msg.message_id]
    assert reopened.ids() == mailbox.ids()


async def test_smtp_down_raises_send_error() -> None:
    sender = SmtpEmail("127.0.0.1", free_port(), "", "", "none", FROM)
    with pytest.raises(EmailSendError) as info:
        await sender.send(plain_email())
    assert not info.value.permanent


class RefusingHandler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        return "550 5.1.1 No such user"


async def test_refused_recipient_is_permanent() -> None:
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(RefusingHandler(), hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        sender = SmtpEmail("127.0.0.1", port, "", "", "none", FROM)
        with pytest.raises(EmailSendError) as info:
            await sender.send(plain_email())
        assert info.value.permanent and info.value.code == 550
    finally:
        await asyncio.to_thread(controller.stop)
