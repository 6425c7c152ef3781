import re
from email import message_from_bytes, policy

import pytest

from shared.providers.email import (
    OutgoingEmail,
    SmtpEmail,
    address_domain,
    build_mime,
    new_message_id,
)
from shared.settings import Settings

FROM = "closeflow <sales@closeflow.test>"


def _msg(**overrides: object) -> OutgoingEmail:
    fields: dict[str, object] = {
        "to": "Ada Lovelace <ada@example.com>",
        "subject": "Quick question",
        "text": "Hello Ada,\nplain part",
        "html": "<p>Hello <b>Ada</b></p>",
        "message_id": "<abc123@closeflow.test>",
        "unsubscribe_url": "https://out.closeflow.test/u/tok123",
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)  # type: ignore[arg-type]


def _roundtrip(msg: OutgoingEmail):
    return message_from_bytes(build_mime(msg, FROM).as_bytes(), policy=policy.default)


def test_headers_and_rfc8058_values() -> None:
    parsed = _roundtrip(_msg())
    assert parsed["Message-ID"] == "<abc123@closeflow.test>"
    assert parsed["From"] == FROM
    assert parsed["To"] == "Ada Lovelace <ada@example.com>"
    assert parsed["Subject"] == "Quick question"
    assert parsed["Date"].datetime is not None
    assert parsed["List-Unsubscribe"] == "<https://out.closeflow.test/u/tok123>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Reply-To"] is None


def test_both_alternatives() -> None:
    parsed = _roundtrip(_msg())
    assert parsed.get_content_type() == "multipart/alternative"
    types = [p.get_content_type() for p in parsed.iter_parts()]
    assert types == ["text/plain", "text/html"]
    assert parsed.get_body(("plain",)).get_content().strip() == "Hello Ada,\nplain part"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hello <b>Ada</b></p>"


def test_reply_to_and_extra_headers() -> None:
    parsed = _roundtrip(
        _msg(reply_to="replies+j1@closeflow.test", headers={"X-Closeflow-Step": "j1:0:email"})
    )
    assert parsed["Reply-To"] == "replies+j1@closeflow.test"
    assert parsed["X-Closeflow-Step"] == "j1:0:email"


def test_extra_header_replaces_rather_than_duplicates() -> None:
    mime = build_mime(_msg(headers={"Subject": "Override"}), FROM)
    assert mime.get_all("Subject") == ["Override"]


def test_a_line_break_in_the_subject_injects_no_header() -> None:
    """The subject is put on one line (a value imported from a two-line cell), so what follows a
    line break stays subject text: no Bcc header is added."""
    built = build_mime(_msg(subject="hi\r\nBcc: victim@example.com"), FROM)
    assert built["Bcc"] is None
    assert built["Subject"] == "hi Bcc: victim@example.com"
    assert b"\r\nBcc:" not in built.as_bytes() and b"\nBcc:" not in built.as_bytes()


def test_new_message_id_format() -> None:
    first, second = new_message_id("closeflow.test"), new_message_id("closeflow.test")
    assert re.fullmatch(r"<[0-9a-f]{32}@closeflow\.test>", first)
    assert first != second


def test_address_domain() -> None:
    assert address_domain(FROM) == "closeflow.test"
    with pytest.raises(ValueError):
        address_domain("nobody")


def test_from_settings_and_repr_hide_password() -> None:
    settings = Settings(
        smtp_host="mx.test",
        smtp_port=2525,
        smtp_username="u",
        smtp_password="s3cret-pass",
        smtp_tls="starttls",
        email_from=FROM,
    )
    sender = SmtpEmail.from_settings(settings)
    assert (sender.host, sender.port, sender.tls, sender.username) == (
        "mx.test",
        2525,
        "starttls",
        "u",
    )
    assert sender.domain == "closeflow.test"
    assert "s3cret-pass" not in repr(sender)
    assert "s3cret-pass" not in str(vars(sender).get("password", ""))


def test_invalid_tls_mode() -> None:
    with pytest.raises(ValueError):
        SmtpEmail("h", 25, "", "", "ssl", FROM)  # type: ignore[arg-type]
