"""Addresses at internationalized domains, as people give them (`info@bäckerei-müller.de`;
shared.people keeps that form), sent through a server that does not offer SMTPUTF8: the domain
goes in its ASCII form, which every server takes. aiosmtplib refused the address before MAIL
FROM, and the failure read as an outcome unknown (retried as if the email may have gone). An
address whose local part is not ASCII has no such form: refused for good, nothing sent."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.providers.email import EmailSendError, SmtpEmail
from tests.support.emails import plain_email
from tests.support.ports import free_port


class Recorder:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos), raw))
        return "250 OK"


@pytest.fixture
async def without_smtputf8() -> AsyncIterator[tuple[Recorder, int]]:
    recorder, port = Recorder(), free_port()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=port, server_hostname="mx.test", enable_SMTPUTF8=False
    )
    await asyncio.to_thread(controller.start)
    yield recorder, port
    await asyncio.to_thread(controller.stop)


async def test_an_internationalized_domain_goes_in_its_ascii_form(without_smtputf8) -> None:
    recorder, port = without_smtputf8
    sender = SmtpEmail("127.0.0.1", port, "", "", "none", "Ann Bäcker <ann@verkauf-süd.de>")
    await sender.send(plain_email(to="Jürgen <info@bäckerei-müller.de>"))
    [(mail_from, rcpt_tos, raw)] = recorder.envelopes
    assert mail_from == "ann@xn--verkauf-sd-ieb.de"
    assert rcpt_tos == ["info@xn--bckerei-mller-bfb28a.de"]
    assert b"<info@xn--bckerei-mller-bfb28a.de>" in raw and raw.isascii()
    assert "@xn--verkauf-sd-ieb.de>" in sender.new_message_id()


async def test_a_local_part_that_is_not_ascii_is_refused_for_good(without_smtputf8) -> None:
    recorder, port = without_smtputf8
    sender = SmtpEmail("127.0.0.1", port, "", "", "none", "ann@sales.example.com")
    with pytest.raises(EmailSendError, match="SMTPUTF8") as refused:
        await sender.send(plain_email(to="müller@bäckerei.de"))
    assert (refused.value.permanent, refused.value.not_sent) == (True, True)
    assert recorder.envelopes == []
