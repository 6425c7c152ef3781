"""Booking links (issue 14): a prospect's personal link to their rep's free slots.

Links are `<CLOSEFLOW_DEALS_PUBLIC_URL>/book/<token>` with a short random token that deals stores
with what it allows (services/deals/meetings/links.py; outreach asks deals for one when it renders
`{{ booking_link }}`). This module keeps the claim they resolve to and the signed tokens issued
before (about 250 characters): base64url(JSON of the prospect id, the rep id, the journey run,
an expiry, the prospect's zone and source) "." base64url(HMAC-SHA256 with
CLOSEFLOW_BOOKING_LINK_SECRET, 128 bits). Those keep working until they expire; rotating the
secret revokes them all at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from shared.auth import secrets_match

SIGNATURE_BYTES = 16
BOOKING_PATH = "/book/"


@dataclass(frozen=True)
class BookingClaim:
    prospect_id: str
    rep_id: str
    journey_key: str  # the journey run the link went out in (its deal's key)
    expires: int  # unix seconds
    zone: str = "UTC"  # the prospect's time zone: the page shows the slots in it
    source: str = "cold"  # the prospect's source, for a deal the booking opens


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, body: str) -> str:
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return _b64(digest[:SIGNATURE_BYTES])


def sign(secret: str, claim: BookingClaim) -> str:
    body = _b64(
        json.dumps(
            {
                "p": claim.prospect_id,
                "r": claim.rep_id,
                "j": claim.journey_key,
                "e": claim.expires,
                "z": claim.zone,
                "s": claim.source,
            },
            separators=(",", ":"),
        ).encode()
    )
    return f"{body}.{_signature(secret, body)}"


def verify(secret: str, token: str, now: float | None = None) -> BookingClaim | None:
    """The claim of a genuine, unexpired token; None for anything else."""
    body, dot, signature = token.partition(".")
    if not dot or len(token) > 600:
        return None
    if not secrets_match(_signature(secret, body), signature):
        return None
    try:
        data = json.loads(_unb64(body))
        claim = BookingClaim(
            str(data["p"]),
            str(data["r"]),
            str(data["j"]),
            int(data["e"]),
            str(data.get("z") or "UTC"),
            str(data.get("s") or "cold"),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if claim.expires < (time.time() if now is None else now):
        return None
    return claim
