"""No address or phone number in a log line, whoever writes it.

closeflow's own messages hold ids; the lines other code writes do not ask. The Temporal SDK logs
every failed activity attempt at WARNING with its traceback ("Completing activity as failed"),
and a send refused for now carries the server's answer, which names the recipient
("450 4.2.2 <ada@example.com>: mailbox full"), as Twilio's errors name the number ("The 'To'
number +14155550100 is not a valid phone number"): every attempt put the prospect's address
in the worker's log."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import temporalio.activity
from aiosmtpd.controller import Controller
from twilio.base.exceptions import TwilioRestException

from shared.logging import JsonLines, Redacting
from shared.providers.email import EmailSendError, OutgoingEmail, SmtpEmail
from tests.support.ports import free_port

ADDRESS = "ada.lovelace@example.com"
PHONE = "+14155550100"


class MailboxFull:
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return f"450 4.2.2 <{address}>: mailbox full"


@contextlib.asynccontextmanager
async def refusing_smtp() -> AsyncIterator[int]:
    port = free_port()
    controller = Controller(MailboxFull(), hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield port
    finally:
        await asyncio.to_thread(controller.stop)


@contextlib.contextmanager
def closeflow_lines(json_lines: bool) -> Iterator[io.StringIO]:
    """What the root handler of configure_logging writes, in either format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines() if json_lines else Redacting("%(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "text"])
async def test_a_refused_send_logged_by_the_sdk_names_nobody(json_lines: bool) -> None:
    async with refusing_smtp() as port:
        smtp = SmtpEmail("127.0.0.1", port, "", "", "none", "sales@closeflow.example")
        mail = OutgoingEmail(ADDRESS, "Hi", "Hello", "<p>Hello</p>", "<m-1@closeflow.example>", "")
        with pytest.raises(EmailSendError) as refused:
            await smtp.send(mail)
    assert ADDRESS in str(refused.value.__cause__), "the server's answer names the recipient"
    twilio = TwilioRestException(400, "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
                                 f"The 'To' number {PHONE} is not a valid phone number.", 21211)  # fmt: skip
    with closeflow_lines(json_lines) as lines:
        for error in (refused.value, twilio):
            try:
                raise error
            except Exception:  # as the SDK logs a failed attempt
                temporalio.activity.logger.warning("Completing activity as failed", exc_info=True)
        logging.getLogger("closeflow.test").error("gave up: %s", twilio)
    written = lines.getvalue()
    assert "Completing activity as failed" in written and "mailbox full" in written
    assert ADDRESS not in written and "ada.lovelace" not in written
    assert PHONE not in written and "4155550100" not in written
    assert "@example.com" in written, "the domain stays: which provider refused is worth knowing"
