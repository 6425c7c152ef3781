"""A message fetched from the reply mailbox, read as the inbound webhooks read theirs.

Mailgun and Postmark hand over a parsed message (with the quoted original stripped); here the
raw RFC 5322 bytes are parsed with the standard library. What dedupes it is its Message-ID (the
same `inbound:<Message-ID>` event id the webhooks use); a message without one gets the hash of
its bytes, so the same copy seen twice is still one event.
"""

from __future__ import annotations

import hashlib
import html
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from services.outreach.webhooks.common import InboundEmail
from services.outreach.webhooks.replies import own_text

PROVIDER = "imap"
EXCERPT_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To")
_TAG = re.compile(r"<[^>]*>")
_BLOCK_END = re.compile(r"</(?:p|div|tr|li|h\d)>|<br\s*/?>", re.I)


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


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (IndexError, ValueError):  # a header the parser cannot read
        return ""
    return str(value or "").strip()


def event_id_of(raw: bytes, message_id: str) -> str:
    if message_id:
        return f"inbound:{message_id}"
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def inbound_email(raw: bytes, *, mailbox: str, uid: int) -> InboundEmail:
    """The message as every inbound path hands it to receive_email."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
    headers = [(name, str(value)) for name, value in message.items()]
    message_id = _header(message, "Message-ID")
    text = _text(message)
    own = own_text(text).strip()
    payload: dict[str, Any] = {
        "mailbox": mailbox,
        "uid": uid,
        "size": len(raw),
        **{name: _header(message, name) for name in EXCERPT_HEADERS},
        "text": text[:5000],
    }
    return InboundEmail(
        provider=PROVIDER,
        event_id=event_id_of(raw, message_id),
        message_id=message_id,
        sender=parseaddr(_header(message, "From"))[1].strip().lower(),
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
    )
