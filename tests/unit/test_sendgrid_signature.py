"""SendGrid's Event Webhook signature: ECDSA P-256 / SHA-256 over timestamp + raw body."""

from __future__ import annotations

import base64
import time

import pytest

from shared.providers import sendgrid
from shared.providers.sendgrid import (
    InvalidPublicKey,
    generate_key_pair,
    public_key_pem,
    sign_sendgrid,
    verify_sendgrid_signature,
)

PRIVATE, PUBLIC = generate_key_pair()
BODY = sendgrid.batch_body(
    [sendgrid.event("delivered", email="ada@example.com", smtp_id="<a@b>", now=time.time())]
)
TS = "1700000000"


def test_a_signature_made_with_the_private_key_verifies_with_the_der_key() -> None:
    assert verify_sendgrid_signature(PUBLIC, TS, BODY, sign_sendgrid(PRIVATE, TS, BODY))


def test_the_key_may_be_given_as_pem() -> None:
    pem = public_key_pem(PUBLIC)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert verify_sendgrid_signature(pem, TS, BODY, sign_sendgrid(PRIVATE, TS, BODY))


def test_the_signature_covers_the_body_and_the_timestamp() -> None:
    sig = sign_sendgrid(PRIVATE, TS, BODY)
    assert not verify_sendgrid_signature(PUBLIC, TS, BODY + b" ", sig)
    assert not verify_sendgrid_signature(PUBLIC, TS, BODY.replace(b"ada", b"bob"), sig)
    assert not verify_sendgrid_signature(PUBLIC, "1700000001", BODY, sig)


def test_another_key_pair_does_not_verify() -> None:
    other_private, other_public = generate_key_pair()
    assert not verify_sendgrid_signature(PUBLIC, TS, BODY, sign_sendgrid(other_private, TS, BODY))
    assert not verify_sendgrid_signature(other_public, TS, BODY, sign_sendgrid(PRIVATE, TS, BODY))


@pytest.mark.parametrize(
    "signature", [None, "", "not base64!", base64.b64encode(b"garbage").decode(), "AAAA"]
)
def test_missing_or_malformed_signatures_are_refused(signature: str | None) -> None:
    assert not verify_sendgrid_signature(PUBLIC, TS, BODY, signature)


def test_missing_timestamp_or_key_is_refused() -> None:
    sig = sign_sendgrid(PRIVATE, TS, BODY)
    assert not verify_sendgrid_signature(PUBLIC, None, BODY, sig)
    assert not verify_sendgrid_signature(PUBLIC, "", BODY, sig)
    assert not verify_sendgrid_signature("", TS, BODY, sig)


def test_an_unusable_key_is_a_configuration_error_not_a_refusal() -> None:
    with pytest.raises(InvalidPublicKey):
        verify_sendgrid_signature("bm90IGEga2V5", TS, BODY, sign_sendgrid(PRIVATE, TS, BODY))


def test_signed_headers_carry_what_the_webhook_reads() -> None:
    headers = sendgrid.signed_headers(PRIVATE, BODY, now=1700000000.5)
    assert headers[sendgrid.TIMESTAMP_HEADER] == "1700000000"
    assert verify_sendgrid_signature(
        PUBLIC, headers[sendgrid.TIMESTAMP_HEADER], BODY, headers[sendgrid.SIGNATURE_HEADER]
    )
