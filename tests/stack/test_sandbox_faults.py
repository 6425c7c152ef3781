"""The provider sandboxes' fault switch (make chaos): a provider that answers errors, or holds
its calls for a while, set over HTTP and over when its time is up."""

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from devstack.sandbox import twilio_server
from devstack.sandbox.faults import FAULTS_PATH, FaultSwitch
from devstack.sandbox.mailbox import Mailbox, create_app, start_smtp
from shared.providers.email import EmailSendError, SmtpEmail
from tests.support.emails import plain_email
from tests.support.ports import free_port
from tests.support.serve import HTTP_TIMEOUT

ACCOUNT, TOKEN, OURS = "AC" + "0" * 32, "sandbox-token", "+15005550006"


async def test_the_mailbox_answers_a_transient_error_then_accepts_again(tmp_path) -> None:
    mailbox, switch, port = Mailbox(tmp_path), FaultSwitch(), free_port()
    controller = await start_smtp(mailbox, "127.0.0.1", port, switch)
    app = create_app(mailbox, outreach_url="http://outreach.test", signing_key="k", faults=switch)
    try:
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app=app), base_url="http://mailbox"
        ) as web:
            set_to = await web.post(FAULTS_PATH, json={"mode": "error", "seconds": 30})
            assert set_to.json()["mode"] == "error"
            sender = SmtpEmail("127.0.0.1", port, "", "", "none", "cf <s@closeflow.test>")
            with pytest.raises(EmailSendError) as refused:
                await sender.send(plain_email("ada@example.com"))
            assert refused.value.code == 451 and not refused.value.permanent
            assert mailbox.list() == []

            await web.post(FAULTS_PATH, json={"mode": "none"})
            assert (await web.get(FAULTS_PATH)).json()["mode"] == "none"
            await sender.send(plain_email("ada@example.com"))
            assert len(mailbox.list(to="ada@example.com")) == 1
    finally:
        await asyncio.to_thread(controller.stop)


async def test_a_hanging_mailbox_keeps_nothing_its_client_gave_up_on(tmp_path) -> None:
    mailbox, switch, port = Mailbox(tmp_path), FaultSwitch(), free_port()
    controller = await start_smtp(mailbox, "127.0.0.1", port, switch)
    try:
        switch.set("hang", 1.5)
        impatient = SmtpEmail(
            "127.0.0.1", port, "", "", "none", "cf <s@closeflow.test>", timeout=0.5
        )
        impatient.data_timeout = 0.5
        with pytest.raises(EmailSendError) as unknown:
            await impatient.send(plain_email("bob@example.com"))
        assert not unknown.value.not_sent  # whether it went is open: the lease's case
        await asyncio.sleep(1.5)  # the hang is over: the held message was not kept
        assert switch.active() == "none"
        assert mailbox.list(to="bob@example.com") == []
    finally:
        await asyncio.to_thread(controller.stop)


async def test_a_hang_at_the_end_of_the_message_is_waited_out_not_raced(tmp_path) -> None:
    """The server holds its answer to the message's end (where it stores it) longer than the
    other replies may take: the sender waits that out and the message is there once, instead
    of the outcome becoming unknown (and the message sent again after the send lease)."""
    mailbox, switch, port = Mailbox(tmp_path), FaultSwitch(), free_port()
    controller = await start_smtp(mailbox, "127.0.0.1", port, switch)
    try:
        sender = SmtpEmail("127.0.0.1", port, "", "", "none", "cf <s@closeflow.test>", timeout=0.5)
        sender.data_timeout = 5.0
        assert sender.longest_wait == 5.5  # what the send lease counts on: the whole exchange
        switch.set("hang", 1.5)
        sent = plain_email("carol@example.com")
        assert await sender.send(sent) == sent.message_id
        assert [m.message_id for m in mailbox.list(to="carol@example.com")] == [sent.message_id]
    finally:
        await asyncio.to_thread(controller.stop)


async def test_a_send_cancelled_while_the_server_holds_its_answer_hangs_up_at_once(
    tmp_path,
) -> None:
    """Cancelled while the server holds its answer to the message's end, the send ends when
    cancelled, not a reply timeout later: no QUIT waits behind the held answer (aiosmtplib's
    own exit said one, and waited up to `timeout` for its reply)."""
    mailbox, switch, port = Mailbox(tmp_path), FaultSwitch(), free_port()
    controller = await start_smtp(mailbox, "127.0.0.1", port, switch)
    try:
        patient = SmtpEmail("127.0.0.1", port, "", "", "none", "cf <s@closeflow.test>", timeout=60)
        switch.set("hang", 120)
        sending = asyncio.create_task(patient.send(plain_email("dan@example.com")))
        await asyncio.sleep(1.0)  # connected, the message sent, its answer held
        assert not sending.done()
        sending.cancel()
        done, _ = await asyncio.wait([sending], timeout=20)  # a third of the reply timeout
        assert done == {sending}, "the cancelled send still waits on the server"
        assert sending.cancelled()
    finally:
        switch.set("none", 1)
        await asyncio.to_thread(controller.stop)


def twilio_sandbox() -> FastAPI:
    return twilio_server.create_app(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        inbound_sms_url="http://outreach.test/webhooks/twilio/sms",
        data_file=None,
        public_url="http://sandbox.test",
    )


async def test_the_twilio_sandbox_answers_500_holds_calls_and_recovers() -> None:
    app = twilio_sandbox()
    messages = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    form = {"To": "+14155550100", "From": OURS, "Body": "Hi"}
    async with httpx.AsyncClient(
        timeout=HTTP_TIMEOUT,
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox",
        auth=(ACCOUNT, TOKEN),
    ) as http:
        await http.post(FAULTS_PATH, json={"mode": "error", "seconds": 30})
        failed = await http.post(messages, data=form)
        assert failed.status_code == 500 and failed.json()["code"] == 20500
        assert (await http.get(messages)).status_code == 500
        assert (await http.get("/sandbox/messages")).json() == []

        await http.post(FAULTS_PATH, json={"mode": "hang", "seconds": 30})
        held = asyncio.create_task(http.post(messages, data=form))
        await asyncio.sleep(0.5)
        assert not held.done()
        await http.post(FAULTS_PATH, json={"mode": "none"})
        created = await asyncio.wait_for(held, 5)
        assert created.status_code == 201  # answered once the hang is over
        listed = (await http.get("/sandbox/messages")).json()
        assert [m["sid"] for m in listed] == [created.json()["sid"]]
        assert listed[0]["accepted_at"]


async def test_the_twilio_sandbox_may_leave_opt_outs_to_closeflow() -> None:
    app = twilio_sandbox()
    app.state.sandbox.opt_outs.add(("+14155550101", OURS))
    messages = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    form = {"To": "+14155550101", "From": OURS, "Body": "Hi"}
    async with httpx.AsyncClient(
        timeout=HTTP_TIMEOUT,
        transport=httpx.ASGITransport(app=app),
        base_url="http://sandbox",
        auth=(ACCOUNT, TOKEN),
    ) as http:
        assert (await http.post(messages, data=form)).json()["code"] == 21610
        await http.post("/sandbox/opt-out-enforcement", json={"enforce": False})
        assert (await http.post(messages, data=form)).status_code == 201
