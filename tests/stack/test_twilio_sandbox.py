"""The Twilio sandbox driven by the real twilio library, calling back a signed-webhook receiver."""

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from devstack.sandbox.twilio_server import create_app
from shared.providers.sms import RebasedAsyncTwilioHttpClient, TwilioSms
from shared.providers.twilio_signature import SIGNATURE_HEADER, verify_twilio_signature
from tests.support.serve import HTTP_TIMEOUT

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "sandbox-test-token"
FROM = "+15005550006"
SID = re.compile(r"^(SM|CA)[0-9a-f]{32}$")


class QuietServer(uvicorn.Server):
    # The test process owns the signals; a server in a background task must not take them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: FastAPI | Any) -> AsyncIterator[str]:
    """Runs app on a loopback port the OS picked, kept bound from the start (no port race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before starting")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Hit:
    path: str
    url: str
    form: dict[str, str]
    signature: str | None
    valid: bool


class Receiver:
    """Stands in for outreach's webhooks: verifies like production and records every request."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.app = FastAPI()

        @self.app.post("/{path:path}")
        async def hook(path: str, request: Request) -> Response:
            form = await request.form()
            signature = request.headers.get(SIGNATURE_HEADER)
            valid = verify_twilio_signature(TOKEN, str(request.url), form, signature)
            hit = Hit(
                path, str(request.url), {k: str(v) for k, v in form.items()}, signature, valid
            )
            self.hits.append(hit)
            if not valid:
                return Response("bad signature", status_code=403)
            if path == "flaky" and self._first_of_its_kind(hit):
                return Response("try again", status_code=503)
            return Response("<Response/>", media_type="text/xml")

    def _first_of_its_kind(self, hit: Hit) -> bool:
        key = (hit.form.get("MessageSid"), hit.form.get("MessageStatus"))
        return [(h.form.get("MessageSid"), h.form.get("MessageStatus")) for h in self.hits].count(
            key
        ) == 1

    def for_sid(self, sid: str) -> list[Hit]:
        return [h for h in self.hits if sid in (h.form.get("MessageSid"), h.form.get("CallSid"))]


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    async with serve(rec.app) as url:
        yield rec, url


@pytest.fixture(scope="module")
async def sandbox(
    receiver: tuple[Receiver, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    app = create_app(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        inbound_sms_url=receiver[1] + "/webhooks/twilio/sms",
        data_file=tmp_path_factory.mktemp("twilio") / "twilio-sandbox.json",
        public_url="http://sandbox.test",
    )
    async with serve(app) as url:
        yield url


@pytest.fixture
async def sms(sandbox: str) -> AsyncIterator[TwilioSms]:
    async with TwilioSms(ACCOUNT, TOKEN, FROM, sandbox) as client:
        yield client


async def test_send_sms_delivers_signed_status_callbacks(
    sms: TwilioSms, sandbox: str, receiver: tuple[Receiver, str]
) -> None:
    rec, rec_url = receiver
    to, body = "+15551230001", "Hi Ada, 15 minutes on Tuesday?"
    since = datetime.now(UTC) - timedelta(seconds=1)

    sent = await sms.send_sms(to, body, rec_url + "/webhooks/twilio/status")

    assert SID.match(sent.sid) and sent.sid.startswith("SM")
    assert sent.status == "queued"
    await eventually(lambda: len(rec.for_sid(sent.sid)) >= 2)
    hits = rec.for_sid(sent.sid)
    assert [h.form["MessageStatus"] for h in hits] == ["sent", "delivered"]
    for hit in hits:
        assert hit.valid, hit
        assert not verify_twilio_signature("other-token", hit.url, hit.form, hit.signature)
        assert hit.form["SmsStatus"] == hit.form["MessageStatus"]
        assert hit.form | {"MessageStatus": "", "SmsStatus": ""} == {
            "AccountSid": ACCOUNT,
            "ApiVersion": "2010-04-01",
            "From": FROM,
            "To": to,
            "MessageSid": sent.sid,
            "SmsSid": sent.sid,
            "MessageStatus": "",
            "SmsStatus": "",
        }

    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=sandbox) as http:
        stored = (await http.get("/sandbox/messages", params={"to": to})).json()
        fetched = await http.get(
            f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sent.sid}.json", auth=(ACCOUNT, TOKEN)
        )
    assert [(m["sid"], m["body"], m["status"]) for m in stored] == [(sent.sid, body, "delivered")]
    assert [c["response_status"] for c in stored[0]["callbacks"]] == [200, 200]
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "delivered" and fetched.json()["date_sent"]

    assert await sms.find_recent(to, body, since) == sent.sid
    assert await sms.find_recent(to, "another text", since) is None
    assert await sms.find_recent("+15551230009", body, since) is None
    assert await sms.find_recent(to, body, datetime.now(UTC) + timedelta(minutes=1)) is None


