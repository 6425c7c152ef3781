"""One deadline bounds an email's whole SMTP exchange, and the send lease is derived from it.

Each reply has its own timeout (the message's end a longer one), but a server slow at every
step, each within its timeout, kept one send going for their sum: longer than the send lease,
which counted the longest single wait. A retry after the lease then sent the email again while
the first exchange was still under way (services/outreach/send_lease.py)."""

import asyncio
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from shared.providers.email import EmailSendError, SmtpEmail
from tests.support.emails import plain_email
from tests.support.ports import free_port

FROM = "cf <s@closeflow.test>"
STEP = 0.8  # each reply but the last: within the sender's 1 s
AT_THE_DOT = 1.8  # the answer to the message's end: within its 2 s


class SlowAtEveryStep:
    """Answers every command late, each within the client's timeout for it."""

    def __init__(self) -> None:
        self.accepted = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        await asyncio.sleep(STEP)
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(STEP)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(STEP)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(AT_THE_DOT)
        self.accepted += 1
        return "250 OK"


async def test_a_server_slow_at_every_step_is_cut_off_at_the_one_deadline() -> None:
    smtp, port = SlowAtEveryStep(), free_port()
    controller = Controller(smtp, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        sender = SmtpEmail("127.0.0.1", port, "", "", "none", FROM, timeout=1.0, data_timeout=2.0)
        # the steps add up to 3 x 0.8 + 1.8 = 4.2 s, past the whole exchange's deadline
        assert sender.longest_wait < 3 * STEP + AT_THE_DOT
        with pytest.raises(EmailSendError) as unknown:
            await sender.send(plain_email("dora@example.com"))
        assert not unknown.value.not_sent  # it may have gone: the lease's case
    finally:
        await asyncio.to_thread(controller.stop)


def test_the_deadline_leaves_the_message_end_its_whole_wait() -> None:
    """RFC 5321 (4.5.3.2.6) asks for a long wait at the message's end: the deadline gives it
    all of it after the other steps took one reply timeout's worth."""
    sender = SmtpEmail("127.0.0.1", 25, "", "", "none", FROM, timeout=30.0, data_timeout=120.0)
    assert sender.longest_wait == sender.timeout + sender.data_timeout
