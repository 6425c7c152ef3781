"""Postmark webhooks authenticate with the basic-auth credentials put in their URLs."""

from __future__ import annotations

import base64
import time

import pytest

from shared.providers import postmark
from shared.providers.postmark import basic_auth_header, verify_basic_auth


def test_the_configured_pair_passes() -> None:
    header = basic_auth_header("postmark", "s3cret")["Authorization"]
    assert verify_basic_auth("postmark", "s3cret", header)
    assert verify_basic_auth("postmark", "s3cret", header.replace("Basic", "basic"))


def test_a_password_with_a_colon_is_kept_whole() -> None:
    header = basic_auth_header("pm", "a:b:c")["Authorization"]
    assert verify_basic_auth("pm", "a:b:c", header)
    assert not verify_basic_auth("pm", "a", header)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        basic_auth_header("postmark", "wrong")["Authorization"],
        basic_auth_header("someone", "s3cret")["Authorization"],
        "Bearer s3cret",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
)
def test_anything_else_is_refused(header: str | None) -> None:
    assert not verify_basic_auth("postmark", "s3cret", header)


def test_an_empty_password_never_authenticates() -> None:
    assert not verify_basic_auth("", "", basic_auth_header("", "")["Authorization"])


def test_payload_builders_follow_postmarks_documents() -> None:
    now = time.time()
    hard = postmark.bounce(email="a@example.com", message_id="m", now=now)
    assert (hard["RecordType"], hard["Type"], hard["TypeCode"], hard["Inactive"]) == (
        "Bounce",
        "HardBounce",
        1,
        True,
    )
    soft = postmark.bounce(email="a@example.com", message_id="m", now=now, bounce_type="SoftBounce")
    assert (soft["TypeCode"], soft["Inactive"]) == (4096, False)
    assert postmark.delivery(recipient="a@example.com", message_id="m", now=now)["RecordType"] == (
        "Delivery"
    )
    inbound = postmark.inbound(
        from_email="ada@example.com",
        to_email="reply+abc@inbound.example.com",
        subject="Re: hi",
        text="yes\n\n> quoted",
        stripped_reply="yes",
        message_id_header="<r@example.com>",
        in_reply_to="<m@closeflow>",
        references=None,
        now=now,
    )
    assert inbound["MailboxHash"] == "abc"
    assert {"Name": "In-Reply-To", "Value": "<m@closeflow>"} in inbound["Headers"]