async def test_find_recent_sees_a_message_still_queued(tmp_path: Path) -> None:
    # Twilio's DateSent filter cannot match a queued message (no date_sent yet).
    app = create_app(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        inbound_sms_url="http://127.0.0.1:9/unused",
        data_file=None,
        public_url="http://sandbox.test",
        status_step_seconds=60,
    )
    since = datetime.now(UTC)
    async with serve(app) as url, TwilioSms(ACCOUNT, TOKEN, FROM, url) as sms:
        sent = await sms.send_sms("+15551230013", "still queued", None)
        assert await sms.find_recent("+15551230013", "still queued", since) == sent.sid
        later = since + timedelta(minutes=1)
        assert await sms.find_recent("+15551230013", "still queued", later) is None


async def test_create_returns_twilios_resource_shape(sandbox: str) -> None:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=sandbox) as http:
        response = await http.post(
            f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
            data={"To": "+15551230002", "From": FROM, "Body": "Hello"},
            auth=(ACCOUNT, TOKEN),
        )
    assert response.status_code == 201
    resource = response.json()
    assert SID.match(resource["sid"])
    assert resource | {"sid": "", "date_created": "", "date_updated": ""} == {
        "account_sid": ACCOUNT,
        "api_version": "2010-04-01",
        "body": "Hello",
        "date_created": "",
        "date_sent": None,
        "date_updated": "",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": FROM,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": "",
        "status": "queued",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{resource['sid']}/Media.json",
            "feedback": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{resource['sid']}/Feedback.json",
        },
        "to": "+15551230002",
        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{resource['sid']}.json",
    }
    assert re.match(
        r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$", resource["date_created"]
    )


async def test_invalid_to_is_twilio_error_21211(sms: TwilioSms, sandbox: str) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await sms.send_sms("555-1234", "hello", None)
    assert caught.value.status == 400
    assert caught.value.code == 21211
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=sandbox) as http:
        assert (await http.get("/sandbox/messages", params={"to": "555-1234"})).json() == []


async def test_wrong_credentials_are_refused(sandbox: str) -> None:
    async with TwilioSms(ACCOUNT, "wrong-token", FROM, sandbox) as wrong:
        with pytest.raises(TwilioRestException) as caught:
            await wrong.send_sms("+15551230003", "hello", None)
    assert (caught.value.status, caught.value.code) == (401, 20003)


async def test_failed_callback_is_retried(sms: TwilioSms, receiver: tuple[Receiver, str]) -> None:
    rec, rec_url = receiver
    sent = await sms.send_sms("+15551230004", "retry me", rec_url + "/flaky")
    await eventually(lambda: len(rec.for_sid(sent.sid)) >= 4)
    await asyncio.sleep(0.3)  # a wrong extra retry would show up here
    statuses = [h.form["MessageStatus"] for h in rec.for_sid(sent.sid)]
    assert statuses == ["sent", "sent", "delivered", "delivered"]


async def test_inbound_sms_posts_a_signed_form(
    sandbox: str, receiver: tuple[Receiver, str]
) -> None:
    rec, _ = receiver
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=sandbox) as http:
        answer = await http.post(
            "/sandbox/inbound-sms",
            json={"from": "+15551230005", "to": FROM, "body": "Sounds good <3"},
        )
        stored = (await http.get("/sandbox/messages", params={"to": FROM})).json()
    assert answer.status_code == 200
    sid = answer.json()["sid"]
    assert answer.json() == {"sid": sid, "webhook_status": 200}
    [hit] = rec.for_sid(sid)
    assert hit.path == "webhooks/twilio/sms"
    assert hit.valid
    assert hit.form == {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "Body": "Sounds good <3",
        "From": "+15551230005",
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": FROM,
    }
    assert {(m["sid"], m["direction"], m["status"]) for m in stored} >= {
        (sid, "inbound", "received")
    }


async def test_stop_blocks_sending_until_start(sms: TwilioSms, sandbox: str) -> None:
    person = "+15551230006"
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=sandbox) as http:
        await http.post("/sandbox/inbound-sms", json={"from": person, "to": FROM, "body": " stop"})
        with pytest.raises(TwilioRestException) as caught:
            await sms.send_sms(person, "one more thing", None)
        assert caught.value.code == 21610
        await http.post("/sandbox/inbound-sms", json={"from": person, "to": FROM, "body": "START"})
    assert (await sms.send_sms(person, "welcome back", None)).status == "queued"


