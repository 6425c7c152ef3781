"""X-Twilio-Signature: what the sandbox signs, the webhook handlers accept, and nothing else."""

import base64
import hashlib
import hmac

import pytest
from starlette.datastructures import FormData

from shared.providers.twilio_signature import sign_twilio_request, verify_twilio_signature

# The example of Twilio's security documentation, with the signature published there.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

TOKEN = "test-auth-token"
URL = "http://localhost:8002/webhooks/twilio/sms"
PARAMS = {
    "MessageSid": "SM" + "ab" * 16,
    "AccountSid": "AC" + "00" * 16,
    "From": "+15551230001",
    "To": "+15005550006",
    "Body": "Yes, let's talk — Tuesday?",
    "NumMedia": "0",
}


def by_hand(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's algorithm written out: URL + each name and value sorted by name, HMAC-SHA1."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_documented_vector() -> None:
    assert by_hand(DOC_TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    assert sign_twilio_request(DOC_TOKEN, DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    assert verify_twilio_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS, DOC_SIGNATURE)


def test_signature_matches_the_algorithm_by_hand() -> None:
    assert sign_twilio_request(TOKEN, URL, PARAMS) == by_hand(TOKEN, URL, PARAMS)


def test_signed_request_verifies() -> None:
    signature = sign_twilio_request(TOKEN, URL, PARAMS)
    assert verify_twilio_signature(TOKEN, URL, PARAMS, signature)


def test_port_in_url_is_tolerated_either_way() -> None:
    # Twilio signs some requests with the default port in the URL and some without.
    with_port = "https://example.com:443/hook"
    signature = sign_twilio_request(TOKEN, with_port, PARAMS)
    assert verify_twilio_signature(TOKEN, "https://example.com/hook", PARAMS, signature)


def test_multi_dict_form_verifies() -> None:
    form = FormData(list(PARAMS.items()))
    assert verify_twilio_signature(TOKEN, URL, form, sign_twilio_request(TOKEN, URL, PARAMS))


@pytest.mark.parametrize(
    ("token", "url", "params"),
    [
        ("other-token", URL, PARAMS),
        (TOKEN, URL + "?x=1", PARAMS),
        (TOKEN, URL.replace("localhost", "evil.example"), PARAMS),
        (TOKEN, URL, {**PARAMS, "Body": "STOP"}),
        (TOKEN, URL, {**PARAMS, "Extra": ""}),
        (TOKEN, URL, {k: v for k, v in PARAMS.items() if k != "NumMedia"}),
    ],
    ids=["token", "query", "host", "param-value", "param-added", "param-removed"],
)
def test_tampering_fails(token: str, url: str, params: dict[str, str]) -> None:
    signature = sign_twilio_request(TOKEN, URL, PARAMS)
    assert not verify_twilio_signature(token, url, params, signature)


@pytest.mark.parametrize("signature", [None, "", "not-a-signature"])
def test_missing_or_garbage_signature_fails(signature: str | None) -> None:
    assert not verify_twilio_signature(TOKEN, URL, PARAMS, signature)


def test_empty_token_never_verifies() -> None:
    assert not verify_twilio_signature("", URL, PARAMS, sign_twilio_request("", URL, PARAMS))
