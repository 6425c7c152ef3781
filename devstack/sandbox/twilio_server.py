"""A local stand-in for Twilio's REST API (2010-04-01), enough for the official library.

It accepts Messages and Calls with Twilio's auth, validation errors and resource shapes, then
plays the provider's side: signed status callbacks (sent, delivered / completed), signed inbound
SMS posted to the outreach webhook, and Twilio's default STOP/START opt-out handling. A web page
at / shows what was "sent"; the data survives restarts of the dev stack via a JSON file.

Twilio's test-credential magic numbers are honoured as recipients (+15005550001 invalid,
+15005550002 unroutable, +15005550003 no international permission, +15005550004 blocked,
+15005550009 not SMS-capable), so failure paths can be exercised without a real account.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import json
import logging
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from devstack.sandbox.faults import FaultSwitch, add_fault_routes
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
from shared.settings import Settings

API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Default pause between the status steps of a message or call (queued, sent, delivered).
STATUS_STEP_SECONDS = 0.05
_CALLBACK_ATTEMPTS = 4
_CALLBACK_BACKOFF_SECONDS = 0.2
_SAVE_DEBOUNCE_SECONDS = 0.2
_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000
_STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
_START_WORDS = frozenset({"START", "YES", "UNSTOP"})
_MAGIC_RECIPIENTS: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
# GSM 03.38: characters outside it force UCS-2 encoding (70 characters per segment, not 160).
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

_logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 15.0


class TwilioApiError(Exception):
    """Rendered as Twilio's error JSON, which the library turns into TwilioRestException."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


class InboundSms(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", pattern=_E164.pattern, description="the person, E.164")
    to: str = Field(pattern=_E164.pattern, description="our Twilio number, E.164")
    body: str


class OptOutEnforcement(BaseModel):
    enforce: bool


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment)


