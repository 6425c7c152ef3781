import hashlib
import hmac
import json

import pytest

from shared.providers.mailgun import (
    event_payload,
    inbound_form,
    sign_mailgun,
    verify_mailgun_signature,
)

KEY = "key-abc123"
NOW = 1_700_000_000.0
TS = "1700000000"
TOKEN = "a" * 50


def test_known_vector_computed_independently() -> None:
    expected = hmac.new(b"key-abc123", b"1700000000" + b"a" * 50, hashlib.sha256).hexdigest()
    assert sign_mailgun(KEY, TS, TOKEN) == expected
    assert verify_mailgun_signature(KEY, TS, TOKEN, expected, now=NOW)


def test_good_signature() -> None:
    assert verify_mailgun_signature(KEY, TS, TOKEN, sign_mailgun(KEY, TS, TOKEN), now=NOW + 60)


@pytest.mark.parametrize(
    ("timestamp", "token", "key"),
    [("1700000001", TOKEN, KEY), (TS, "b" * 50, KEY), (TS, TOKEN, "other-key")],
)
def test_tampered(timestamp: str, token: str, key: str) -> None:
    signature = sign_mailgun(KEY, TS, TOKEN)
    assert not verify_mailgun_signature(key, timestamp, token, signature, now=NOW)


def test_tampered_signature_and_garbage() -> None:
    good = sign_mailgun(KEY, TS, TOKEN)
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    assert not verify_mailgun_signature(KEY, TS, TOKEN, bad, now=NOW)
    assert not verify_mailgun_signature(KEY, TS, TOKEN, "", now=NOW)
    assert not verify_mailgun_signature(KEY, TS, TOKEN, "é" * 64, now=NOW)
    assert not verify_mailgun_signature(KEY, "not-a-number", TOKEN, good, now=NOW)


def test_stale_and_future_timestamps() -> None:
    signature = sign_mailgun(KEY, TS, TOKEN)
    assert verify_mailgun_signature(KEY, TS, TOKEN, signature, now=NOW + 900)
    assert not verify_mailgun_signature(KEY, TS, TOKEN, signature, now=NOW + 901)
    assert not verify_mailgun_signature(KEY, TS, TOKEN, signature, now=NOW - 901)
    assert not verify_mailgun_signature(KEY, TS, TOKEN, signature, now=NOW + 61, max_age_seconds=60)


def test_empty_key_refused() -> None:
    signature = sign_mailgun("", TS, TOKEN)
    assert not verify_mailgun_signature("", TS, TOKEN, signature, now=NOW)


def test_inbound_form_fields_are_signed() -> None:
    form = inbound_form(
        sender="ada@example.com",
        recipient="sales@closeflow.test",
        subject="Re: Quick question",
        text="Yes, let's talk",
        in_reply_to="<abc@closeflow.test>",
        references="<abc@closeflow.test>",
        message_id="<r1@example.com>",
        signing_key=KEY,
        now=NOW,
        quoted_text="> original",
    )
    for name in (
        "recipient",
        "sender",
        "from",
        "subject",
        "body-plain",
        "stripped-text",
        "Message-Id",
        "In-Reply-To",
        "References",
        "message-headers",
    ):
        assert name in form
    assert form["stripped-text"] == "Yes, let's talk"
    assert form["body-plain"].startswith("Yes, let's talk") and "> original" in form["body-plain"]
    assert len(form["token"]) == 50 and form["timestamp"] == TS
    headers = dict(json.loads(form["message-headers"]))
    assert headers["In-Reply-To"] == "<abc@closeflow.test>"
    assert verify_mailgun_signature(
        KEY, form["timestamp"], form["token"], form["signature"], now=NOW
    )


def test_inbound_form_without_threading_headers() -> None:
    form = inbound_form(
        sender="a@x.test",
        recipient="b@y.test",
        subject="s",
        text="t",
        in_reply_to=None,
        references=None,
        message_id="<m@x.test>",
        signing_key=KEY,
        now=NOW,
    )
    assert "In-Reply-To" not in form and "References" not in form


def test_event_payload_shape() -> None:
    body = event_payload(
        event="failed",
        recipient="ada@example.com",
        message_id="<abc@closeflow.test>",
        event_id="ev1",
        severity="permanent",
        reason="bounce",
        signing_key=KEY,
        now=NOW,
    )
    data = body["event-data"]
    assert data["event"] == "failed" and data["severity"] == "permanent"
    assert data["id"] == "ev1" and data["timestamp"] == NOW
    assert data["message"]["headers"]["message-id"] == "abc@closeflow.test"
    assert data["delivery-status"]["code"] == 550
    sig = body["signature"]
    assert verify_mailgun_signature(KEY, sig["timestamp"], sig["token"], sig["signature"], now=NOW)
    with pytest.raises(ValueError):
        event_payload(
            event="exploded",
            recipient="a@b.test",
            message_id="m",
            event_id="e",
            severity=None,
            reason="",
            signing_key=KEY,
            now=NOW,
        )


@pytest.mark.parametrize("moved", ["e0", "e00", ".0", ".00"])
def test_characters_moved_from_the_token_to_the_timestamp_are_refused(moved: str) -> None:
    """The signature covers timestamp + token as one string: a captured request whose token
    starts with `e0` (or `.0`) re-split as timestamp + "e0", token[2:] signs the same, reads
    as the same time through float(), and carries a token the replay check never saw."""
    token = moved + "f" * 48
    signature = sign_mailgun(KEY, TS, token)
    assert verify_mailgun_signature(KEY, TS, token, signature, now=NOW)
    resplit_ts, resplit_token = TS + moved, token[len(moved) :]
    assert sign_mailgun(KEY, resplit_ts, resplit_token) == signature
    assert not verify_mailgun_signature(KEY, resplit_ts, resplit_token, signature, now=NOW)
