"""Outgoing email: the message we send, its MIME form, and an SMTP sender (aiosmtplib).

Every message carries RFC 8058 one-click unsubscribe headers, and its Message-ID is chosen by us
before sending so the send ledger can record it first and match replies and events to it later.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, parseaddr
from types import TracebackType
from typing import Any, Literal, Protocol

import aiosmtplib
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import Default

from shared.people import ascii_domain
from shared.settings import Settings
from shared.tracing import span

log = logging.getLogger(__name__)

TlsMode = Literal["none", "starttls", "tls"]


@dataclass
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    unsubscribe_url: str
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # a calendar invitation (RFC 5545 text, RFC 5546 METHOD): the third alternative part, the
    # one mail clients show as an invite with its answer buttons
    calendar: str = ""
    calendar_method: str = ""
    cc: str = ""


class EmailSender(Protocol):
    async def send(self, msg: OutgoingEmail) -> str: ...


def logged_id(message_id: str) -> str:
    """A Message-ID as a log line gives it: its local part, closeflow's id of the message (the
    log masks whatever looks like an address, and a Message-ID does)."""
    return message_id.strip().strip("<>").partition("@")[0]


class EmailSendError(Exception):
    """permanent: the server refused the recipient or the message for good (5xx), so retrying
    cannot help.
    not_sent: the message surely did not go (no connection, or the server answered with an
    error); otherwise (a timeout, a dropped connection) nobody knows whether it went."""

    def __init__(
        self, message: str, *, permanent: bool, code: int | None = None, not_sent: bool = True
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.not_sent = not_sent


def address_domain(addr: str) -> str:
    """'closeflow <sales@example.com>' -> 'example.com' (the Message-ID domain of a sender)."""
    _, bare = parseaddr(addr)
    local, at, domain = bare.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"no domain in address {addr!r}")
    return domain


def new_message_id(domain: str) -> str:
    """A Message-ID at `domain`, in its ASCII form: a header of ASCII only (RFC 5322)."""
    at = domain if domain.isascii() else ascii_domain(domain) or domain
    return f"<{uuid.uuid4().hex}@{at}>"


def one_line(text: str) -> str:
    """A header's text on one line: a line break in it (a value imported from a spreadsheet
    cell) would make the message impossible to build, every attempt alike."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# the headers aiosmtplib takes the envelope's sender and recipients from, and Reply-To
ADDRESS_HEADERS = frozenset({"from", "sender", "to", "cc", "bcc", "reply-to"})


def ascii_domains(value: str) -> str:
    """A header's addresses with each internationalized domain in its ASCII form (IDNA,
    `xn--...`) when the address's local part is ASCII. Addresses are stored as people give them
    (shared.people.normalize_email keeps `info@bäckerei.de`); an address that is not ASCII
    needs a server offering SMTPUTF8 (aiosmtplib refuses it otherwise), and the ASCII form needs
    none. A local part that is not ASCII has no other form: the header stays as it is, and
    needs SMTPUTF8."""
    pairs = getaddresses([value])
    if all(address.isascii() for _, address in pairs):
        return value
    converted = [(name, _ascii_domain(address)) for name, address in pairs]
    if not all(address.isascii() for _, address in converted):
        return value
    return ", ".join(formataddr(pair) for pair in converted)


