"""The dev stack's mail server: an SMTP sink that keeps every message as an .eml file, a web page
and JSON API to read them, and buttons that make a recipient reply, bounce or complain by
posting signed Mailgun webhooks to outreach, exactly as Mailgun would in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Form, Query
from fastapi.responses import HTMLResponse
from jinja2 import DictLoader, Environment
from pydantic import BaseModel, ConfigDict, Field

from devstack.sandbox.faults import FaultSwitch, add_fault_routes
from shared.errors import AppError, install_error_handlers, not_found
from shared.providers import postmark
from shared.providers.email import new_message_id
from shared.providers.mailgun import PERMANENT, event_payload, inbound_form
from shared.settings import Settings

log = logging.getLogger(__name__)

INBOUND_PATH = "/webhooks/mailgun/inbound"
EVENTS_PATH = "/webhooks/mailgun/events"
POSTMARK_EVENTS_PATH = "/webhooks/postmark/events"
_ID_RE = re.compile(r"^\d{19}-[0-9a-f]{8}$")
_parser = BytesParser(policy=policy.default)


# --- storage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMessage:
    id: str
    received_at: datetime
    message_id: str
    from_: str
    to: str
    subject: str
    date: datetime | None
    text: str
    html: str
    headers: dict[str, str]
    envelope_to: tuple[str, ...]
    calendar: str = ""  # a meeting invitation's text/calendar part (iCalendar text)

    def recipients(self) -> set[str]:
        fields = [self.headers.get("To", ""), self.headers.get("Cc", ""), *self.envelope_to]
        return {addr.lower() for _, addr in getaddresses(fields) if addr}

    def reply_address(self) -> str:
        """Where the recipient's client sends a reply: Reply-To if set, else From."""
        return parseaddr(self.headers.get("Reply-To") or self.from_)[1]

    def unsubscribe_urls(self) -> list[str]:
        return re.findall(r"<([^>]+)>", self.headers.get("List-Unsubscribe", ""))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "from": self.from_,
            "to": self.to,
            "subject": self.subject,
            "date": self.date.isoformat() if self.date else None,
            "received_at": self.received_at.isoformat(),
            "text": self.text,
            "html": self.html,
            "headers": self.headers,
            "envelope_to": list(self.envelope_to),
            "calendar": self.calendar,
        }


def _part_text(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, ValueError):
        # unknown charset or broken transfer encoding: show what we can rather than fail
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _calendar_text(msg: EmailMessage) -> str:
    """The text/calendar alternative of an invitation ("" when none): get_body() does not
    look for it."""
    for part in msg.walk():
        if part.get_content_type() == "text/calendar" and isinstance(part, EmailMessage):
            return str(part.get_content())
    return ""


def _parse(ident: str, raw: bytes) -> StoredMessage:
    # SMTP delivers CRLF; normalise so text fields read like ordinary Python strings
    msg = _parser.parsebytes(raw.replace(b"\r\n", b"\n"))
    assert isinstance(msg, EmailMessage)
    headers: dict[str, str] = {}
    for name, value in msg.items():
        # a value folded before its first word keeps the fold's space: clients drop it
        headers.setdefault(name, str(value).strip())
    date: datetime | None = None
    with contextlib.suppress(Exception):
        date = msg["Date"].datetime if msg["Date"] is not None else None
    envelope_to = tuple(a.strip() for a in headers.get("X-Envelope-To", "").split(",") if a.strip())
    return StoredMessage(
        id=ident,
        received_at=datetime.fromtimestamp(int(ident[:19]) / 1e9, UTC),
        message_id=headers.get("Message-ID", ""),
        from_=headers.get("From", ""),
        to=headers.get("To", ""),
        subject=headers.get("Subject", ""),
        date=date,
        text=_part_text(msg, "plain"),
        html=_part_text(msg, "html"),
        headers=headers,
        envelope_to=envelope_to,
        calendar=_calendar_text(msg),
    )


def _header_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


