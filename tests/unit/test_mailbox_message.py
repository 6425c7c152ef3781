"""A message fetched from the reply mailbox (issue 14), read as the inbound webhooks read theirs:
who sent it, where a reply token may be, what it answers, the writer's own text, its event id."""

from __future__ import annotations

from email.message import EmailMessage

from services.outreach.mailbox.message import inbound_email


def message(**headers: str) -> EmailMessage:
    m = EmailMessage()
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    return m


def test_a_reply_with_its_headers_and_the_quote_left_out() -> None:
    m = message(
        From="Ada Lovelace <Ada@Example.com>",
        To="Rita <rita+r-abcdefghijklmnopqrstuvwxyz@replies.example.com>",
        Subject="Re: Quick question",
        Message_ID="<x1@mail.example>",
        In_Reply_To="<m1@closeflow>",
        References="<m0@closeflow> <m1@closeflow>",
        Auto_Submitted="no",
    )
    m.set_content("Sounds good.\n\nOn Mon, Rita wrote:\n> Hi Ada")
    mail = inbound_email(bytes(m), mailbox="u@h:993/INBOX", uid=7)
    assert mail.provider == "imap"
    assert mail.event_id == "inbound:<x1@mail.example>"
    assert mail.sender == "ada@example.com"
    assert mail.references == ["<m1@closeflow>", "<m0@closeflow>", "<m1@closeflow>"]
    assert any("+r-abcdefghijklmnopqrstuvwxyz@" in r for r in mail.recipients)
    assert ("Auto-Submitted", "no") in mail.headers
    assert mail.text == "Sounds good."
    assert (mail.payload["uid"], mail.payload["mailbox"]) == (7, "u@h:993/INBOX")


def test_html_only_and_without_a_message_id() -> None:
    m = message(From="bob@example.com", To="sales@example.com", Subject="Hello")
    m.set_content("<p>Yes, call me&nbsp;Tuesday.</p><div>Bob</div>", subtype="html")
    raw = bytes(m)
    mail = inbound_email(raw, mailbox="box", uid=1)
    assert mail.text == "Yes, call me\xa0Tuesday.\nBob"
    assert mail.event_id.startswith("sha256:")
    assert inbound_email(raw, mailbox="box", uid=2).event_id == mail.event_id  # same bytes
