"""Twilio: inbound SMS (replies, STOP/START/HELP) and message status callbacks.

Both are forms signed with X-Twilio-Signature (HMAC-SHA1 over the URL Twilio called plus the
sorted parameters, keyed with the auth token). Status callbacks may arrive out of order: a
message's status only moves forward.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape as xml_escape

from fastapi import APIRouter, Request, Response
from starlette.datastructures import ImmutableMultiDict

from services.outreach import consent
from services.outreach.inbox import JourneySignal, store_event
from services.outreach.webhooks.common import (
    deliver,
    latest_message_to,
    mark_replied,
    settings_of,
    stop_cadence,
)
from services.outreach.webhooks.sms_status import StatusCallback, StatusWriter
from shared.contracts.journey import ReplyReceived
from shared.contracts.names import Sig
from shared.db import Session
from shared.errors import AppError
from shared.providers.twilio_signature import (
    SIGNATURE_HEADER,
    sign_twilio_request,
    verify_twilio_signature,
)

router = APIRouter(prefix="/twilio")

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "CANCEL", "REVOKE", "OPTOUT"}
)
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
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        raise AppError(404, "webhook_disabled", "the Twilio webhooks are not configured")
    form: ImmutableMultiDict[str, Any]
    if request.headers.get("content-type", "").startswith(URLENCODED):
        # what Twilio sends; parsed directly, which is cheaper than the multipart-capable parser
        body = (await request.body()).decode("utf-8", "replace")
        form = ImmutableMultiDict(parse_qsl(body, keep_blank_values=True))
    else:
        form = await request.form()
    url = settings.outreach_public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += f"?{request.url.query}"
    signature = request.headers.get(SIGNATURE_HEADER) or ""
    # The URL as configured is what Twilio signs: one HMAC. The validator's slower variants
    # (with and without the default port) only when that does not match.
    exact = sign_twilio_request(token, url, form).encode()  # type: ignore[arg-type]
    if not hmac.compare_digest(exact, signature.encode()) and not verify_twilio_signature(
        token,
        url,
        form,  # type: ignore[arg-type]
        signature,
    ):
        raise AppError(403, "invalid_signature", "X-Twilio-Signature does not match this request")
    return {k: str(v) for k, v in form.items()}


@router.post("/sms", summary="Twilio inbound SMS (replies, STOP/START/HELP)")
async def inbound_sms(request: Request, session: Session) -> Response:
    form = await _verified_form(request)
    sid, sender = form.get("MessageSid", ""), form.get("From", "")
    if not sid or not sender:
        raise AppError(400, "invalid_payload", "MessageSid and From are required")
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
        reply = ReplyReceived("sms", sid, body[:500])
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


def _status_writer(request: Request) -> StatusWriter:
    state = request.app.state
    writer: StatusWriter | None = getattr(state, "sms_status_writer", None)
    if writer is None:
        writer = state.sms_status_writer = StatusWriter(lambda: state.engine)
        state.cleanup.append(writer.close)
    return writer


@router.post("/status", summary="Twilio message status callbacks", status_code=204)
async def status_callback(request: Request) -> Response:
    form = await _verified_form(request)
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not status:
        raise AppError(400, "invalid_payload", "MessageSid and MessageStatus are required")
    await _status_writer(request).write(StatusCallback(sid, status, form))
    return Response(status_code=204)