async def test_list_follows_pages(sms: TwilioSms, sandbox: str) -> None:
    to = "+15551230007"
    sids = [(await sms.send_sms(to, f"n{i}", None)).sid for i in range(3)]
    http = RebasedAsyncTwilioHttpClient(sandbox)
    try:
        client = Client(ACCOUNT, TOKEN, http_client=http, environment={})
        listed = await client.messages.list_async(to=to, page_size=2)
        page = await client.messages.page_async(to=to, page_size=2)
    finally:
        await http.close()
    assert [m.sid for m in listed] == sids[::-1]
    assert page.next_page_url and "Page=1" in page.next_page_url


async def test_call_completes_with_signed_callback(
    sandbox: str, receiver: tuple[Receiver, str]
) -> None:
    rec, rec_url = receiver
    http = RebasedAsyncTwilioHttpClient(sandbox)
    try:
        client = Client(ACCOUNT, TOKEN, http_client=http, environment={})
        call = await client.calls.create_async(
            to="+15551230008",
            from_=FROM,
            twiml="<Response><Say>Hello</Say></Response>",
            status_callback=rec_url + "/webhooks/twilio/call",
        )
        assert SID.match(call.sid) and call.sid.startswith("CA")
        assert call.status == "queued"
        await eventually(lambda: len(rec.for_sid(call.sid)) >= 1)
        fetched = await client.calls(call.sid).fetch_async()
    finally:
        await http.close()
    [hit] = rec.for_sid(call.sid)
    assert hit.valid and hit.form["CallStatus"] == "completed" and hit.form["To"] == "+15551230008"
    assert fetched.status == "completed"


async def test_page_lists_messages_escaped(sms: TwilioSms, sandbox: str) -> None:
    await sms.send_sms("+15551230010", "<script>alert(1)</script> & more", None)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=sandbox) as http:
        page = (await http.get("/")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "<script>" not in page


async def test_messages_survive_a_restart(tmp_path: Path) -> None:
    def make() -> FastAPI:
        return create_app(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            inbound_sms_url="http://127.0.0.1:9/unused",
            data_file=tmp_path / "twilio-sandbox.json",
            public_url="http://sandbox.test",
        )

    async with serve(make()) as url, TwilioSms(ACCOUNT, TOKEN, FROM, url) as sms:
        sent = await sms.send_sms("+15551230011", "remember me", None)
    async with serve(make()) as url, httpx.AsyncClient(timeout=HTTP_TIMEOUT, base_url=url) as http:
        stored = (await http.get("/sandbox/messages")).json()
    assert [(m["sid"], m["body"]) for m in stored] == [(sent.sid, "remember me")]


async def test_close_releases_the_session_and_production_urls_stay(sandbox: str) -> None:
    sms = TwilioSms(ACCOUNT, TOKEN, FROM, sandbox)
    await sms.send_sms("+15551230012", "hi", None)
    session = sms._http.session if sms._http else None
    await sms.close()
    assert session is not None and session.closed

    path = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    production = RebasedAsyncTwilioHttpClient("https://api.twilio.com/")
    local = RebasedAsyncTwilioHttpClient(sandbox)
    try:
        assert production.rebase("https://api.twilio.com" + path) == "https://api.twilio.com" + path
        assert local.rebase("https://api.twilio.com" + path) == sandbox + path
    finally:
        await production.close()
        await local.close()


class SlowEveryRequest:
    """ASGI middleware: while `delay` is set, every API request is answered that much late
    (each within the client's timeout)."""

    def __init__(self, app: Any) -> None:
        self.app, self.delay = app, 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.delay:
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


async def test_a_resend_slow_at_every_request_is_cut_off_at_the_one_deadline(
    tmp_path: Path,
) -> None:
    """A re-send lists the number's messages (pages of them) before it creates one; each
    request has its own timeout, so a Twilio slow at every request kept a re-send going for
    their sum, past the send lease (which counted one timeout): a retry could then send the
    text again. The whole delivery is bounded by `longest_wait`, the lease's allowance."""
    slow = SlowEveryRequest(
        create_app(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            inbound_sms_url="http://127.0.0.1:9/unused",
            data_file=tmp_path / "twilio-sandbox.json",
            public_url="http://sandbox.test",
        )
    )
    to, since = "+15551230021", datetime.now(UTC) - timedelta(minutes=1)
    async with serve(slow) as url, TwilioSms(ACCOUNT, TOKEN, FROM, url, timeout=1.0) as sms:
        for i in range(120):  # three pages of the number's texts to look through
            await sms.send_sms(to, f"earlier {i}", None)
        slow.delay = 0.6
        with pytest.raises(TimeoutError):
            await sms.deliver(to, "the text", None, since)
        slow.delay = 0.0
        first = await sms.deliver(to, "the text", None, None)  # a first send lists nothing
        assert await sms.deliver(to, "the text", None, since) == first  # a re-send finds it
    assert sms.longest_wait == 3.0