def _ascii_domain(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii() or domain.isascii():
        return address
    converted = ascii_domain(domain)
    # none: the server's answer says what is wrong with it
    return f"{local}@{converted}" if converted else address


def _addresses_ascii(mime: EmailMessage) -> bool:
    values = [str(v) for name in ADDRESS_HEADERS for v in mime.get_all(name, [])]
    return all(address.isascii() for _, address in getaddresses(values))


def build_mime(msg: OutgoingEmail, from_addr: str) -> EmailMessage:
    mime = EmailMessage()
    mime["Message-ID"] = msg.message_id
    mime["Date"] = formatdate(usegmt=True)
    mime["From"] = ascii_domains(from_addr)
    mime["To"] = ascii_domains(msg.to)
    mime["Subject"] = one_line(msg.subject)
    if msg.cc:
        mime["Cc"] = ascii_domains(msg.cc)
    if msg.reply_to:
        mime["Reply-To"] = ascii_domains(msg.reply_to)
    if msg.unsubscribe_url:
        # RFC 8058: the https URI alone is enough for one-click; mail clients POST to it.
        mime["List-Unsubscribe"] = f"<{msg.unsubscribe_url}>"
        mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in msg.headers.items():
        del mime[name]
        mime[name] = ascii_domains(value) if name.lower() in ADDRESS_HEADERS else value
    mime.set_content(msg.text)
    mime.add_alternative(msg.html, subtype="html")
    if msg.calendar:
        # multipart/alternative: text, html, then text/calendar; method=... (last: preferred)
        mime.add_alternative(
            msg.calendar, subtype="calendar", params={"method": msg.calendar_method}
        )
    return mime


class _PatientAtTheDot(aiosmtplib.SMTP):
    """An SMTP client that waits longer for the answer to the end of a message than for the
    other replies. A server that stores the message just as its client stops waiting makes a
    duplicate when the client sends again (RFC 1047), so RFC 5321 (4.5.3.2.6) asks clients to
    wait long there; a failure before it is never in doubt and may come quickly.
    A send cancelled meanwhile (a stop past its grace, an activity cancelled) hangs up at once:
    aiosmtplib says QUIT on the way out, and its answer queues behind the message's, which can
    take the whole reply timeout while whoever cancelled waits."""

    def __init__(self, *, data_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_timeout = data_timeout

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, asyncio.CancelledError):
            self.close()
            return
        await super().__aexit__(exc_type, exc, traceback)

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> SMTPResponse:
        return await super().data(message, timeout=self.data_timeout)


class SmtpEmail:
    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        tls: TlsMode,
        from_addr: str,
        *,
        timeout: float = 30.0,
        data_timeout: float = 120.0,
        helo_name: str = "",
    ) -> None:
        if tls not in ("none", "starttls", "tls"):
            raise ValueError(f"tls must be none, starttls or tls, not {tls!r}")
        # given to aiosmtplib, which otherwise asks the resolver for it (socket.getfqdn, in a
        # thread) on every connection, so on every message: a slow resolver would hold each send
        self._helo_name = helo_name
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.tls: TlsMode = tls
        self.from_addr = from_addr
        self.timeout = timeout  # each reply but the last
        self.data_timeout = data_timeout  # the reply to the message's end (_PatientAtTheDot)

    def __repr__(self) -> str:
        return (
            f"SmtpEmail(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"tls={self.tls!r}, from_addr={self.from_addr!r})"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmail:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            tls=settings.smtp_tls,
            from_addr=settings.email_from,
            timeout=settings.smtp_timeout_seconds,
            data_timeout=settings.smtp_data_timeout_seconds,
            helo_name=settings.smtp_helo_name,
        )

    @property
    def longest_wait(self) -> float:
        """The longest one send may take, its whole exchange (connection, TLS, EHLO, AUTH,
        MAIL, RCPT, DATA, the message's end, QUIT): one deadline that `send` enforces and the
        send lease counts on (services/outreach/send_lease.py). Each reply's own timeout alone
        let a server slow at every step keep a send going for their sum, past the lease. The
        message's end keeps its whole wait unless the steps before it took more than one reply
        timeout together."""
        return self.timeout + self.data_timeout

    @property
    def domain(self) -> str:
        return address_domain(self.from_addr)

    def new_message_id(self) -> str:
        return new_message_id(self.domain)

    async def helo_name(self) -> str:
        """The EHLO name: the configured one, else this machine's, looked up once."""
        if not self._helo_name:
            self._helo_name = await asyncio.to_thread(socket.getfqdn)
        return self._helo_name

    async def send(self, msg: OutgoingEmail) -> str:
        mime = build_mime(msg, self.from_addr)
        try:
            # no instrumentation covers aiosmtplib: the trace's last hop (issue 12). Past the
            # deadline the exchange is cancelled (the connection closed: _PatientAtTheDot) and
            # TimeoutError, an OSError, says the outcome is unknown
            with span("smtp.send", {"server.address": self.host, "server.port": self.port}):
                async with asyncio.timeout(self.longest_wait):
                    client = _PatientAtTheDot(
                        hostname=self.host,
                        port=self.port,
                        username=self.username or None,
                        password=self._password if self.username else None,
                        use_tls=self.tls == "tls",
                        # False, not None: None would upgrade opportunistically in "none" mode.
                        start_tls=self.tls == "starttls",
                        timeout=self.timeout,
                        data_timeout=self.data_timeout,
                        local_hostname=await self.helo_name(),
                    )
                    async with client:
                        await client.send_message(mime)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = bool(codes) and all(500 <= c < 600 for c in codes)
            raise EmailSendError(
                f"recipient refused: {exc}", permanent=permanent, code=codes[0] if codes else None
            ) from exc
        except aiosmtplib.SMTPDataError as exc:
            # the server refused the message itself: a 5xx is its final word (RFC 5321, 4.2.1),
            # the same message would get the same answer
            raise EmailSendError(
                f"SMTP {exc.code}: {exc.message}", permanent=500 <= exc.code < 600, code=exc.code
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise EmailSendError(
                f"SMTP {exc.code}: {exc.message}", permanent=False, code=exc.code
            ) from exc
        except (aiosmtplib.SMTPConnectError, ConnectionRefusedError) as exc:
            raise EmailSendError(f"SMTP failure: {exc}", permanent=False) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, aiosmtplib.SMTPNotSupported) and not _addresses_ascii(mime):
                # said after EHLO, before MAIL FROM: nothing went, and no attempt through this
                # server can carry an address whose local part is not ASCII
                raise EmailSendError(
                    "the SMTP server does not offer SMTPUTF8, which an address whose local "
                    f"part is not ASCII needs: {exc}",
                    permanent=True,
                ) from exc
            raise EmailSendError(f"SMTP failure: {exc}", permanent=False, not_sent=False) from exc
        log.info("email %s sent via %s:%s", logged_id(msg.message_id), self.host, self.port)
        return msg.message_id
