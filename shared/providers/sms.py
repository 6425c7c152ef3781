"""Sending SMS through Twilio's REST API with the official library.

The same code talks to api.twilio.com in production and to the local sandbox in development:
only the base URL differs, rewritten in the HTTP client so the library stays untouched.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from twilio.base import values
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from shared.settings import Settings
from shared.tracing import span

TWILIO_API_BASE_URL = "https://api.twilio.com"
DEFAULT_TIMEOUT_SECONDS = 15.0
# How far back find_recent looks among a number's newest messages for one still queued.
_RECENT_SCAN_LIMIT = 50
# A re-send's requests, each with its own timeout: find_recent's two lists, then the create.
RESEND_REQUESTS = 3

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentSms:
    sid: str
    status: str


# 400s about our own sending number (not a Twilio number, not able to send, missing): fixed by
# ops, after which the same texts go; every other 400 is about the recipient or the text
OUR_NUMBER_ERRORS = frozenset({21212, 21603, 21606, 21659, 21660})


class SmsSendError(Exception):
    """Twilio answered the create call with an error. permanent: a 400, the number or the text
    refused (21211 not a valid number, 21610 the person texted STOP, 21614 not a mobile):
    no retry changes that (a 400 about our own number is not). not_sent: any 4xx, which creates
    no message; a 5xx leaves it open."""

    def __init__(self, message: str, *, permanent: bool, code: int | None, not_sent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.not_sent = not_sent

    @classmethod
    def of(cls, err: TwilioRestException) -> SmsSendError:
        status = int(err.status)
        return cls(
            f"Twilio {status} {err.code}: {err.msg}",
            permanent=status == 400 and err.code not in OUR_NUMBER_ERRORS,
            code=err.code,
            not_sent=400 <= status < 500,
        )


class RebasedAsyncTwilioHttpClient(AsyncTwilioHttpClient):
    """Sends api.twilio.com requests to another base URL (the sandbox).

    Two fixes on the way through: the client-wide timeout is applied (the library passes
    timeout=None per request, which aiohttp reads as "no timeout at all", so a hung connection
    would hang the send forever), and credentials travel as an Authorization header because
    aiohttp deprecated the BasicAuth object the library would build.
    """

    def __init__(self, api_base_url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout, logger=_logger)
        self.api_base_url = api_base_url.rstrip("/")

    def rebase(self, url: str) -> str:
        if self.api_base_url != TWILIO_API_BASE_URL and url.startswith(TWILIO_API_BASE_URL):
            return self.api_base_url + url[len(TWILIO_API_BASE_URL) :]
        return url

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        return await super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


class TwilioSms:
    """One instance per process; use it from one event loop and `await close()` at shutdown.

    The aiohttp session behind it is created on first use, inside the running loop (aiohttp
    refuses to create one outside a loop, and a session must stay on the loop that made it).
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base_url: str = TWILIO_API_BASE_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        self.api_base_url = api_base_url
        self.timeout = timeout
        self._http: RebasedAsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSms:
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            settings.twilio_from_number,
            settings.twilio_api_base_url,
            timeout=settings.twilio_timeout_seconds,
        )

    def _twilio(self) -> Client:
        if self._client is None:
            self._http = RebasedAsyncTwilioHttpClient(self.api_base_url, self.timeout)
            # environment={}: configuration comes from Settings only, never TWILIO_* variables
            # (TWILIO_EDGE/REGION would change the host and defeat the rebase).
            self._client = Client(
                self._account_sid, self._auth_token, http_client=self._http, environment={}
            )
        return self._client

    async def send_sms(self, to: str, body: str, status_callback: str | None) -> SentSms:
        """Raises twilio.base.exceptions.TwilioRestException when Twilio refuses (e.g. 21211)."""
        # the Twilio SDK calls through aiohttp, which nothing instruments (issue 12)
        with span("twilio.messages.create"):
            message = await self._twilio().messages.create_async(
                to=to,
                from_=self.from_number,
                body=body,
                status_callback=status_callback if status_callback else values.unset,
            )
        return SentSms(sid=str(message.sid), status=str(message.status))

    @property
    def longest_wait(self) -> float:
        """The longest one delivery may talk to Twilio (`deliver` enforces it as one deadline;
        the send lease counts on it: services/outreach/send_lease.py). A re-send lists the
        number's messages before it creates one, each request within its own timeout, and a
        list may run to several pages: the lease counted one request's timeout, so a re-send
        could go on past it while a retry sent the text again."""
        return RESEND_REQUESTS * self.timeout

    async def deliver(
        self, to: str, body: str, status_callback: str | None, earlier_since: datetime | None
    ) -> str:
        """The text's sid: on a re-send (`earlier_since`: when the earlier attempt may have
        made it) the earlier attempt's text if Twilio has it, else a new one. The whole within
        `longest_wait`: past it, TimeoutError, and whether a text was made is unknown."""
        async with asyncio.timeout(self.longest_wait):
            if earlier_since is not None:
                found = await self.find_recent(to, body, earlier_since)
                if found:
                    return found
            return (await self.send_sms(to, body, status_callback)).sid

    async def find_recent(self, to: str, body: str, since: datetime) -> str | None:
        """The sid of a message with this body sent to `to` since `since`, if Twilio has one.

        Reconciles a send whose outcome is unknown (timeout, crash after the request).
        Twilio's DateSent filter skips messages not yet handed to the carrier (date_sent is
        null while queued), so those are looked for among the number's newest messages, by
        creation time and whatever their status (one may be sent between the two lists).
        """
        since_utc = _as_utc(since)
        client = self._twilio()
        sent = await client.messages.list_async(to=to, date_sent_after=since_utc)
        for message in sent:
            if message.body == body:
                return str(message.sid)
        newest = await client.messages.list_async(to=to, limit=_RECENT_SCAN_LIMIT)
        for message in newest:
            created = message.date_created
            if (
                message.body == body
                and isinstance(created, datetime)
                and created >= since_utc.replace(microsecond=0)
            ):
                return str(message.sid)
        return None

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> TwilioSms:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _as_utc(moment: datetime) -> datetime:
    # The library formats the filter with strftime and a literal "Z": it must already be UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
