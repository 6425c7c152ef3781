"""Mailgun: the inbound route's forward() (email replies) and the event webhooks.

Both carry timestamp, token and signature: hex HMAC-SHA256 of timestamp + token keyed with the
webhook signing key. The signature does not cover the body, so a captured one could be sent
again with another body: each token is single-use (kept a day), and a timestamp older than
CLOSEFLOW_MAILGUN_MAX_AGE_SECONDS (8 hours: Mailgun retries that long, perhaps with the first
signature) or more than 15 minutes ahead is refused. The same request again (a retry) is a
duplicate: 200, no second effect. The token with another body is a replay: 403, nothing stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach.inbox import claim_token
from services.outreach.webhooks.common import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    NOTED,
    UNSUBSCRIBE,
    InboundEmail,
    UnusableEmail,
    as_object,
    canonical_sha256,
    deliver,
    inbound_address,
    inbound_event_id,
    receive_email,
    set_aside,
    settings_of,
    store_email_event,
)
from services.outreach.webhooks.replies import header, header_pairs
from shared.db import Session
from shared.errors import AppError
from shared.form_fields import form_fields
from shared.providers.mailgun import PERMANENT, verify_mailgun_signature
from shared.requests import InvalidJson, parse_json, without_nul

router = APIRouter(prefix="/mailgun")


def _signing_key(request: Request) -> str:
    key = settings_of(request).mailgun_signing_key.get_secret_value()
    if not key:
        raise AppError(404, "webhook_disabled", "the Mailgun webhooks are not configured")
    return key


async def _authenticate(
    request: Request,
    session: AsyncSession,
    key: str,
    timestamp: str,
    token: str,
    signature: str,
    body: Any,
) -> bool:
    """True for a new request, False for a retry of one already handled; 403 otherwise."""
    max_age = settings_of(request).mailgun_max_age_seconds
    if not verify_mailgun_signature(
        key, timestamp, token, signature, now=time.time(), max_age_seconds=max_age
    ):
        raise AppError(403, "invalid_signature", "Mailgun signature invalid or stale")
    seen = await claim_token(session, "mailgun", token, canonical_sha256(body))
    if seen == "other":
        raise AppError(403, "replayed_token", "this Mailgun token was already used")
    return seen == "new"


def _event_meaning(event: str, severity: str) -> str:
    if event == "delivered":
        return DELIVERED
    if event == "failed":
        return HARD_BOUNCE if severity == PERMANENT else NOTED  # temporary: Mailgun retries
    if event == "complained":
        return COMPLAINT
    if event == "unsubscribed":
        return UNSUBSCRIBE
    return NOTED  # opened, clicked, accepted, stored...


# Mailgun signs fields of the form itself, so a form is read whole before it can be refused: a
# stranger's post of one 40 MiB field held about 80 MiB until then, and a few at once took the
# process's memory (512 MiB in deploy/). This many are read at once; the others wait.
UNSIGNED_FORMS_AT_ONCE = 2


def unsigned_forms(state: Any) -> asyncio.Semaphore:
    """The app's places for reading an inbound form (one per app: a semaphore waits on the
    event loop it was first waited on)."""
    places: asyncio.Semaphore | None = getattr(state, "mailgun_unsigned_forms", None)
    if places is None:
        places = state.mailgun_unsigned_forms = asyncio.Semaphore(UNSIGNED_FORMS_AT_ONCE)
    return places


@router.post("/inbound", summary="Mailgun inbound route (email replies)")
async def inbound(request: Request, session: Session) -> Response:
    key = _signing_key(request)
    # a field (body-plain, body-html: a long quoted thread) may be as large as the route's
    # whole body limit (Starlette's own cap is 1 MiB per field); the attachments are dropped
    # unread, before the signature is checked (shared.form_fields)
    async with unsigned_forms(request.app.state):
        form = await form_fields(request, settings_of(request).inbound_email_max_body_bytes)
        fields = {k: form.get(k, "") for k in ("timestamp", "token", "signature")}
        if not await _authenticate(request, session, key, **fields, body=form):
            return Response(status_code=200)
    form = without_nul(form)  # authenticated as sent; a NUL cannot be stored
    try:
        sender = inbound_address(form.get("sender", ""), "sender")
    except UnusableEmail as err:
        return await set_aside(request, session, "mailgun", json.dumps(form), str(err))
    headers = _message_headers(form)
    message_id = form.get("Message-Id") or header(headers, "Message-Id")
    message_id = message_id or f"token:{fields['token']}"
    mail = InboundEmail(
        provider="mailgun",
        event_id=inbound_event_id(message_id),
        message_id=message_id,
        sender=sender,
        recipients=[form.get("recipient", ""), header(headers, "To"), header(headers, "Cc")],
        references=f"{form.get('In-Reply-To', '')} {form.get('References', '')}".split(),
        headers=headers,
        subject=form.get("subject") or form.get("Subject", ""),
        text=form.get("stripped-text") or form.get("body-plain", ""),
        date=form.get("Date") or header(headers, "Date"),
        payload=form,
    )
    stored = await receive_email(session, settings_of(request), mail)
    await session.commit()
    await deliver(request, [stored])
    return Response(status_code=200)


def _message_headers(form: dict[str, str]) -> list[tuple[str, str]]:
    """The email's headers: `message-headers` (a JSON list of [name, value] pairs), else the
    fields Mailgun posts under each header's own name."""
    try:
        # a "\u0000" inside this JSON text becomes a NUL once parsed: replaced too
        pairs = without_nul(header_pairs(parse_json(form.get("message-headers") or "null")))
    except InvalidJson:
        pairs = []
    return pairs or [(k, v) for k, v in form.items() if k[:1].isupper()]


