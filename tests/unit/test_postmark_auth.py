"""Postmark webhooks authenticate with the basic-auth credentials put in their URLs, and
name our message through the metadata of the header we send."""

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


def test_the_message_id_goes_as_metadata_postmark_returns_within_its_limits() -> None:
    message_id = "<0123456789abcdef0123456789abcdef@mail.example.com>"
    header = postmark.message_id_header(message_id)
    assert header == {"X-PM-Metadata-closeflow-msgid": message_id}
    assert len(postmark.MESSAGE_ID_KEY) <= 20  # Postmark's limit for a key
    # what Postmark registers from the headers (folded or not), and returns in an event
    metadata = postmark.metadata_of({"x-pm-metadata-closeflow-msgid": f" {message_id}", "To": "a"})
    assert metadata == {"closeflow-msgid": message_id}
    event = postmark.delivery(recipient="a@b.c", message_id="pm-1", now=0.0, metadata=metadata)
    assert postmark.message_id_of(event) == message_id
    assert postmark.message_id_of({"Metadata": {"CloseFlow-MsgID": message_id}}) == message_id
    assert postmark.message_id_of({"Metadata": None}) == ""
    assert postmark.message_id_of({}) == ""
    # over Postmark's 80 characters a value would be cut: no header rather than a wrong id
    long_domain = "x" * 46 + ".example"
    assert postmark.message_id_header(f"<{'0' * 32}@{long_domain}>") == {}
    assert postmark.message_id_header(f"<{'0' * 32}@{'x' * 45}>") != {}
    assert postmark.message_id_header("") == {}