def _new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def num_segments(body: str) -> int:
    if all(ch in _GSM7 or ch in _GSM7_EXTENDED for ch in body):
        length = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        length = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)
        single, multi = 70, 67
    if length <= single:
        return 1
    return -(-length // multi)


@dataclass
class SandboxState:
    account_sid: str
    auth_token: str
    inbound_sms_url: str
    public_url: str
    data_file: Path | None
    status_step_seconds: float = STATUS_STEP_SECONDS
    # sid -> Twilio resource; insertion order is creation order
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    # sid -> every callback attempt, shown on the page so webhook failures are visible
    deliveries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (person, our number) pairs that texted STOP, as Twilio blocks them per sender
    opt_outs: set[tuple[str, str]] = field(default_factory=set)
    # Twilio refuses texts to a number that sent STOP (error 21610); make chaos turns that off,
    # so that only closeflow's own consent check stands between an opt-out and a text
    enforce_opt_outs: bool = True
    # make chaos's provider outages: the REST API answers 500, or holds each call (faults.py)
    faults: FaultSwitch = field(default_factory=FaultSwitch)
    # sid -> when the sandbox accepted it, to the microsecond (Twilio's dates have seconds only):
    # make chaos compares it with the moment an opt-out was committed
    accepted_at: dict[str, str] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    dirty: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}"

    # --- persistence ----------------------------------------------------------------------

    def load(self) -> None:
        if self.data_file is None or not self.data_file.exists():
            return
        try:
            data = json.loads(self.data_file.read_text(encoding="utf-8"))
            self.messages = {m["sid"]: m for m in data.get("messages", [])}
            self.calls = {c["sid"]: c for c in data.get("calls", [])}
            self.deliveries = dict(data.get("deliveries", {}))
            self.opt_outs = {(a, b) for a, b in data.get("opt_outs", [])}
        except (ValueError, KeyError, TypeError) as exc:
            # Keep the unreadable file for inspection instead of overwriting it on next save.
            aside = self.data_file.with_suffix(".corrupt.json")
            os.replace(self.data_file, aside)
            _logger.warning(
                "twilio sandbox: unreadable %s (%s), moved to %s", self.data_file, exc, aside
            )

    def _serialize(self) -> str:
        return json.dumps(
            {
                "messages": list(self.messages.values()),
                "calls": list(self.calls.values()),
                "deliveries": self.deliveries,
                "opt_outs": sorted(self.opt_outs),
            },
            indent=1,
        )

    def _write(self, text: str) -> None:
        assert self.data_file is not None
        self.data_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.data_file.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.data_file)  # atomic: a crash never leaves half a file

    def changed(self) -> None:
        if self.data_file is not None:
            self.dirty.set()

    async def save_loop(self) -> None:
        while True:
            await self.dirty.wait()
            await asyncio.sleep(_SAVE_DEBOUNCE_SECONDS)
            self.dirty.clear()
            await self.save()

    async def save(self) -> None:
        if self.data_file is not None:
            # Serialize on the loop (nothing mutates meanwhile); only the disk write is threaded.
            await asyncio.to_thread(self._write, self._serialize())

    async def outage(self) -> None:
        """A REST call during a sandbox fault: held while it hangs, a 500 while it errs."""
        await self.faults.hold()
        if self.faults.active() == "error":
            raise TwilioApiError(500, 20500, "Internal Server Error (sandbox fault)")

    # --- background work ------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _logger.error("twilio sandbox: background task failed", exc_info=task.exception())

    async def post_signed(
        self, url: str, params: Mapping[str, str], sid: str, event: str, *, attempts: int
    ) -> int | None:
        """POST a form the way Twilio does; returns the final HTTP status (None: unreachable)."""
        assert self.http is not None, "the sandbox app's lifespan is not running"
        headers = {
            SIGNATURE_HEADER: sign_twilio_request(self.auth_token, url, params),
            "User-Agent": "TwilioProxy/1.1",
        }
        status: int | None = None
        for attempt in range(1, attempts + 1):
            error: str | None = None
            try:
                response = await self.http.post(url, data=dict(params), headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            self.deliveries.setdefault(sid, []).append(
                {
                    "event": event,
                    "url": url,
                    "attempt": attempt,
                    "response_status": status,
                    "error": error,
                    "at": _now().isoformat(),
                }
            )
            self.changed()
            retryable = status is None or status >= 500 or status == 429
            if not retryable or attempt == attempts:
                return status
            await asyncio.sleep(_CALLBACK_BACKOFF_SECONDS * 2 ** (attempt - 1))
        return status

    async def progress_message(self, sid: str, callback: str | None) -> None:
        for status in ("sent", "delivered"):
            await asyncio.sleep(self.status_step_seconds)
            message = self.messages[sid]
            now = _rfc2822(_now())
            message["status"] = status
            message["date_updated"] = now
            if status == "sent":
                message["date_sent"] = now
            self.changed()
            if callback:
                params = {
                    "AccountSid": self.account_sid,
                    "ApiVersion": API_VERSION,
                    "From": message["from"],
                    "To": message["to"],
                    "MessageSid": sid,
                    "SmsSid": sid,
                    "MessageStatus": status,
                    "SmsStatus": status,
                }
                await self.post_signed(callback, params, sid, status, attempts=_CALLBACK_ATTEMPTS)

    async def progress_call(self, sid: str, callback: str | None) -> None:
        await asyncio.sleep(self.status_step_seconds)
        call = self.calls[sid]
        now = _now()
        call.update(
            status="completed",
            start_time=_rfc2822(now),
            end_time=_rfc2822(now),
            duration="0",
            date_updated=_rfc2822(now),
        )
        self.changed()
        if callback:
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "CallSid": sid,
                "CallStatus": "completed",
                "Called": call["to"],
                "Caller": call["from"],
                "Direction": "outbound-api",
                "From": call["from"],
                "To": call["to"],
                "CallDuration": "0",
                "Duration": "0",
                "SequenceNumber": "0",
                "CallbackSource": "call-progress-events",
                "Timestamp": _rfc2822(now),
            }
            await self.post_signed(callback, params, sid, "completed", attempts=_CALLBACK_ATTEMPTS)


# --- request helpers --------------------------------------------------------------------------


def _authenticate(state: SandboxState, request: Request, account_sid: str) -> None:
    user, password = "", ""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    valid = (
        secrets.compare_digest(user.encode(), state.account_sid.encode())
        and secrets.compare_digest(password.encode(), state.auth_token.encode())
        and account_sid == state.account_sid
    )
    if not valid:
        raise TwilioApiError(401, 20003, "Authenticate")


def _not_found(request: Request) -> TwilioApiError:
    return TwilioApiError(404, 20404, f"The requested resource {request.url.path} was not found")


