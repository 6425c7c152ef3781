"""The name closeflow gives in EHLO: the configured one, else the machine's, looked up once per
sender rather than on every message (aiosmtplib's default is a reverse DNS query per
connection)."""

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.providers.email import SmtpEmail
from tests.support.emails import plain_email
from tests.support.ports import free_port

FROM = "cf <s@closeflow.test>"


class HeloRecorder:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.names.append(str(session.host_name))
        return "250 OK"


@pytest.fixture
async def server() -> AsyncIterator[tuple[HeloRecorder, int]]:
    recorder, port = HeloRecorder(), free_port()
    # the server named: aiosmtpd would look its own name up on each connection
    controller = Controller(recorder, hostname="127.0.0.1", port=port, server_hostname="mx.test")
    await asyncio.to_thread(controller.start)
    yield recorder, port
    await asyncio.to_thread(controller.stop)


async def test_the_configured_helo_name_is_the_one_the_server_sees(server) -> None:
    recorder, port = server
    sender = SmtpEmail("127.0.0.1", port, "", "", "none", FROM, helo_name="mx1.closeflow.test")
    await sender.send(plain_email())
    assert recorder.names == ["mx1.closeflow.test"]


async def test_without_one_the_machines_name_is_looked_up_once(server, monkeypatch) -> None:
    recorder, port = server
    lookups: list[str] = []
    real = socket.getfqdn

    def counted(name: str = "") -> str:
        lookups.append(name)
        return real(name)

    monkeypatch.setattr(socket, "getfqdn", counted)
    sender = SmtpEmail("127.0.0.1", port, "", "", "none", FROM)
    for _ in range(3):
        await sender.send(plain_email())
    assert recorder.names == [real()] * 3
    assert len(lookups) == 1
