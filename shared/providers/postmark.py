"""Postmark's webhooks: HTTP basic auth, and the JSON documents Postmark posts.

Postmark signs nothing: a webhook is authenticated by the credentials put in its URL
(`https://user:password@host/path`), which arrive as an `Authorization: Basic` header. Outbound
events (Bounce, SpamComplaint, Delivery, Open, Click, SubscriptionChange) share one URL and say
what they are in `RecordType`; inbound email has its own webhook. The builders below make the
documents of Postmark's webhook reference so the tests speak exactly what production receives.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from shared.settings import Settings

RECORD_TYPES = ("Bounce", "SpamComplaint", "Delivery", "Open", "Click", "SubscriptionChange")
# Bounce types after which the address will never take mail (Postmark deactivates it too).
HARD_BOUNCE_TYPES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
BOUNCE_TYPE_CODES = {
    "HardBounce": 1,
    "Transient": 2,
    "Unsubscribe": 16,
    "AutoResponder": 64,
    "DnsError": 256,
    "SpamNotification": 512,
    "SoftBounce": 4096,
    "BadEmailAddress": 100000,
    "SpamComplaint": 100001,
    "ManuallyDeactivated": 100002,
    "Blocked": 100006,
}


# Custom metadata: Postmark turns every `X-PM-Metadata-<key>` header of a message sent through it
# into a metadata field (and strips the header), then returns the fields in every webhook event
# about that message. Its events' own MessageID is an id Postmark assigns, not our Message-ID:
# the field below is what names our ledger row in them. Postmark's limits: keys of 20
# characters, values of 80.
METADATA_HEADER_PREFIX = "X-PM-Metadata-"
MESSAGE_ID_KEY = "closeflow-msgid"
MAX_METADATA_VALUE = 80


def message_id_header(message_id: str) -> dict[str, str]:
    """The header that has Postmark return `message_id` in its events about the message; none
    when it is longer than Postmark keeps (a sender domain over 45 characters)."""
    if not message_id or len(message_id) > MAX_METADATA_VALUE:
        return {}
    return {METADATA_HEADER_PREFIX + MESSAGE_ID_KEY: message_id}


def tracking_header(settings: Settings, message_id: str) -> dict[str, str]:
    """message_id_header while Postmark's webhooks are configured (their password set): only
    then does anything read the metadata back."""
    if not settings.postmark_webhook_password.get_secret_value():
        return {}
    return message_id_header(message_id)


def metadata_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The metadata Postmark registers for a message with these headers."""
    prefix = METADATA_HEADER_PREFIX.lower()
    return {
        name[len(prefix) :]: value.strip()  # a folded header's value starts with a space
        for name, value in headers.items()
        if name.lower().startswith(prefix) and len(name) > len(prefix)
    }


def message_id_of(doc: Mapping[str, Any]) -> str:
    """Our Message-ID as an event's metadata carries it, or ''."""
    metadata = doc.get("Metadata")
    if not isinstance(metadata, Mapping):
        return ""
    for key, value in metadata.items():
        if str(key).lower() == MESSAGE_ID_KEY:
            return str(value).strip()
    return ""


def verify_basic_auth(user: str, password: str, authorization: str | None) -> bool:
    if not password or not authorization:
        return False
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (ValueError, binascii.Error):
        return False
    got_user, sep, got_password = decoded.partition(b":")
    if not sep:
        return False
    # both compared every time, so the time taken says nothing about which one was wrong
    user_ok = hmac.compare_digest(got_user, user.encode())
    password_ok = hmac.compare_digest(got_password, password.encode())
    return user_ok and password_ok


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")


def new_message_id() -> str:
    """Postmark's MessageID: a UUID it assigns (not the Message-ID header)."""
    return str(uuid.uuid4())


