"""A message fetched from the reply mailbox, read as the inbound webhooks read theirs.

Mailgun and Postmark hand over a parsed message (with the quoted original stripped); here the
raw RFC 5322 bytes are parsed with the standard library. What dedupes it is its Message-ID (the
same `inbound:<Message-ID>` event id the webhooks use); a message without one gets the hash of
its bytes, so the same copy seen twice is still one event. A bounce (a delivery status
notification, RFC 3464) carries what it reports (`bounce_of`): the event a provider's webhook
would have sent, once receive_email finds that it names one of our sends. A message with an
address longer than any column holds raises UnusableEmail here, where it enters.
"""

from __future__ import annotations

import hashlib
import html
import re
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage, Message
from email.utils import parseaddr
from typing import Any

from services.outreach.webhooks.common import (
    HARD_BOUNCE,
    NOTED,
    SOFT_FAILURE,
    Bounce,
    InboundEmail,
    inbound_address,
    inbound_event_id,
)
from services.outreach.webhooks.replies import own_text

PROVIDER = "imap"
EXCERPT_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To")
_TAG = re.compile(r"<[^>]*>")
_BLOCK_END = re.compile(r"</(?:p|div|tr|li|h\d)>|<br\s*/?>", re.I)
DSN_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


def _text(message: EmailMessage) -> str:
    """The body as plain text: the text/plain part, else the HTML one with its tags removed."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        content = html.unescape(_TAG.sub("", _BLOCK_END.sub("\n", content)))
    return content.replace("\r\n", "\n").strip()


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (IndexError, ValueError):  # a header the parser cannot read
        return ""
    return str(value or "").strip()


def _part(message: EmailMessage, content_type: str) -> Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _returned_id(message: EmailMessage) -> list[str]:
    """The Message-ID of the original a bounce returns (its headers, or the whole message)."""
    headers = _part(message, "text/rfc822-headers")
    if headers is not None:
        payload = headers.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        original: Message | None = message_from_string(text, policy=policy.default)
    else:
        whole = _part(message, "message/rfc822")
        inner = whole.get_payload() if whole is not None else None
        first = inner[0] if isinstance(inner, list) and inner else None
        original = first if isinstance(first, Message) else None
    found = _header(original, "Message-ID") if original is not None else ""
    return [found] if found else []


def bounce_of(message: EmailMessage) -> Bounce | None:
    """What a delivery status notification (RFC 3464) reports of its first recipient (we send
    each email to one); None for any other message. A permanent failure (5.x.x) is a hard
    bounce; any other failure a message lost; a delay or a relay only noted."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return None
    report = _part(message, "message/delivery-status")
    # its per-message fields, then a block of fields per recipient
    blocks = report.get_payload() if report is not None else None
    if not isinstance(blocks, list) or len(blocks) < 2 or not isinstance(blocks[1], Message):
        return None
    fields = blocks[1]
    action = _header(fields, "Action").lower()
    if action not in DSN_ACTIONS:
        return None
    final = _header(fields, "Final-Recipient") or _header(fields, "Original-Recipient")
    status = _header(fields, "Status")[:20]
    if action != "failed":
        meaning = NOTED
    else:
        meaning = HARD_BOUNCE if status.startswith("5") else SOFT_FAILURE
    return Bounce(
        action=action,
        recipient=inbound_address(parseaddr(final.rpartition(";")[2])[1], "Final-Recipient"),
        meaning=meaning,
        status=status,
        detail=(_header(fields, "Diagnostic-Code") or status)[:1000],
        message_ids=_returned_id(message),
    )


def event_id_of(raw: bytes, message_id: str) -> str:
    if message_id:
        return inbound_event_id(message_id)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def inbound_email(raw: bytes, *, mailbox: str, uid: int, size: int | None = None) -> InboundEmail:
    """The message as every inbound path hands it to receive_email (`raw` may be its start
    only: `size` is the whole message's). UnusableEmail (a ValueError) when an address in it is
    longer than any real one: the watcher sets such a message aside."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
    headers = [(name, str(value)) for name, value in message.items()]
    message_id = _header(message, "Message-ID")
    text = _text(message)
    own = own_text(text).strip()
    payload: dict[str, Any] = {
        "mailbox": mailbox,
        "uid": uid,
        "size": len(raw) if size is None else size,
        **{name: _header(message, name) for name in EXCERPT_HEADERS},
        "text": text[:5000],
    }
    return InboundEmail(
        provider=PROVIDER,
        event_id=event_id_of(raw, message_id),
        message_id=message_id,
        sender=inbound_address(parseaddr(_header(message, "From"))[1], "From"),
        # where a reply token may be: the addresses it was sent to, and where it was delivered
        recipients=[
            _header(message, name)
            for name in ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
            if _header(message, name)
        ],
        references=f"{_header(message, 'In-Reply-To')} {_header(message, 'References')}".split(),
        headers=headers,
        subject=_header(message, "Subject"),
        text=own or text,
        date=_header(message, "Date"),
        payload=payload,
        bounce=bounce_of(message),
    )
