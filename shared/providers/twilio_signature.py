"""X-Twilio-Signature: Twilio's HMAC-SHA1 over the URL plus the sorted form parameters.

Both sides go through the official `RequestValidator`, so the sandbox signs exactly what the
webhook handlers verify, and both match what Twilio itself sends.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def verify_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str | None
) -> bool:
    """url: the full URL Twilio requested (scheme, host, path, query), as configured there.

    params may be a multi-dict (starlette's FormData): the validator signs every repeated value.
    """
    if not auth_token or not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, params, signature))


def sign_twilio_request(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, params))
