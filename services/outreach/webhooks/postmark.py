"""Postmark: outbound events (Bounce, SpamComplaint, Delivery, SubscriptionChange, Open, Click)
on one URL, and inbound email (replies) on another.

Postmark signs nothing; each webhook URL carries credentials (https://user:password@host/...)
that arrive as HTTP basic auth, checked against the configured pair. Wrong or missing: 401 and
nothing stored. An authenticated document that cannot be understood is kept aside with the
reason and answered 200 (Postmark would only send the same document again).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import HTTPException

from services.outreach.inbox import JourneySignal, reject, store_event
from services.outreach.webhooks.common import (
    COMPLAINT,
    DELIVERED,
    HARD_BOUNCE,
    NOTED,
    SUPPRESSING,
    UNSUBSCRIBE,
    apply_email_event,
    canonical_sha256,
    deliver,
    email_for,
    mark_replied,
    settings_of,
    stop_cadence,
)
from shared.contracts.journey import ReplyReceived
from shared.contracts.names import Sig
from shared.db import Session
from shared.errors import AppError
from shared.providers.postmark import HARD_BOUNCE_TYPES, verify_basic_auth

router = APIRouter(prefix="/postmark")


async def _authenticated_json(request: Request) -> tuple[bytes, Any]:
    settings = settings_of(request)
    password = settings.postmark_webhook_password.get_secret_value()
    if not password:
        raise AppError(404, "webhook_disabled", "the Postmark webhooks are not configured")
    user = settings.postmark_webhook_user
    if not verify_basic_auth(user, password, request.headers.get("Authorization")):
        raise HTTPException(
            401,
            "the Postmark webhook credentials are missing or wrong",
            headers={"WWW-Authenticate": 'Basic realm="closeflow webhooks"'},
        )
    body = await request.body()
    try:
        return body, json.loads(body)
    except ValueError:
        return body, None


def _header(doc: dict[str, Any], name: str) -> str:
    for header in doc.get("Headers") or []:
        if isinstance(header, dict) and str(header.get("Name", "")).lower() == name.lower():
            return str(header.get("Value", ""))
    return ""


def _event(doc: dict[str, Any]) -> tuple[str, str, str, str] | str:
    """(event id, recipient, meaning, provider status), or why the document is not usable."""
    record = doc.get("RecordType")
    message_id = str(doc.get("MessageID") or "")
    if record in ("Bounce", "SpamComplaint"):
        if not doc.get("ID") or not doc.get("Email"):
            return f"{record} without ID or Email"
        kind = str(doc.get("Type", ""))
        if record == "SpamComplaint" or kind == "SpamComplaint":
            meaning = COMPLAINT
        else:
            meaning = HARD_BOUNCE if kind in HARD_BOUNCE_TYPES else NOTED  # soft: Postmark retries
        return f"{record}:{doc['ID']}", str(doc["Email"]), meaning, kind or record
    recipient = str(doc.get("Recipient") or doc.get("Email") or "")
    if record == "Delivery":
        if not message_id or not recipient:
            return "Delivery without MessageID or Recipient"
        return f"Delivery:{message_id}:{recipient}", recipient, DELIVERED, "delivered"
    if record == "SubscriptionChange":
        if not recipient:
            return "SubscriptionChange without Recipient"
        ident = f"SubscriptionChange:{message_id}:{recipient}:{doc.get('ChangedAt', '')}"
        # reactivation (SuppressSending false) is for ops to decide, not for a webhook
        meaning = UNSUBSCRIBE if doc.get("SuppressSending") is True else NOTED
        return (
            ident,
            recipient,
            meaning,
            "unsubscribed" if meaning == UNSUBSCRIBE else "resubscribed",
        )
    if record in ("Open", "Click"):
        return f"{record}:{canonical_sha256(doc)}", recipient, NOTED, record.lower()
    return f"unknown RecordType {record!r}"


@router.post(
    "/events", summary="Postmark outbound webhooks (bounce, spam complaint, delivery, ...)"
)
async def events(request: Request, session: Session) -> Response:
    body, doc = await _authenticated_json(request)
    parsed = _event(doc) if isinstance(doc, dict) else "body is not a JSON object"
    if isinstance(parsed, str):
        await reject(session, "postmark", body.decode("utf-8", "replace"), parsed)
        await session.commit()
        return Response(status_code=200)
    event_id, recipient, meaning, provider_status = parsed
    recipient = recipient.strip().lower()
    row = await email_for(session, [str(doc.get("MessageID") or "")], recipient)
    reason = SUPPRESSING.get(meaning)
    prospect_id = row.prospect_id if row else None
    stored = await store_event(
        session,
        "postmark",
        event_id,
        f"email_{doc['RecordType']}"[:40],
        doc,
        prospect_id=prospect_id,
        signal=stop_cadence(prospect_id, reason) if reason else None,
    )
    if stored is not None:
        detail = str(doc.get("Details") or doc.get("Description") or "")
        await apply_email_event(session, row, recipient, meaning, provider_status, detail)
    await session.commit()
    await deliver(request, [stored])
    return Response(status_code=200)


@router.post("/inbound", summary="Postmark inbound webhook (email replies)")
async def inbound(request: Request, session: Session) -> Response:
    body, doc = await _authenticated_json(request)
    problem = None
    if not isinstance(doc, dict):
        problem = "body is not a JSON object"
    elif not doc.get("MessageID") or not (doc.get("From") or (doc.get("FromFull") or {})):
        problem = "inbound message without MessageID or From"
    if problem is not None or not isinstance(doc, dict):
        await reject(session, "postmark", body.decode("utf-8", "replace"), problem or "")
        await session.commit()
        return Response(status_code=200)
    sender = str((doc.get("FromFull") or {}).get("Email") or doc.get("From") or "").strip().lower()
    references = f"{_header(doc, 'In-Reply-To')} {_header(doc, 'References')}".split()
    original = await email_for(session, references, sender)
    prospect_id = original.prospect_id if original else None
    message_id = _header(doc, "Message-ID") or str(doc["MessageID"])
    text = str(doc.get("StrippedTextReply") or doc.get("TextBody") or "")
    stored = await store_event(
        session,
        "postmark",
        f"inbound:{doc['MessageID']}",
        "email_reply",
        doc,
        prospect_id=prospect_id,
        signal=JourneySignal(
            prospect_id, Sig.REPLY_RECEIVED, ReplyReceived("email", message_id, text[:500])
        ),
    )
    mark_replied(original, stored)
    await session.commit()
    await deliver(request, [stored])
    return Response(status_code=200)