def _form_value(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _check_recipient(to: str) -> None:
    if not to:
        raise TwilioApiError(400, 21604, "A 'To' phone number is required.")
    if not _E164.match(to):
        raise TwilioApiError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if to in _MAGIC_RECIPIENTS:
        code, message = _MAGIC_RECIPIENTS[to]
        raise TwilioApiError(400, code, message)


def _parse_date_filter(name: str, value: str) -> tuple[datetime, bool]:
    """(moment, whole_day): Twilio takes YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ."""
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").date()
            return datetime.combine(day, time(), tzinfo=UTC), True
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC), False
    except ValueError:
        raise TwilioApiError(400, 20001, f"Invalid {name}: {value}") from None


_DateFilter = tuple[str, datetime, bool]


def _date_filters(query: Mapping[str, str]) -> list[_DateFilter]:
    return [
        (name, *_parse_date_filter(name, query[name]))
        for name in ("DateSent", "DateSent<", "DateSent>")
        if query.get(name)
    ]


def _matches(
    message: Mapping[str, Any], query: Mapping[str, str], dates: list[_DateFilter]
) -> bool:
    if query.get("To") and message["to"] != query["To"]:
        return False
    if query.get("From") and message["from"] != query["From"]:
        return False
    if not dates:
        return True
    if not message.get("date_sent"):
        return False  # as on Twilio: a queued message has no date_sent and matches no filter
    sent = parsedate_to_datetime(message["date_sent"])
    for name, moment, whole_day in dates:
        # Twilio's ">" and "<" include the bound; a bare date means that whole day.
        end = moment + timedelta(days=1)
        if name == "DateSent":
            ok = moment <= sent < end if whole_day else sent == moment
        elif name == "DateSent>":
            ok = sent >= moment
        else:
            ok = sent < end if whole_day else sent <= moment
        if not ok:
            return False
    return True


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise TwilioApiError(400, 20001, f"Invalid {name}") from None