class Mailbox:
    """A folder of .eml files named <receive time ns>-<random>: sorting names sorts by arrival.

    Files are written to a temporary name and renamed, so a reader (the web app, on another
    thread than the SMTP server) never sees half a message.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, StoredMessage] = {}

    def save(
        self, raw: bytes, *, envelope_from: str | None = None, envelope_to: Sequence[str] = ()
    ) -> str:
        ident = f"{time.time_ns():019d}-{secrets.token_hex(4)}"
        # Trace headers, as a delivering MTA adds them: the envelope can differ from To (Bcc).
        trace = b""
        if envelope_from is not None:
            trace += f"Return-Path: <{_header_safe(envelope_from)}>\r\n".encode()
        if envelope_to:
            trace += f"X-Envelope-To: {_header_safe(', '.join(envelope_to))}\r\n".encode()
        tmp = self.folder / f".{ident}.tmp"
        tmp.write_bytes(trace + raw)
        os.replace(tmp, self.folder / f"{ident}.eml")
        return ident

    def ids(self) -> list[str]:
        """Newest first."""
        return sorted(
            (p.stem for p in self.folder.glob("*.eml") if _ID_RE.match(p.stem)), reverse=True
        )

    def raw(self, ident: str) -> bytes | None:
        if not _ID_RE.match(ident):
            return None
        try:
            return (self.folder / f"{ident}.eml").read_bytes()
        except FileNotFoundError:
            return None

    def get(self, ident: str) -> StoredMessage | None:
        cached = self._cache.get(ident)
        if cached is not None:
            return cached
        raw = self.raw(ident)
        if raw is None:
            return None
        message = _parse(ident, raw)
        self._cache[ident] = message  # files never change once renamed into place
        return message

    def __iter__(self) -> Iterator[StoredMessage]:
        for ident in self.ids():
            message = self.get(ident)
            if message is not None:
                yield message

    def list(self, *, to: str | None = None) -> list[StoredMessage]:
        """Newest first; to= keeps messages with that address in To, Cc or the envelope."""
        if not to:
            return list(self)
        wanted = (parseaddr(to)[1] or to).lower()
        return [m for m in self if wanted in m.recipients()]


# --- SMTP -----------------------------------------------------------------------------------


# what the SMTP server answers a message while a make chaos outage lasts: a transient error, as a
# mail server that is down for maintenance or overloaded answers
OUTAGE_REPLY = "451 4.3.0 Mail server temporarily unavailable (sandbox fault)"


class MailboxHandler:
    def __init__(self, mailbox: Mailbox, faults: FaultSwitch | None = None) -> None:
        self.mailbox = mailbox
        self.faults = faults or FaultSwitch()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.faults.active() == "hang":
            await self.faults.hold()
            transport = server.transport
            if transport is None or transport.is_closing():
                # the client gave up waiting: the transaction never completed, so the message
                # was never accepted (a server that hangs has not committed it either)
                return OUTAGE_REPLY
        if self.faults.active() == "error":
            return OUTAGE_REPLY
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        ident = self.mailbox.save(
            raw or b"", envelope_from=envelope.mail_from, envelope_to=envelope.rcpt_tos
        )
        log.info("mailbox stored %s", ident)
        return "250 Message accepted for delivery"


async def start_smtp(
    mailbox: Mailbox, host: str, port: int, faults: FaultSwitch | None = None
) -> Controller:
    """port must be a real free port: Controller's ready check connects to it, so 0 fails."""
    handler = MailboxHandler(mailbox, faults)
    controller = Controller(handler, hostname=host, port=port, enable_SMTPUTF8=True)
    # start() blocks until the server thread answers; keep the event loop free meanwhile.
    await asyncio.to_thread(controller.start)
    return controller


# --- simulated recipient actions ---------------------------------------------------------------


def _quote(message: StoredMessage) -> str:
    when = message.headers.get("Date", "")
    quoted = "\n".join(f"> {line}" if line else ">" for line in message.text.splitlines())
    return f"On {when}, {message.from_} wrote:\n{quoted}"


def _reply_subject(subject: str) -> str:
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


