"""SendGrid's Event Webhook: the ECDSA signature check, and the payloads SendGrid posts.

SendGrid signs each POST with its private key (ECDSA P-256, SHA-256) over the value of the
X-Twilio-Email-Event-Webhook-Timestamp header followed by the raw request body, and sends the
base64 DER signature in X-Twilio-Email-Event-Webhook-Signature. The account's verification key
is shown as base64 DER (SubjectPublicKeyInfo); a PEM block is accepted too. The body is a JSON
array of up to about a thousand events, each with its own `sg_event_id`.

The signing side exists so the tests (and nothing else) speak exactly what production receives.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
EVENTS = (
    "processed",
    "deferred",
    "delivered",
    "bounce",
    "dropped",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
    "open",
    "click",
)


class InvalidPublicKey(ValueError):
    pass


@lru_cache(maxsize=8)
def load_public_key(key: str) -> ec.EllipticCurvePublicKey:
    """The key as SendGrid shows it (base64 DER), or a PEM block."""
    text = key.strip()
    try:
        if text.startswith("-----BEGIN"):
            loaded = serialization.load_pem_public_key(text.encode())
        else:
            loaded = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as err:
        raise InvalidPublicKey(f"not a base64 DER or PEM public key: {err}") from err
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise InvalidPublicKey("the SendGrid verification key must be an elliptic-curve key")
    return loaded


def verify_sendgrid_signature(
    public_key: str, timestamp: str | None, body: bytes, signature: str | None
) -> bool:
    if not public_key or not timestamp or not signature:
        return False
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    try:
        load_public_key(public_key).verify(
            raw_signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        return False
    return True


def timestamp_problem(
    timestamp: str | None, *, now: float, max_age_seconds: int, max_ahead_seconds: int
) -> str | None:
    """Why a (signed) timestamp header is outside the accepted window; None when inside. The
    signature covers it, so bounding it bounds when a captured batch can be replayed. SendGrid
    signs every attempt anew: its retries carry a fresh timestamp, old events inside them do
    not matter here."""
    try:
        sent = int(timestamp or "")
    except ValueError:
        return f"{TIMESTAMP_HEADER} is not a Unix time"
    if sent < now - max_age_seconds:
        return f"{TIMESTAMP_HEADER} is more than {max_age_seconds} s old: a replayed batch?"
    if sent > now + max_ahead_seconds:
        return f"{TIMESTAMP_HEADER} is more than {max_ahead_seconds} s in the future"
    return None


# --- the sending side: keys, signatures and payloads as SendGrid makes them --------------------


def generate_key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A private key and its public half as SendGrid's settings page shows it (base64 DER)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def public_key_pem(public_key: str) -> str:
    return (
        load_public_key(public_key)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_sendgrid(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    signature = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def signed_headers(
    private_key: ec.EllipticCurvePrivateKey, body: bytes, now: float
) -> dict[str, str]:
    timestamp = str(int(now))
    return {
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign_sendgrid(private_key, timestamp, body),
    }


def new_event_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def event(
    kind: str,
    *,
    email: str,
    smtp_id: str,
    now: float,
    event_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One event as SendGrid posts it; smtp_id is the message's Message-ID, angle brackets on.

    Extra fields by kind: bounce `type` ("bounce" = hard, "blocked"), `reason`, `status`;
    dropped `reason`; delivered `response`; click `url`; group_unsubscribe `asm_group_id`.
    """
    if kind not in EVENTS:
        raise ValueError(f"event must be one of {EVENTS}, not {kind!r}")
    item: dict[str, Any] = {
        "email": email,
        "timestamp": int(now),
        "smtp-id": smtp_id,
        "event": kind,
        "category": ["closeflow"],
        "sg_event_id": event_id or new_event_id(),
        "sg_message_id": f"{secrets.token_hex(11)}.filterdrecv-{secrets.token_hex(4)}.0",
    }
    if kind in ("open", "click"):
        item.update(useragent="Mozilla/5.0", ip="192.0.2.10")
    if kind == "bounce":
        item.update(type="bounce", reason="550 5.1.1 The email account does not exist")
        item.update(status="5.1.1", bounce_classification="Invalid Address")
    if kind == "delivered":
        item.update(response="250 2.0.0 OK", ip="192.0.2.1", tls=1)
    item.update(fields)
    return item


def batch_body(events: list[Any]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()