def bounce(
    *,
    email: str,
    message_id: str,
    now: float,
    bounce_type: str = "HardBounce",
    bounce_id: int | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    hard = bounce_type in HARD_BOUNCE_TYPES
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": bounce_id or secrets.randbelow(10**12),
        "Type": bounce_type,
        "TypeCode": BOUNCE_TYPE_CODES.get(bounce_type, 2048),
        "Name": "Hard bounce" if hard else "Soft bounce",
        "Tag": "cadence",
        "MessageID": message_id,
        "Metadata": metadata or {},
        "ServerID": 23,
        "Description": (
            "The server was unable to deliver your message (ex: unknown user, mailbox not found)."
            if hard
            else "Unable to temporarily deliver this email."
        ),
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "sales@closeflow.localhost",
        "BouncedAt": _iso(now),
        "DumpAvailable": True,
        "Inactive": hard,
        "CanActivate": True,
        "Subject": "Quick question",
        "Content": "",
    }


def spam_complaint(
    *,
    email: str,
    message_id: str,
    now: float,
    complaint_id: int | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": complaint_id or secrets.randbelow(10**12),
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "cadence",
        "MessageID": message_id,
        "Metadata": metadata or {},
        "ServerID": 23,
        "Description": "",
        "Details": "Test spam complaint details",
        "Email": email,
        "From": "sales@closeflow.localhost",
        "BouncedAt": _iso(now),
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Quick question",
        "Content": "<Abuse report dump>",
    }


def delivery(
    *, recipient: str, message_id: str, now: float, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": recipient,
        "Tag": "cadence",
        "DeliveredAt": _iso(now),
        "Details": "smtp;250 2.0.0 OK 1480624905 l186si10190883ite.73 - gsmtp",
        "Metadata": metadata or {},
    }


def subscription_change(
    *,
    recipient: str,
    message_id: str,
    now: float,
    suppress: bool = True,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": message_id,
        "ServerID": 23,
        "MessageStream": "outbound",
        "ChangedAt": _iso(now),
        "Recipient": recipient,
        "Origin": "Recipient",
        "SuppressSending": suppress,
        "SuppressionReason": "ManualSuppression" if suppress else None,
        "Tag": "cadence",
        "Metadata": metadata or {},
    }


def inbound(
    *,
    from_email: str,
    to_email: str,
    subject: str,
    text: str,
    stripped_reply: str,
    message_id_header: str,
    in_reply_to: str | None,
    references: str | None,
    now: float,
    from_name: str = "",
    extra_headers: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """An inbound email as the inbound webhook posts it (MessageID is Postmark's own UUID)."""
    mailbox_hash = to_email.partition("@")[0].partition("+")[2]
    headers = [
        {"Name": "Return-Path", "Value": f"<{from_email}>"},
        {"Name": "Received", "Value": f"by p-pm-inboundg01a.mta.postmarkapp.com; {now}"},
        {"Name": "X-Spam-Status", "Value": "No"},
        {"Name": "X-Spam-Score", "Value": "-0.1"},
        {"Name": "Message-ID", "Value": message_id_header},
        {"Name": "MIME-Version", "Value": "1.0"},
    ]
    if in_reply_to:
        headers.append({"Name": "In-Reply-To", "Value": in_reply_to})
    if references:
        headers.append({"Name": "References", "Value": references})
    headers += [{"Name": n, "Value": v} for n, v in extra_headers or []]
    recipient = {"Email": to_email, "Name": "", "MailboxHash": mailbox_hash}
    return {
        "FromName": from_name,
        "MessageStream": "inbound",
        "From": from_email,
        "FromFull": {"Email": from_email, "Name": from_name, "MailboxHash": ""},
        "To": to_email,
        "ToFull": [recipient],
        "Cc": "",
        "CcFull": [],
        "Bcc": "",
        "BccFull": [],
        "OriginalRecipient": to_email,
        "Subject": subject,
        "MessageID": new_message_id(),
        "ReplyTo": "",
        "MailboxHash": mailbox_hash,
        "Date": formatdate(now),
        "TextBody": text,
        "HtmlBody": "",
        "StrippedTextReply": stripped_reply,
        "Tag": "",
        "Headers": headers,
        "Attachments": [],
    }