async def _post(url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise AppError(502, "webhook_unreachable", f"{url}: {exc!r}") from exc
    return {"webhook_status": response.status_code, "webhook_body": response.text}


async def send_reply(
    message: StoredMessage, text: str, *, from_: str | None, outreach_url: str, signing_key: str
) -> dict[str, Any]:
    """The original recipient answers: Mailgun receives it and forwards the parsed form."""
    replier = from_ or message.to
    sender = parseaddr(replier)[1] or replier
    domain = sender.rpartition("@")[2] if "@" in sender else "mailbox.localhost"
    references = " ".join(
        part for part in (message.headers.get("References", ""), message.message_id) if part
    )
    form = inbound_form(
        sender=sender,
        recipient=message.reply_address(),
        subject=_reply_subject(message.subject),
        text=text,
        in_reply_to=message.message_id or None,
        references=references or None,
        message_id=new_message_id(domain),
        signing_key=signing_key,
        now=time.time(),
        from_header=replier,
        to_header=message.headers.get("Reply-To") or message.from_,
        quoted_text=_quote(message),
    )
    return await _post(outreach_url.rstrip("/") + INBOUND_PATH, data=form)


async def send_event(
    message: StoredMessage,
    event: str,
    *,
    severity: str | None,
    reason: str,
    description: str,
    outreach_url: str,
    signing_key: str,
) -> dict[str, Any]:
    recipients = message.envelope_to or (parseaddr(message.to)[1],)
    payload = event_payload(
        event=event,
        recipient=recipients[0],
        message_id=message.message_id,
        event_id=secrets.token_urlsafe(16),
        severity=severity,
        reason=reason,
        signing_key=signing_key,
        now=time.time(),
        description=description,
    )
    return await _post(outreach_url.rstrip("/") + EVENTS_PATH, json=payload)


async def send_postmark_delivery(
    message: StoredMessage, *, outreach_url: str, user: str, password: str
) -> dict[str, Any]:
    """Postmark's Delivery event for a message it relayed: Postmark's own MessageID, and the
    metadata its `X-PM-Metadata-` headers registered."""
    recipients = message.envelope_to or (parseaddr(message.to)[1],)
    doc = postmark.delivery(
        recipient=recipients[0],
        message_id=postmark.new_message_id(),
        now=time.time(),
        metadata=postmark.metadata_of(message.headers),
    )
    return await _post(
        outreach_url.rstrip("/") + POSTMARK_EVENTS_PATH,
        json=doc,
        headers=postmark.basic_auth_header(user, password),
    )


# --- web ------------------------------------------------------------------------------------

_TEMPLATES = {
    "base.html": """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ title }} - closeflow mailbox</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.8rem}
form{display:inline-block;margin:.5rem 1rem .5rem 0}
textarea{width:40rem;height:6rem}
</style></head>
<body><p><a href="/">mailbox</a></p>{% block body %}{% endblock %}</body></html>""",
    "index.html": """{% extends "base.html" %}{% block body %}
<h1>Mailbox ({{ messages|length }})</h1>
<table><tr><th>Date</th><th>From</th><th>To</th><th>Subject</th></tr>
{% for m in messages %}<tr>
<td>{{ m.received_at.strftime("%Y-%m-%d %H:%M:%S") }}</td><td>{{ m.from_ }}</td>
<td>{{ m.to }}</td><td><a href="/messages/{{ m.id }}">{{ m.subject or "(no subject)" }}</a></td>
</tr>{% else %}<tr><td colspan="4">No messages yet.</td></tr>{% endfor %}
</table>{% endblock %}""",
    "message.html": """{% extends "base.html" %}{% block body %}
<h1>{{ m.subject or "(no subject)" }}</h1>
<table>{% for name, value in m.headers.items() %}
<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<h2>Text</h2><pre>{{ m.text }}</pre>
{% if m.html %}<details><summary>HTML source</summary><pre>{{ m.html }}</pre></details>{% endif %}
<h2>Act as the recipient</h2>
<form method="post" action="/messages/{{ m.id }}/reply">
<p><label>Reply from <input name="from" value="{{ m.to }}" size="40"></label></p>
<p><textarea name="text" required>Thanks, I am interested. Can we talk next week?</textarea></p>
<button>Send reply</button></form>
<form method="post" action="/messages/{{ m.id }}/bounce"><button>Hard bounce</button></form>
<form method="post" action="/messages/{{ m.id }}/complain"><button>Spam complaint</button></form>
{% for url in unsubscribe %}<form method="post" action="{{ url }}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button>One-click unsubscribe</button></form>
<p>Unsubscribe page: <a href="{{ url }}">{{ url }}</a></p>{% endfor %}
{% endblock %}""",
    "result.html": """{% extends "base.html" %}{% block body %}
<h1>{{ title }}</h1><p>outreach answered HTTP {{ result.webhook_status }}</p>
<pre>{{ result.webhook_body }}</pre><p><a href="/messages/{{ m.id }}">back to the message</a></p>
{% endblock %}""",
}
_jinja = Environment(loader=DictLoader(_TEMPLATES), autoescape=True)


def _render(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_jinja.get_template(name).render(**context))


class ReplyIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    text: str = Field(min_length=1)
    from_: str | None = Field(None, alias="from", description="defaults to the original To")


class WebhookResult(BaseModel):
    webhook_status: int
    webhook_body: str


def create_app(
    mailbox: Mailbox, *, outreach_url: str, signing_key: str, faults: FaultSwitch | None = None
) -> FastAPI:
    """faults: the SMTP server's switch, set through POST /sandbox/faults (make chaos)."""
    app = FastAPI(title="closeflow mailbox", description="the dev stack's local mail server")
    install_error_handlers(app)
    add_fault_routes(app, faults or FaultSwitch())

    def find(ident: str) -> StoredMessage:
        message = mailbox.get(ident)
        if message is None:
            raise not_found("message", ident)
        return message

    async def reply(ident: str, text: str, from_: str | None) -> dict[str, Any]:
        return await send_reply(
            find(ident), text, from_=from_, outreach_url=outreach_url, signing_key=signing_key
        )

    async def bounce(ident: str) -> dict[str, Any]:
        return await send_event(
            find(ident),
            "failed",
            severity=PERMANENT,
            reason="bounce",
            description="550 5.1.1 The email account that you tried to reach does not exist",
            outreach_url=outreach_url,
            signing_key=signing_key,
        )

    async def complain(ident: str) -> dict[str, Any]:
        return await send_event(
            find(ident),
            "complained",
            severity=None,
            reason="",
            description="",
            outreach_url=outreach_url,
            signing_key=signing_key,
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return _render("index.html", title="Mailbox", messages=mailbox.list())

    @app.get("/messages/{ident}", response_class=HTMLResponse, include_in_schema=False)
    async def show(ident: str) -> HTMLResponse:
        message = find(ident)
        # only web links: a javascript: URL in a header must not become clickable
        urls = [u for u in message.unsubscribe_urls() if u.startswith(("http://", "https://"))]
        return _render("message.html", title=message.subject, m=message, unsubscribe=urls)

    @app.post("/messages/{ident}/reply", response_class=HTMLResponse, include_in_schema=False)
    async def reply_form(
        ident: str, text: Annotated[str, Form()], from_: Annotated[str, Form(alias="from")] = ""
    ) -> HTMLResponse:
        result = await reply(ident, text, from_ or None)
        return _render("result.html", title="Reply sent", m=find(ident), result=result)

    @app.post("/messages/{ident}/bounce", response_class=HTMLResponse, include_in_schema=False)
    async def bounce_form(ident: str) -> HTMLResponse:
        result = await bounce(ident)
        return _render("result.html", title="Bounce sent", m=find(ident), result=result)

    @app.post("/messages/{ident}/complain", response_class=HTMLResponse, include_in_schema=False)
    async def complain_form(ident: str) -> HTMLResponse:
        result = await complain(ident)
        return _render("result.html", title="Complaint sent", m=find(ident), result=result)

    @app.get("/api/messages")
    async def list_messages(to: Annotated[str | None, Query()] = None) -> list[dict[str, Any]]:
        return [m.to_json() for m in mailbox.list(to=to)]

    @app.get("/api/messages/{ident}")
    async def get_message(ident: str) -> dict[str, Any]:
        return find(ident).to_json()

    @app.post("/api/messages/{ident}/reply")
    async def reply_json(ident: str, body: ReplyIn) -> WebhookResult:
        return WebhookResult(**await reply(ident, body.text, body.from_))

    @app.post("/api/messages/{ident}/bounce")
    async def bounce_json(ident: str) -> WebhookResult:
        return WebhookResult(**await bounce(ident))

    @app.post("/api/messages/{ident}/complain")
    async def complain_json(ident: str) -> WebhookResult:
        return WebhookResult(**await complain(ident))

    return app


# --- process --------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    # uvicorn re-raises a caught SIGTERM after serving, which would kill us before the SMTP
    # thread stops; serve() installs its own handlers instead.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    mailbox = Mailbox(settings.data_dir / "mailbox")
    faults = FaultSwitch()
    app = create_app(
        mailbox,
        outreach_url=settings.outreach_public_url,
        signing_key=settings.mailgun_signing_key.get_secret_value(),
        faults=faults,
    )
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.mailbox_http_port,
            log_level=settings.log_level.lower(),
        )
    )
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    controller = await start_smtp(mailbox, settings.host, settings.smtp_port, faults)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        log.info(
            "mailbox: SMTP on %s:%s, web on http://%s:%s, folder %s",
            settings.host,
            settings.smtp_port,
            settings.host,
            settings.mailbox_http_port,
            mailbox.folder,
        )
        await server.serve()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(controller.stop)


def run(settings: Settings) -> None:
    """`closeflow mailbox`, which has set up logging (aiosmtpd's per-connection lines are off)."""
    asyncio.run(serve(settings))