def _message_resource(
    state: SandboxState,
    *,
    sid: str,
    to: str,
    from_: str,
    body: str,
    status: str,
    direction: str,
    messaging_service_sid: str | None = None,
) -> dict[str, Any]:
    now = _rfc2822(_now())
    return {
        "account_sid": state.account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": now,
        "date_sent": now if direction == "inbound" else None,
        "date_updated": now,
        "direction": direction,
        "error_code": None,
        "error_message": None,
        "from": from_,
        "messaging_service_sid": messaging_service_sid,
        "num_media": "0",
        "num_segments": str(num_segments(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": f"{state.base_path}/Messages/{sid}/Media.json",
            "feedback": f"{state.base_path}/Messages/{sid}/Feedback.json",
        },
        "to": to,
        "uri": f"{state.base_path}/Messages/{sid}.json",
    }


def _call_resource(state: SandboxState, *, sid: str, to: str, from_: str) -> dict[str, Any]:
    now = _rfc2822(_now())
    return {
        "account_sid": state.account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": from_,
        "from_formatted": from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {
            "notifications": f"{state.base_path}/Calls/{sid}/Notifications.json",
            "recordings": f"{state.base_path}/Calls/{sid}/Recordings.json",
        },
        "to": to,
        "to_formatted": to,
        "trunk_sid": None,
        "uri": f"{state.base_path}/Calls/{sid}.json",
    }


def _page(
    state: SandboxState, query: Mapping[str, str], items: list[dict[str, Any]]
) -> dict[str, Any]:
    size = min(max(_int_param(query, "PageSize", _DEFAULT_PAGE_SIZE), 1), _MAX_PAGE_SIZE)
    number = max(_int_param(query, "Page", 0), 0)
    start = number * size
    chunk = items[start : start + size]
    filters = {
        k: query[k] for k in ("To", "From", "DateSent", "DateSent<", "DateSent>") if k in query
    }
    path = f"{state.base_path}/Messages.json"

    def uri(page: int) -> str:
        return f"{path}?{urlencode({**filters, 'PageSize': size, 'Page': page})}"

    has_next = start + size < len(items)
    return {
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "messages": chunk,
        "next_page_uri": uri(number + 1) if has_next else None,
        "page": number,
        "page_size": size,
        "previous_page_uri": uri(number - 1) if number > 0 else None,
        "start": start,
        "uri": uri(number),
    }


# --- the page ---------------------------------------------------------------------------------


def _render_page(state: SandboxState) -> str:
    def cell(value: object) -> str:
        return f"<td>{html.escape('' if value is None else str(value))}</td>"

    def callbacks(sid: str) -> str:
        attempts = state.deliveries.get(sid, [])
        return ", ".join(f"{a['event']}→{a['response_status'] or a['error']}" for a in attempts)

    message_rows = "\n".join(
        "<tr>"
        + "".join(
            cell(v)
            for v in (
                m["date_created"],
                m["direction"],
                m["from"],
                m["to"],
                m["body"],
                m["status"],
                callbacks(m["sid"]),
                m["sid"],
            )
        )
        + "</tr>"
        for m in reversed(state.messages.values())
    )
    call_rows = "\n".join(
        "<tr>"
        + "".join(
            cell(v)
            for v in (
                c["date_created"],
                c["from"],
                c["to"],
                c["status"],
                callbacks(c["sid"]),
                c["sid"],
            )
        )
        + "</tr>"
        for c in reversed(state.calls.values())
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Twilio sandbox</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}}
td:nth-child(5){{white-space:pre-wrap;max-width:40em}}</style></head><body>
<h1>Twilio sandbox</h1>
<p>API base {html.escape(state.public_url)} · account {html.escape(state.account_sid)} ·
inbound SMS go to {html.escape(state.inbound_sms_url)}</p>
<h2>Messages ({len(state.messages)})</h2>
<table><tr><th>created</th><th>direction</th><th>from</th><th>to</th><th>body</th><th>status</th>
<th>callbacks</th><th>sid</th></tr>
{message_rows}</table>
<h2>Calls ({len(state.calls)})</h2>
<table><tr><th>created</th><th>from</th><th>to</th><th>status</th><th>callbacks</th><th>sid</th></tr>
{call_rows}</table>
</body></html>"""


# --- the app ----------------------------------------------------------------------------------


def create_app(
    *,
    account_sid: str,
    auth_token: str,
    inbound_sms_url: str,
    data_file: Path | None,
    public_url: str,
    status_step_seconds: float = STATUS_STEP_SECONDS,
) -> FastAPI:
    """status_step_seconds: how long a message stays queued, then sent (tests stretch it)."""
    state = SandboxState(
        account_sid=account_sid,
        auth_token=auth_token,
        inbound_sms_url=inbound_sms_url,
        public_url=public_url.rstrip("/"),
        data_file=data_file,
        status_step_seconds=status_step_seconds,
    )
    state.load()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Twilio waits 15 s for a webhook's answer before it gives up on it
        state.http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS)
        saver = asyncio.get_running_loop().create_task(state.save_loop())
        try:
            yield
        finally:
            pending = [*state.tasks, saver]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await state.http.aclose()
            state.http = None
            await state.save()

    app = FastAPI(title="closeflow Twilio sandbox", lifespan=lifespan)
    app.state.sandbox = state
    base = f"/{API_VERSION}/Accounts/{{account_sid}}"

    @app.exception_handler(TwilioApiError)
    async def _twilio_error(_: Request, exc: TwilioApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.post(base + "/Messages.json", status_code=201)
    async def create_message(account_sid: str, request: Request) -> dict[str, Any]:
        _authenticate(state, request, account_sid)
        await state.outage()
        form = await request.form()
        to, from_ = _form_value(form, "To"), _form_value(form, "From")
        body = form.get("Body")
        body = body if isinstance(body, str) else ""
        service = _form_value(form, "MessagingServiceSid") or None
        if not from_ and not service:
            raise TwilioApiError(400, 21603, "A 'From' phone number is required.")
        _check_recipient(to)
        if not body and not form.get("MediaUrl"):
            raise TwilioApiError(400, 21602, "Message body is required.")
        if state.enforce_opt_outs and (to, from_) in state.opt_outs:
            raise TwilioApiError(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = _new_sid("SM")
        message = _message_resource(
            state,
            sid=sid,
            to=to,
            from_=from_,
            body=body,
            status="queued",
            direction="outbound-api",
            messaging_service_sid=service,
        )
        state.messages[sid] = message
        state.accepted_at[sid] = _now().isoformat()
        state.changed()
        state.spawn(state.progress_message(sid, _form_value(form, "StatusCallback") or None))
        return dict(message)

    @app.get(base + "/Messages.json")
    async def list_messages(account_sid: str, request: Request) -> dict[str, Any]:
        _authenticate(state, request, account_sid)
        await state.outage()
        query = dict(request.query_params)
        dates = _date_filters(query)
        found = [m for m in reversed(state.messages.values()) if _matches(m, query, dates)]
        return _page(state, query, found)

    @app.get(base + "/Messages/{sid}.json")
    async def fetch_message(account_sid: str, sid: str, request: Request) -> dict[str, Any]:
        _authenticate(state, request, account_sid)
        await state.outage()
        if sid not in state.messages:
            raise _not_found(request)
        return state.messages[sid]

    @app.post(base + "/Calls.json", status_code=201)
    async def create_call(account_sid: str, request: Request) -> dict[str, Any]:
        _authenticate(state, request, account_sid)
        form = await request.form()
        to, from_ = _form_value(form, "To"), _form_value(form, "From")
        if not from_:
            raise TwilioApiError(400, 21213, "No 'From' number is specified")
        _check_recipient(to)
        if not (_form_value(form, "Url") or _form_value(form, "Twiml")):
            raise TwilioApiError(400, 21205, "Url parameter is required.")
        sid = _new_sid("CA")
        state.calls[sid] = _call_resource(state, sid=sid, to=to, from_=from_)
        state.changed()
        state.spawn(state.progress_call(sid, _form_value(form, "StatusCallback") or None))
        return dict(state.calls[sid])

    @app.get(base + "/Calls/{sid}.json")
    async def fetch_call(account_sid: str, sid: str, request: Request) -> dict[str, Any]:
        _authenticate(state, request, account_sid)
        if sid not in state.calls:
            raise _not_found(request)
        return state.calls[sid]

    # --- sandbox extras (no auth: a local developer tool) ---------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _render_page(state)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def with_callbacks(
        resources: dict[str, dict[str, Any]], to: str | None
    ) -> list[dict[str, Any]]:
        return [
            {
                **r,
                "callbacks": state.deliveries.get(r["sid"], []),
                "accepted_at": state.accepted_at.get(r["sid"]),
            }
            for r in reversed(resources.values())
            if to is None or r["to"] == to
        ]

    add_fault_routes(app, state.faults)

    @app.post("/sandbox/opt-out-enforcement")
    async def opt_out_enforcement(body: OptOutEnforcement) -> OptOutEnforcement:
        """Whether texts to a number that sent STOP are refused (21610), as Twilio does."""
        state.enforce_opt_outs = body.enforce
        return body

    @app.get("/sandbox/messages")
    async def sandbox_messages(to: str | None = None) -> list[dict[str, Any]]:
        """Newest first, each with the callbacks the sandbox made for it."""
        return with_callbacks(state.messages, to)

    @app.get("/sandbox/calls")
    async def sandbox_calls(to: str | None = None) -> list[dict[str, Any]]:
        return with_callbacks(state.calls, to)

    @app.post("/sandbox/inbound-sms")
    async def inbound_sms(sms: InboundSms) -> dict[str, Any]:
        """A person texts our number: Twilio's signed webhook form goes to the outreach app."""
        sid = _new_sid("SM")
        state.messages[sid] = _message_resource(
            state,
            sid=sid,
            to=sms.to,
            from_=sms.from_,
            body=sms.body,
            status="received",
            direction="inbound",
        )
        keyword = sms.body.strip().upper()
        if keyword in _STOP_WORDS:
            state.opt_outs.add((sms.from_, sms.to))
        elif keyword in _START_WORDS:
            state.opt_outs.discard((sms.from_, sms.to))
        state.changed()
        form = {
            "AccountSid": state.account_sid,
            "ApiVersion": API_VERSION,
            "Body": sms.body,
            "From": sms.from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": str(num_segments(sms.body)),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": sms.to,
        }
        # One attempt, answered synchronously: the caller wants to see what the webhook said.
        status = await state.post_signed(state.inbound_sms_url, form, sid, "inbound", attempts=1)
        return {"sid": sid, "webhook_status": status}

    return app


def run(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        inbound_sms_url=settings.outreach_public_url.rstrip("/") + "/webhooks/twilio/sms",
        data_file=settings.data_dir / "twilio-sandbox.json",
        public_url=settings.twilio_api_base_url,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.twilio_sandbox_port,
        log_level=settings.log_level.lower(),
    )