@router.post("/events", summary="Mailgun event webhooks (delivered, failed, complained, ...)")
async def events(request: Request, session: Session) -> Response:
    key = _signing_key(request)
    try:
        payload = parse_json(await request.body())
    except InvalidJson as err:
        # Nothing here is authenticated yet (the signature is inside the body): refuse it.
        raise AppError(400, "invalid_payload", f"not a Mailgun event webhook body: {err}") from err
    try:
        sig, data = payload["signature"], payload["event-data"]
        fields = {k: str(sig[k]) for k in ("timestamp", "token", "signature")}
        event_name, event_id = str(data["event"]), str(data["id"])
    except KeyError as err:
        raise AppError(
            400, "invalid_payload", f"not a Mailgun event webhook body: missing {err}"
        ) from err
    except TypeError as err:
        message = "not a Mailgun event webhook body: signature and event-data must be objects"
        raise AppError(400, "invalid_payload", message) from err
    if not await _authenticate(request, session, key, **fields, body=data):
        return Response(status_code=200)
    payload = without_nul(payload)  # authenticated as sent; a NUL cannot be stored
    data = payload["event-data"]
    try:
        recipient = inbound_address(str(data.get("recipient") or ""), "recipient")
    except UnusableEmail as err:
        return await set_aside(request, session, "mailgun", json.dumps(payload), str(err))
    # parts of another shape than Mailgun documents count as absent: the event is still stored
    headers = as_object(as_object(data.get("message")).get("headers"))
    status = as_object(data.get("delivery-status")).get("description") or data.get("reason")
    stored, _ = await store_email_event(
        session,
        "mailgun",
        event_id,
        event_name,
        payload,
        message_ids=[str(headers.get("message-id", ""))],
        recipient=recipient,
        meaning=_event_meaning(event_name, str(data.get("severity", ""))),
        provider_status=event_name,
        pepper=settings_of(request).erasure_pepper.get_secret_value(),
        detail=str(status or ""),
    )
    await session.commit()
    await deliver(request, [stored])
    return Response(status_code=200)
