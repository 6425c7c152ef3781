"""Postmark: outbound events (Bounce, SpamComplaint, Delivery, SubscriptionChange, Open, Click)
on one URL, and inbound email (replies) on another.

An outbound event names its ledger row by our Message-ID in the message's metadata (sent as an
`X-PM-Metadata-` header while the Postmark webhooks are configured); events of messages sent
without it are matched by their recipient.

Postmark signs nothing; each webhook URL carries credentials (https://user:password@host/...)
that arrive as HTTP basic auth, checked against the configured pair. Wrong or missing: 401 and
nothing stored. An authenticated document that cannot be understood is kept aside with the
reason and answered 200 (Postmark would only send the same document again).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import HTTPException

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
from shared.providers.postmark import HARD_BOUNCE_TYPES, message_id_of, verify_basic_auth
from shared.requests import InvalidJson, parse_json, without_nul

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
        return body, without_nul(parse_json(body))  # a NUL cannot be stored
    except InvalidJson:
        return body, None


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


def _usable_event(doc: Any) -> tuple[str, str, str, str] | str:
    """_event's answer with its recipient checked (an address no column holds is a reason)."""
    parsed = _event(doc) if isinstance(doc, dict) else "body is not a JSON object"
    if isinstance(parsed, str):
        return parsed
    event_id, recipient, meaning, provider_status = parsed
    try:
        return event_id, inbound_address(recipient, "Recipient"), meaning, provider_status
    except UnusableEmail as err:
        return str(err)


@router.post(
    "/events", summary="Postmark outbound webhooks (bounce, spam complaint, delivery, ...)"
)
async def events(request: Request, session: Session) -> Response:
    body, doc = await _authenticated_json(request)
    parsed = _usable_event(doc)
    if isinstance(parsed, str):
        return await set_aside(
            request, session, "postmark", body.decode("utf-8", "replace"), parsed
        )
    event_id, recipient, meaning, provider_status = parsed
    stored, _ = await store_email_event(
        session,
        "postmark",
        event_id,
        str(doc["RecordType"]),
        doc,
        # our Message-ID, which the message's metadata carries (sent with Postmark's header),
        # names the row; Postmark's own MessageID names none
        message_ids=[message_id_of(doc), str(doc.get("MessageID") or "")],
        recipient=recipient,
        meaning=meaning,
        provider_status=provider_status,
        pepper=settings_of(request).erasure_pepper.get_secret_value(),
        detail=str(doc.get("Details") or doc.get("Description") or ""),
    )
    await session.commit()
    await deliver(request, [stored])
    return Response(status_code=200)


@router.post("/inbound", summary="Postmark inbound webhook (email replies)")
async def inbound(request: Request, session: Session) -> Response:
    body, doc = await _authenticated_json(request)
    mail = _inbound_email(doc) if isinstance(doc, dict) else "body is not a JSON object"
    if isinstance(mail, str):
        return await set_aside(request, session, "postmark", body.decode("utf-8", "replace"), mail)
    stored = await receive_email(session, settings_of(request), mail)
    await session.commit()
    await deliver(request, [stored])
    return Response(status_code=200)


def _inbound_email(doc: dict[str, Any]) -> InboundEmail | str:
    """The inbound message, or why it cannot be stored (kept aside, answered 200)."""
    if not doc.get("MessageID") or not (doc.get("From") or as_object(doc.get("FromFull"))):
        return "inbound message without MessageID or From"
    try:
        sender = inbound_address(
            str(as_object(doc.get("FromFull")).get("Email") or doc.get("From") or ""), "From"
        )
    except UnusableEmail as err:
        return str(err)
    headers = header_pairs(doc.get("Headers"))
    return InboundEmail(
        provider="postmark",
        event_id=inbound_event_id(str(doc["MessageID"])),
        message_id=header(headers, "Message-ID") or str(doc["MessageID"]),
        sender=sender,
        recipients=_recipients(doc),
        references=f"{header(headers, 'In-Reply-To')} {header(headers, 'References')}".split(),
        headers=headers,
        subject=str(doc.get("Subject") or ""),
        text=str(doc.get("StrippedTextReply") or doc.get("TextBody") or ""),
        date=str(doc.get("Date") or header(headers, "Date")),
        payload=_without_attachment_content(doc),
    )


def _without_attachment_content(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the inbox keeps it: each attachment's name, type and length, not its
    base64 content (megabytes the inbound route now accepts, of no use to a journey; the
    IMAP path and Mailgun's forward keep none either)."""
    attachments = doc.get("Attachments")
    if not isinstance(attachments, list):
        return doc
    kept = [
        {k: v for k, v in item.items() if k != "Content"} if isinstance(item, dict) else item
        for item in attachments
    ]
    return {**doc, "Attachments": kept}


def _recipients(doc: dict[str, Any]) -> list[str]:
    """Every address the message went to, where a reply token may be: OriginalRecipient (the
    address before any forwarding), To, Cc, their parsed forms, and the MailboxHash."""
    out = [str(doc.get(k) or "") for k in ("OriginalRecipient", "To", "Cc", "MailboxHash")]
    for key in ("ToFull", "CcFull"):
        items = doc.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                out.append(str(item.get("Email") or ""))
                out.append(str(item.get("MailboxHash") or ""))
    return [value for value in out if value]
