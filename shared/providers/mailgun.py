"""Mailgun's webhook formats: signature check, and the payloads Mailgun posts.

Inbound replies arrive as the form a route's forward() action posts; delivery events arrive as
JSON {"signature": {...}, "event-data": {...}}. Both are signed the same way: hex HMAC-SHA256 of
timestamp + token keyed with the webhook signing key. The payload builders exist so the dev
mailbox and the tests speak exactly what production receives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from email.utils import formatdate
from typing import Any

from shared.auth import secrets_match

PERMANENT = "permanent"
TEMPORARY = "temporary"
EVENTS = ("accepted", "delivered", "failed", "complained", "unsubscribed")


def sign_mailgun(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def verify_mailgun_signature(
    signing_key: str,
    timestamp: str,
    token: str,
    signature: str,
    *,
    now: float,
    max_age_seconds: int = 900,
    max_ahead_seconds: int = 900,
) -> bool:
    if not signing_key or not token or not signature:
        return False
    # Mailgun's timestamp is whole seconds, digits only. float() also read "1700000000e0": the
    # signed string is timestamp + token, so a captured request could move characters from its
    # token to its timestamp, keep the signature, and pass the token's replay check as new
    if not (isinstance(timestamp, str) and timestamp.isascii() and timestamp.isdigit()):
        return False
    ts = float(timestamp)
    # A captured request must not be replayable later, nor pre-signed for the future.
    if ts < now - max_age_seconds or ts > now + max_ahead_seconds:
        return False
    expected = sign_mailgun(signing_key, timestamp, token)
    return secrets_match(expected, signature)


def _signature_fields(signing_key: str, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    token = secrets.token_hex(25)  # Mailgun's tokens are 50 characters
    return {
        "timestamp": timestamp,
        "token": token,
        "signature": sign_mailgun(signing_key, timestamp, token),
    }


def strip_angle_brackets(message_id: str) -> str:
    return message_id.strip().removeprefix("<").removesuffix(">")


def inbound_form(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    in_reply_to: str | None,
    references: str | None,
    message_id: str,
    signing_key: str,
    now: float,
    from_header: str | None = None,
    to_header: str | None = None,
    quoted_text: str = "",
) -> dict[str, str]:
    """Fields of a parsed-message forward() POST.

    from_header / to_header default to the bare sender / recipient; quoted_text is the quoted
    original that mail clients append, present in body-plain but removed from stripped-text.
    """
    from_value = from_header or sender
    to_value = to_header or recipient
    body_plain = f"{text}\n\n{quoted_text}" if quoted_text else text
    date = formatdate(now, usegmt=True)
    headers: list[list[str]] = [
        ["Received", f"by mxa.mailgun.org with SMTP; {date}"],
        ["From", from_value],
        ["To", to_value],
        ["Subject", subject],
        ["Date", date],
        ["Message-Id", message_id],
    ]
    if in_reply_to:
        headers.append(["In-Reply-To", in_reply_to])
    if references:
        headers.append(["References", references])
    headers += [["Mime-Version", "1.0"], ["Content-Type", 'text/plain; charset="utf-8"']]

    form: dict[str, str] = {
        "recipient": recipient,
        "sender": sender,
        "from": from_value,
        "subject": subject,
        "body-plain": body_plain,
        "stripped-text": text,
        # Mailgun also posts each MIME header as a field of its own name
        "From": from_value,
        "To": to_value,
        "Subject": subject,
        "Date": date,
        "Message-Id": message_id,
        "message-headers": json.dumps(headers),
    }
    if in_reply_to:
        form["In-Reply-To"] = in_reply_to
    if references:
        form["References"] = references
    form.update(_signature_fields(signing_key, now))
    return form


def event_payload(
    *,
    event: str,
    recipient: str,
    message_id: str,
    event_id: str,
    severity: str | None,
    reason: str,
    signing_key: str,
    now: float,
    description: str = "",
) -> dict[str, Any]:
    """JSON body of an event webhook. message_id may carry angle brackets; Mailgun's has none."""
    if event not in EVENTS:
        raise ValueError(f"event must be one of {EVENTS}, not {event!r}")
    data: dict[str, Any] = {
        "event": event,
        "id": event_id,
        "timestamp": now,
        "log-level": {"accepted": "info", "delivered": "info", "failed": "error"}.get(
            event, "warn"
        ),
        "recipient": recipient,
        "recipient-domain": recipient.rpartition("@")[2] if "@" in recipient else "",
        "reason": reason,
        "message": {"headers": {"message-id": strip_angle_brackets(message_id), "to": recipient}},
        "tags": [],
        "user-variables": {},
    }
    if severity is not None:
        data["severity"] = severity
    if event == "failed":
        permanent = severity == PERMANENT
        data["delivery-status"] = {
            "attempt-no": 1,
            "code": 550 if permanent else 421,
            "message": description or reason,
            "description": description or reason,
        }
    return {"signature": _signature_fields(signing_key, now), "event-data": data}
