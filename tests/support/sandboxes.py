"""Real parts for outreach tests: a migrated database, an SMTP mailbox, the Twilio sandbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from temporalio import workflow
from temporalio.common import RetryPolicy

from devstack.sandbox import twilio_server
from devstack.sandbox.mailbox import Mailbox, start_smtp
from shared.contracts.journey import CadenceStep, Contact, TouchRequest, TouchResult, journey_id
from shared.contracts.meetings import InviteRequest
from shared.contracts.names import Act
from shared.migrations import upgrade
from shared.settings import SERVICES, Settings
from tests.support.ports import free_port
from tests.support.serve import serve
from tests.support.settings import make_settings


async def send_touch(req: TouchRequest) -> TouchResult:
    """Workflow code: run the real send activity on the outreach queue beside this one."""
    return await workflow.execute_activity(
        Act.SEND_TOUCH,
        req,
        task_queue=workflow.info().task_queue.replace("journeys", "outreach"),
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(
            initial_interval=timedelta(milliseconds=100), maximum_interval=timedelta(seconds=1)
        ),
        result_type=TouchResult,
    )


@workflow.defn(name="SendTouchOnce")
class SendTouchOnce:
    """One touch through the real send activity (with Temporal's retries), no journey."""

    @workflow.run
    async def run(self, req: TouchRequest) -> TouchResult:
        return await send_touch(req)


@workflow.defn(name="SendInviteOnce")
class SendInviteOnce:
    """One meeting invitation through the real invite activity (with Temporal's retries)."""

    @workflow.run
    async def run(self, req: InviteRequest) -> TouchResult:
        return await workflow.execute_activity(
            Act.SEND_MEETING_INVITE,
            req,
            task_queue=workflow.info().task_queue.replace("journeys", "outreach"),
            start_to_close_timeout=timedelta(seconds=30),
            result_type=TouchResult,
        )


# The steps most tests send: a first email and a first text.
EMAIL = CadenceStep("email", 0, "Hello {{ first_name }}", "Hi {{ first_name }}")
SMS = CadenceStep("sms", 0, "Hi {{ first_name }}, {{ rep_name }} here")


def touch_request(c: Contact, *steps: CadenceStep, key: str = "step-0", **kw: Any) -> TouchRequest:
    """A cadence touch of the prospect's journey, as the journey asks outreach to send it."""
    return TouchRequest(
        journey_id=journey_id(c.prospect_id),
        touch_key=key,
        kind="cadence",
        contact=c,
        steps=list(steps),
        **kw,
    )


def twilio_sandbox(settings: Settings, port: int, public_url: str) -> FastAPI:
    """The Twilio sandbox app for outreach at `public_url`, to be served on `port`."""
    return twilio_server.create_app(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        inbound_sms_url=f"{public_url}/webhooks/twilio/sms",
        data_file=None,
        public_url=f"http://127.0.0.1:{port}",
    )


@dataclass
class Sandboxes:
    settings: Settings
    mailbox: Mailbox
    twilio_url: str


@contextlib.asynccontextmanager
async def sandboxes(
    tmp_path: Path,
    urls: dict[str, str],
    queue_prefix: str,
    public_url: str = "http://test",
    **overrides: object,
) -> AsyncIterator[Sandboxes]:
    smtp_port, twilio_port = free_port(), free_port()
    settings = make_settings(
        tmp_path,
        urls,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        twilio_api_base_url=f"http://127.0.0.1:{twilio_port}",
        outreach_public_url=public_url,
        task_queue_prefix=queue_prefix,
        **{"referrals_public_url": "http://referrals.test", **overrides},
    )
    for service in SERVICES:
        if service in urls:
            await asyncio.to_thread(upgrade, settings, service)
    mailbox = Mailbox(tmp_path / "mailbox")
    controller = await start_smtp(mailbox, "127.0.0.1", smtp_port)
    try:
        async with serve(
            twilio_sandbox(settings, twilio_port, public_url), twilio_port
        ) as twilio_url:
            yield Sandboxes(settings, mailbox, twilio_url)
    finally:
        controller.stop()
