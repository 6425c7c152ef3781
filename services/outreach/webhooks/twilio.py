"""Twilio: inbound SMS (replies, STOP/START/HELP) and message status callbacks.

Both are forms signed with X-Twilio-Signature (HMAC-SHA1 over the URL Twilio called plus the
sorted parameters, keyed with the auth token). Status callbacks may arrive out of order: a
message's status only moves forward.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape as xml_escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from services.outreach.consent import service as consent
from services.outreach.consent.erasure import (
    from_erased_person,
    strings_without_erased_addresses,
)
from services.outreach.inbox import JourneySignal, store_event
from services.outreach.notifications import text_status
from services.outreach.webhooks.common import (
    deliver,
    latest_message_to,
    mark_replied,
    settings_of,
    stop_cadence,
)
from services.outreach.webhooks.replies import STOP_WORDS
from services.outreach.webhooks.sms_status import StatusCallback, StatusWriter, named_row
from shared.auth import secrets_match
from shared.contracts.journey import ReplyReceived, system_actor
from shared.contracts.names import Sig
from shared.db import Session
from shared.errors import AppError
from shared.metrics import ServiceMetrics
from shared.providers.twilio_signature import (
    SIGNATURE_HEADER,
    sign_twilio_request,
    verify_twilio_signature,
)
from shared.requests import without_nul
from shared.settings import Settings

router = APIRouter(prefix="/twilio")

START_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
URLENCODED = "application/x-www-form-urlencoded"


def _twiml(message: str | None = None) -> Response:
    body = f"<Message>{xml_escape(message)}</Message>" if message else ""
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
        media_type="text/xml",
    )


async def _verified_form(request: Request) -> dict[str, str]:
    settings = settings_of(request)
    if request.headers.get("content-type", "").startswith(URLENCODED):
        # what Twilio sends; parsed directly, which is cheaper than the multipart-capable parser
        form = _parse_urlencoded(await request.body())
    else:
        form = FormValues((await request.form()).multi_items())
    signature = request.headers.get(SIGNATURE_HEADER) or ""
    return _checked(settings, request.url.path, request.url.query, form, signature)


class FormValues(dict[str, list[str]]):
    """A form as name -> every value, in order. `getall` is what the Twilio validator asks a
    form for first (a multi-dict's getlist scans every item per name, behind an exception)."""

    def __init__(self, pairs: Iterable[tuple[str, Any]]) -> None:
        super().__init__()
        for name, value in pairs:
            self.setdefault(name, []).append(str(value))

    def getall(self, name: str) -> list[str]:
        return self[name]


# Twilio's callbacks carry a few dozen fields; Starlette's own form parser stops at 1000. A
# stranger's body of `0=&1=&...` parsed without a cap (and signed over, twice) held the event
# loop near a second per MiB before the 403
MAX_FORM_FIELDS = 1000


def _parse_urlencoded(body: bytes) -> FormValues:
    if body.count(b"&") >= MAX_FORM_FIELDS:
        raise AppError(400, "invalid_payload", f"a form of more than {MAX_FORM_FIELDS} fields")
    return FormValues(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _checked(
    settings: Settings, path: str, query: str, form: FormValues, signature: str
) -> dict[str, str]:
    """The form, once its X-Twilio-Signature matches the URL we told Twilio; 404 when the Twilio
    webhooks are not configured, 403 when the signature does not match."""
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        raise AppError(404, "webhook_disabled", "the Twilio webhooks are not configured")
    url = settings.outreach_public_url.rstrip("/") + path
    if query:
        url += f"?{query}"
    # The URL as configured is what Twilio signs: one HMAC. The validator's slower variants
    # (with and without the default port) only when that does not match.
    exact = sign_twilio_request(token, url, form)  # type: ignore[arg-type]
    if not secrets_match(exact, signature) and not verify_twilio_signature(
        token,
        url,
        form,  # type: ignore[arg-type]
        signature,
    ):
        raise AppError(403, "invalid_signature", "X-Twilio-Signature does not match this request")
    # a repeated field: the last; a NUL (signed, so Twilio's) cannot be stored: replaced
    return {name: without_nul(values[-1]) for name, values in form.items()}


@router.post("/sms", summary="Twilio inbound SMS (replies, STOP/START/HELP)")
async def inbound_sms(request: Request, session: Session) -> Response:
    form = await _verified_form(request)
    sid, sender = form.get("MessageSid", ""), form.get("From", "")
    if not sid or not sender:
        raise AppError(400, "invalid_payload", "MessageSid and From are required")
    pepper = settings_of(request).erasure_pepper.get_secret_value()
    if await from_erased_person(session, pepper, "phone", sender):
        return _twiml()  # nothing of an erased person's text is kept, and nobody is told
    # another's text that names an erased person keeps their number or address only as [erased]
    form = await strings_without_erased_addresses(session, pepper, form)
    body = form.get("Body", "")
    word = body.strip().upper()
    last = await latest_message_to(session, "sms", sender)
    prospect_id = last.prospect_id if last else None
    if word in STOP_WORDS:
        kind, signal = "stop", stop_cadence(prospect_id, f"SMS {word}")
    elif word in START_WORDS:
        kind, signal = "start", None
    elif word in HELP_WORDS:
        kind, signal = "help", None
    else:
        reply = ReplyReceived("sms", sid, body[:500], system_actor("reply via twilio"))
        kind, signal = "reply", JourneySignal(prospect_id, Sig.REPLY_RECEIVED, reply)
    stored = await store_event(
        session, "twilio", sid, f"sms_{kind}", form, prospect_id=prospect_id, signal=signal
    )
    if kind == "reply":
        mark_replied(last, stored)
    if stored is None:
        return _twiml()  # a repeated delivery: it had its effect (and its answer) the first time
    answer = None
    if kind == "stop":
        await consent.opt_out(session, "sms", sender, f"SMS {word}", prospect_id=prospect_id)
        answer = "You have been unsubscribed and will not receive more messages. Reply START to resubscribe."
    elif kind == "start":
        await consent.opt_in(session, "sms", sender, f"SMS {word}", prospect_id=prospect_id)
        answer = "You have been resubscribed. Reply STOP to unsubscribe."
    elif kind == "help":
        answer = "closeflow sales messages. Reply STOP to unsubscribe."
    await session.commit()
    await deliver(request, [stored])
    return _twiml(answer)


def _status_writer(state: State) -> StatusWriter:
    writer: StatusWriter | None = getattr(state, "sms_status_writer", None)
    if writer is None:
        writer = state.sms_status_writer = StatusWriter(lambda: state.engine)
        state.cleanup.append(writer.close)
    return writer


async def _store_status(state: State, form: dict[str, str], query: str) -> None:
    """`query`: the callback URL's, signed with it (the ledger row the text is for)."""
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not status:
        raise AppError(400, "invalid_payload", "MessageSid and MessageStatus are required")
    params = parse_qsl(query)
    notification = text_status.named_notification(params)
    if notification:
        # a rep's notification text: not a cadence message, so not in the ledger
        await text_status.record_text(state.sessions, notification, sid)
        return
    message_id = named_row(params)
    await _status_writer(state).write(StatusCallback(sid, status, form, message_id))


@router.post("/status", summary="Twilio message status callbacks", status_code=204)
async def status_callback(request: Request) -> Response:
    """Answered by StatusCallbackFastPath in the outreach app (same checks, same writer); this
    route serves an app built without it, and documents the endpoint."""
    await _store_status(request.app.state, await _verified_form(request), request.url.query)
    return Response(status_code=204)


STATUS_PATH = "/webhooks/twilio/status"
MAX_STATUS_BODY = 64 * 1024  # a status callback is a few hundred bytes
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}


class StatusCallbackFastPath:
    """ASGI middleware answering Twilio status callbacks (POST /webhooks/twilio/status,
    urlencoded) before routing: the busiest webhook, and most of its cost per request was the
    framework around it (routing through every route, dependency solving, request and response
    objects). Same order as every webhook: signature checked before the body is used, the
    callback committed by the status writer before the 204. Anything else goes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != STATUS_PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if not headers.get(b"content-type", b"").startswith(URLENCODED.encode()):
            return await self.app(scope, receive, send)  # the route parses other encodings
        started = time.perf_counter()
        status = 500  # what an exception below leaves (the server answers it)
        try:
            status = await self._answer(scope, receive, send, headers)
        finally:
            # counted as HttpMetrics counts the routed webhooks (it never sees these requests)
            metrics: ServiceMetrics = scope["app"].state.metrics
            metrics.observe(STATUS_PATH, "POST", status, time.perf_counter() - started)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> int:
        try:
            body = await _read_body(receive)
            state = scope["app"].state
            signature = headers.get(SIGNATURE_HEADER.lower().encode(), b"").decode("latin-1")
            query = scope["query_string"].decode("latin-1")
            form = _checked(
                state.settings, scope["path"], query, _parse_urlencoded(body), signature
            )
            await _store_status(state, form, query)
        except AppError as err:
            response = JSONResponse(
                {"error": {"code": err.code, "message": err.message, "details": err.details}},
                status_code=err.status,
            )
            await response(scope, receive, send)
            return err.status
        await send(_NO_CONTENT)
        await send({"type": "http.response.body", "body": b""})
        return 204


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise AppError(400, "invalid_payload", "the client went away mid-request")
        chunk: bytes = message.get("body", b"")  # an ASGI message is a plain dict of Any
        body += chunk
        if len(body) > MAX_STATUS_BODY:
            raise AppError(413, "payload_too_large", "a status callback is at most 64 KiB")
        if not message.get("more_body", False):
            return body
