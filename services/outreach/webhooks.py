"""Provider callbacks: verify the signature, store (deduped by provider event id), act, answer 2xx.

An invalid signature gets 403 and nothing is stored; an empty secret disables the endpoint.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from html import escape
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models, service
from shared.contracts.journey import ReplyReceived
from shared.contracts.names import Sig
from shared.db import Session
from shared.errors import AppError
from shared.journeys import signal_journey
from shared.providers.mailgun import strip_angle_brackets, verify_mailgun_signature
from shared.providers.twilio_signature import verify_twilio_signature
from shared.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", tags=["provider webhooks"])

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "CANCEL", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
# Twilio statuses in the order a message moves through them: a late callback never regresses.
SMS_STATUS_RANK = {
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _twiml(message: str | None = None) -> Response:
    body = f"<Message>{xml_escape(message)}</Message>" if message else ""
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>',
        media_type="text/xml",
    )


async def _verified_twilio_form(request: Request) -> dict[str, str]:
    token = _settings(request).twilio_auth_token.get_secret_value()
    if not token:
        raise AppError(404, "webhook_disabled", "the Twilio webhooks are not configured")
    form = await request.form()
    params = {k: str(v) for k, v in form.items()}
    url = _settings(request).outreach_public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += f"?{request.url.query}"
    if not verify_twilio_signature(token, url, params, request.headers.get("X-Twilio-Signature")):
        raise AppError(403, "invalid_signature", "X-Twilio-Signature does not match this request")
    return params


async def store_event(
    session: AsyncSession, provider: str, event_id: str, kind: str, payload: dict[str, Any]
) -> models.InboxEvent | None:
    """Store a provider event once; None when this event id was seen before."""
    event = models.InboxEvent(provider=provider, event_id=event_id, kind=kind, payload=payload)
    try:
        async with session.begin_nested():
            session.add(event)
    except IntegrityError:
        return None
    return event


async def _signal_reply(
    request: Request, session: AsyncSession, event: models.InboxEvent, reply: ReplyReceived
) -> None:
    """After the commit that stored the event: tell the journey, mark it processed."""
    await session.commit()
    if event.prospect_id is None:
        return
    try:
        await signal_journey(
            request.app.state.temporal, event.prospect_id, Sig.REPLY_RECEIVED, reply
        )
    except AppError as err:
        # Stored either way; a journey that is not running has nothing to stop.
        log.warning("reply %s not delivered to the journey: %s", event.event_id, err.message)
        return
    event.processed_at = datetime.now(UTC)
    await session.commit()


async def _latest_message_to(
    session: AsyncSession, channel: str, address: str
) -> models.Message | None:
    return await session.scalar(
        select(models.Message)
        .where(models.Message.channel == channel, models.Message.to_address == address)
        .order_by(models.Message.created_at.desc())
        .limit(1)
    )


# --- Twilio -------------------------------------------------------------------------------------


@router.post("/twilio/sms", summary="Twilio inbound SMS (replies, STOP/START/HELP)")
async def twilio_inbound_sms(request: Request, session: Session) -> Response:
    form = await _verified_twilio_form(request)
    sid, sender = form.get("MessageSid", ""), form.get("From", "")
    if not sid or not sender:
        raise AppError(400, "invalid_payload", "MessageSid and From are required")
    word = form.get("Body", "").strip().upper()
    kind = (
        "stop"
        if word in STOP_WORDS
        else "start"
        if word in START_WORDS
        else "help"
        if word in HELP_WORDS
        else "reply"
    )
    event = await store_event(session, "twilio", sid, f"sms_{kind}", form)
    if event is None:
        return _twiml()  # duplicate delivery: its effect happened the first time
    last = await _latest_message_to(session, "sms", sender)
    event.prospect_id = last.prospect_id if last else None
    if kind == "stop":
        await service.suppress(session, "sms", sender, f"SMS {word}")
        await session.commit()
        return _twiml(
            "You have been unsubscribed and will not receive more messages. Reply START to resubscribe."
        )
    if kind == "start":
        await service.unsuppress(session, "sms", sender)
        await session.commit()
        return _twiml("You have been resubscribed. Reply STOP to unsubscribe.")
    if kind == "help":
        await session.commit()
        return _twiml("closeflow sales messages. Reply STOP to unsubscribe.")
    await _signal_reply(
        request, session, event, ReplyReceived("sms", sid, form.get("Body", "")[:500])
    )
    return _twiml()


@router.post("/twilio/status", summary="Twilio message status callbacks")
async def twilio_status(request: Request, session: Session) -> Response:
    form = await _verified_twilio_form(request)
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or status not in SMS_STATUS_RANK:
        raise AppError(400, "invalid_payload", "MessageSid and a known MessageStatus are required")
    event = await store_event(session, "twilio", f"{sid}:{status}", "sms_status", form)
    if event is None:
        return Response(status_code=204)
    row = await session.scalar(select(models.Message).where(models.Message.provider_id == sid))
    if row is not None:
        event.prospect_id = row.prospect_id
        if SMS_STATUS_RANK[status] >= SMS_STATUS_RANK.get(row.provider_status, -1):
            row.provider_status = status
            if status == "delivered":
                row.status = "delivered"
            elif status in ("failed", "undelivered"):
                row.status = "failed"
                row.error = form.get("ErrorCode", "")
        event.processed_at = datetime.now(UTC)
    await session.commit()
    return Response(status_code=204)


# --- Mailgun ------------------------------------------------------------------------------------


def _mailgun_key(request: Request) -> str:
    key = _settings(request).mailgun_signing_key.get_secret_value()
    if not key:
        raise AppError(404, "webhook_disabled", "the Mailgun webhooks are not configured")
    return key


def _check_mailgun(key: str, timestamp: str, token: str, signature: str) -> None:
    if not verify_mailgun_signature(key, timestamp, token, signature, now=time.time()):
        raise AppError(403, "invalid_signature", "Mailgun signature invalid or stale")


@router.post("/mailgun/inbound", summary="Mailgun inbound route (email replies)")
async def mailgun_inbound(request: Request, session: Session) -> Response:
    key = _mailgun_key(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    _check_mailgun(key, form.get("timestamp", ""), form.get("token", ""), form.get("signature", ""))
    # The token is single-use: a replayed request is a duplicate, not a second reply.
    event = await store_event(session, "mailgun", f"token:{form['token']}", "email_reply", form)
    if event is None:
        return Response(status_code=200)
    references = f"{form.get('In-Reply-To', '')} {form.get('References', '')}".split()
    original = None
    for ref in references:
        original = await session.scalar(
            select(models.Message).where(
                models.Message.channel == "email", models.Message.provider_id == ref
            )
        )
        if original is not None:
            break
    if original is None and form.get("sender"):
        original = await _latest_message_to(session, "email", form["sender"].strip().lower())
    event.prospect_id = original.prospect_id if original else None
    text = form.get("stripped-text") or form.get("body-plain", "")
    message_id = form.get("Message-Id") or event.event_id
    await _signal_reply(request, session, event, ReplyReceived("email", message_id, text[:500]))
    return Response(status_code=200)


@router.post("/mailgun/events", summary="Mailgun event webhooks (delivered, failed, complained)")
async def mailgun_events(request: Request, session: Session) -> Response:
    key = _mailgun_key(request)
    try:
        payload = json.loads(await request.body())
        sig = payload["signature"]
        data = payload["event-data"]
        _check_mailgun(key, str(sig["timestamp"]), str(sig["token"]), str(sig["signature"]))
        event_name, event_id = str(data["event"]), str(data["id"])
    except (ValueError, KeyError, TypeError) as err:
        raise AppError(
            400, "invalid_payload", f"not a Mailgun event webhook body: missing {err}"
        ) from err
    event = await store_event(session, "mailgun", event_id, f"email_{event_name}", payload)
    if event is None:
        return Response(status_code=200)
    headers = (data.get("message") or {}).get("headers") or {}
    message_id = f"<{strip_angle_brackets(str(headers.get('message-id', '')))}>"
    row = await session.scalar(
        select(models.Message).where(
            models.Message.channel == "email", models.Message.provider_id == message_id
        )
    )
    recipient = str(data.get("recipient") or (row.to_address if row else ""))
    if row is not None:
        event.prospect_id = row.prospect_id
        row.provider_status = event_name
    if event_name == "delivered" and row is not None and row.status == "submitted":
        row.status = "delivered"
    elif event_name == "failed" and data.get("severity") == "permanent":
        if row is not None:
            row.status = "bounced"
        if recipient:
            await service.suppress(session, "email", recipient, "hard bounce")
    elif event_name in ("complained", "unsubscribed") and recipient:
        await service.suppress(session, "email", recipient, event_name)
    event.processed_at = datetime.now(UTC)
    await session.commit()
    return Response(status_code=200)


# --- one-click unsubscribe (RFC 8058), public ----------------------------------------------------

public_router = APIRouter(tags=["public"])


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
        f"<h1>{escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


async def _message_for_token(session: AsyncSession, token: str) -> models.Message | None:
    return await session.scalar(
        select(models.Message).where(models.Message.unsubscribe_token == token)
    )


@public_router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, session: Session) -> HTMLResponse:
    row = await _message_for_token(session, token)
    if row is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    return _page(
        "Unsubscribe",
        f"<p>Stop all emails to <b>{escape(row.to_address)}</b>?</p>"
        f"<form method='post'><button type='submit'>Unsubscribe</button></form>",
    )


@public_router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(token: str, session: Session) -> HTMLResponse:
    """Mail clients POST `List-Unsubscribe=One-Click` here; the page's button does the same."""
    row = await _message_for_token(session, token)
    if row is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    await service.suppress(session, "email", row.to_address, "unsubscribe link")
    await session.commit()
    return _page("Unsubscribed", f"<p>{escape(row.to_address)} will receive no more emails.</p>")
