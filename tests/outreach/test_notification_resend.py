"""A rep's notification email whose send went unrecorded is not sent twice when the SMTP server
filed it in the Sent folder closeflow searches (CLOSEFLOW_IMAP_SENT_FOLDER).

The SMTP server here keeps each message and files it in the account's Sent folder (a real
dovecot), as Gmail does, then answers the first one late. Two ways the notifier's record of
that send goes unwritten: its SMTP client stops waiting (a failed attempt, recorded), or the
notifier is stopped while it waits and its grace runs out (no record at all: the state a
crash leaves, told apart by the row's claims).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from devstack.sandbox.mailbox import send_event, send_postmark_delivery
from services.outreach import models
from services.outreach.consent import service as consent
from services.outreach.notifications.notifier import Notifier
from tests.support.eventually import eventually
from tests.support.filing_smtp import FilingHandler, filing_smtp
from tests.support.fixtures import Ground
from tests.support.imap import PASSWORD as IMAP_PASSWORD
from tests.support.imap import Dovecot, dovecot
from tests.support.inbox import InboxRig, inbox_rig
from tests.support.settings import AUTH, POSTMARK_PASSWORD, POSTMARK_USER, POSTMARK_WEBHOOK

SENT = "Sent"
REP_EMAIL = "ron.notify@example.com"
SMTP_WAIT = 3.0  # the notifier's wait for the answer to a message's end


@dataclass
class Rig:
    r: InboxRig
    smtp: FilingHandler
    rep: str

    async def urgent_task(self) -> str:
        """An overdue meeting preparation for the rep: urgent, so the rep is emailed."""
        prospect = await self.r.prospect("Bob")
        due = datetime.now(UTC) - timedelta(minutes=30)
        return await self.r.task(prospect, self.rep, "prep", kind="prepare_meeting", due=due)

    async def row(self, task_id: str) -> models.TaskNotification | None:
        """The task's one notification, once queued."""
        listed = (await self.r.api.get(f"/tasks/{task_id}/notifications", headers=AUTH)).json()
        assert len(listed) <= 1, listed
        if not listed:
            return None
        async with self.r.sessions() as session:
            return await session.get(models.TaskNotification, listed[0]["id"])

    async def sent(self, task_id: str) -> models.TaskNotification:
        async def recorded() -> models.TaskNotification | None:
            row = await self.row(task_id)
            return row if row is not None and row.status == "sent" else None

        return await eventually(recorded, "the notification recorded sent")


@asynccontextmanager
async def rig(
    ground: Ground, file: Callable[[bytes], Awaitable[None]], first_answer_after: float,
    **changes: Any,
) -> AsyncIterator[Rig]:  # fmt: skip
    """The inbox rig with the filing SMTP server and a rep notified by email."""
    async with filing_smtp(file, first_answer_after) as (port, smtp):
        changes |= {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            # the waits a claim's lease outlasts: seconds, so that a claim abandoned is taken
            # again within a test's patience
            "smtp_timeout_seconds": 2.0,
            "smtp_data_timeout_seconds": SMTP_WAIT,
            "twilio_timeout_seconds": 2.0,
        }
        async with inbox_rig(ground, **changes) as r:
            rep = await r.rep("Ron Rep")
            prefs = {"channel": "email", "email": REP_EMAIL}
            put = await r.api.put(f"/reps/{rep}/notifications", json=prefs, headers=AUTH)
            assert put.status_code == 200, put.text
            yield Rig(r, smtp, rep)


@asynccontextmanager
async def sent_folder_rig(
    ground: Ground, server: Dovecot, first_answer_after: float, search: bool = True
) -> AsyncIterator[Rig]:
    """The server files each message in the dovecot account's Sent folder, which closeflow
    searches (`search`) or not."""
    user = server.add_user()
    await server.create(user, SENT)

    async def file(raw: bytes) -> None:
        await server.append(user, raw, folder=SENT)

    imap = {
        "imap_host": "127.0.0.1",
        "imap_port": server.port,
        "imap_tls": "none",
        "imap_username": user,
        "imap_password": SecretStr(IMAP_PASSWORD),
        "imap_sent_folder": SENT if search else "",
    }
    async with rig(ground, file, first_answer_after, **imap) as x:
        yield x


async def test_a_rep_s_email_goes_once_when_the_smtp_answer_came_too_late(
    ground: Ground,
) -> None:
    """The server keeps and files the email but answers after the notifier stopped waiting:
    the attempt fails (whether it went is unknown), and the retry finds it in the Sent folder
    by its Message-ID. One email, where without the search the retry sent a second."""
    with dovecot() as server:
        async with sent_folder_rig(ground, server, first_answer_after=SMTP_WAIT + 2) as x:
            task = await x.urgent_task()
            row = await x.sent(task)
            await x.r.sweeps(5)  # a second send would have had its turn
    assert x.smtp.message_ids() == [row.provider_id]
    # two claims, each recorded: the attempt that failed, and the one that found the email
    assert (row.attempts, row.claims) == (2, 2)


async def test_a_rep_s_email_goes_once_when_its_notifier_stopped_mid_send(
    ground: Ground,
) -> None:
    """The notifier is stopped while the server holds its answer, and its grace runs out: the
    send is abandoned to its lease with nothing recorded (attempts 0), as a crash leaves it.
    Started again, once the lease is over, it sees the earlier claim, finds the email in the
    Sent folder and records it sent. One email, where without the claims counted the retry,
    taking the row for a first attempt, sent a second."""
    with dovecot() as server:
        async with sent_folder_rig(ground, server, first_answer_after=60) as x:
            notifier = x.r.app.state.notifier
            notifier.timing = replace(notifier.timing, stop_grace=0.5)
            task = await x.urgent_task()

            async def accepted() -> bool:
                return bool(x.smtp.accepted)

            await eventually(accepted, "the server holding the email")
            await notifier.stop()
            left = await x.row(task)
            assert left is not None
            assert (left.status, left.attempts, left.claims) == ("pending", 0, 1)
            notifier.start()
            row = await x.sent(task)
            await x.r.sweeps(5)
    assert x.smtp.message_ids() == [row.provider_id]
    assert (row.attempts, row.claims) == (1, 2)  # the stopped claim was never recorded


async def test_a_rep_s_email_still_being_sent_is_not_claimed_by_another_replica(
    ground: Ground,
) -> None:
    """The server holds its answer longer than the notifier's lease is set to. Another replica
    looking for due rows meanwhile finds none: a claim's lease outlasts the longest a send may
    wait (the SMTP server's timeouts). It used to claim the row once the set lease was over and
    send the email a second time."""

    async def keep(raw: bytes) -> None:
        pass

    async with rig(ground, keep, first_answer_after=SMTP_WAIT - 0.5) as x:
        app = x.r.app
        notifier = app.state.notifier
        notifier.timing = replace(notifier.timing, lease=1.0)
        task = await x.urgent_task()

        async def accepted() -> bool:
            return bool(x.smtp.accepted)

        await eventually(accepted, "the server holding the email")
        await asyncio.sleep(1.2)  # past the lease the timing sets
        other = Notifier(
            lambda: x.r.sessions, app.state.settings, lambda: app.state.reps, notifier.timing
        )
        assert await other.run_once() == 0
        row = await x.sent(task)
    assert x.smtp.message_ids() == [row.provider_id]
    assert (row.attempts, row.claims) == (1, 1)


async def test_without_the_search_a_late_answer_means_a_second_email(ground: Ground) -> None:
    """The same late answer without CLOSEFLOW_IMAP_SENT_FOLDER: the retry cannot know, and
    sends again with the same Message-ID (a client that dedupes on it shows one)."""
    with dovecot() as server:
        async with sent_folder_rig(
            ground, server, first_answer_after=SMTP_WAIT + 2, search=False
        ) as x:
            task = await x.urgent_task()
            row = await x.sent(task)
    assert x.smtp.message_ids() == [row.provider_id] * 2


def mailgun_key(r: InboxRig) -> str:
    return r.sb.settings.mailgun_signing_key.get_secret_value()


@pytest.mark.parametrize("provider", ["mailgun", "postmark"])
async def test_a_rep_s_email_goes_once_when_its_provider_told_of_it(
    provider: str, ground: Ground
) -> None:
    """No Sent folder this time: the email provider has the message and posts an event naming
    it (Mailgun's `accepted`, as it queues a message; Postmark's Delivery, whose metadata
    returns the Message-ID closeflow's `X-PM-Metadata-` header gave it), then the SMTP answer
    comes too late. The event records the notification sent; the failed attempt's record then
    changes nothing, and no retry follows. A hard bounce naming it afterwards neither
    suppresses the rep's address nor touches a prospect's email to it. One email, where
    without the events' match the retry sent a second."""
    running: list[Rig] = []  # the rig, once it runs
    changes = POSTMARK_WEBHOOK if provider == "postmark" else {}

    async def tell(raw: bytes) -> None:
        r = running[0].r
        mail = r.sb.mailbox.get(r.sb.mailbox.save(raw))  # parsed as the mail sandbox parses
        assert mail is not None
        if provider == "mailgun":
            answer = await send_event(
                mail, "accepted", severity=None, reason="", description="",
                outreach_url=r.outreach_url, signing_key=mailgun_key(r),
            )  # fmt: skip
        else:
            answer = await send_postmark_delivery(
                mail, outreach_url=r.outreach_url, user=POSTMARK_USER,
                password=POSTMARK_PASSWORD,
            )  # fmt: skip
        assert answer["webhook_status"] == 200, answer

    async with rig(ground, tell, first_answer_after=SMTP_WAIT + 2, **changes) as x:
        running.append(x)
        task = await x.urgent_task()
        row = await x.sent(task)
        await x.r.sweeps(5)  # the failed attempt is recorded by now, and a retry had its turn
        after = await x.row(task)
        mail = x.r.sb.mailbox.list()[-1]  # the first (the only one, below)
        bounced = await send_event(
            mail, "failed", severity="permanent", reason="bounce", description="no such user",
            outreach_url=x.r.outreach_url, signing_key=mailgun_key(x.r),
        )  # fmt: skip
        assert bounced["webhook_status"] == 200, bounced
        async with x.r.sessions() as session:
            suppressed = await consent.blocked(session, "email", REP_EMAIL, None)
    assert x.smtp.message_ids() == [row.provider_id]
    assert after is not None and (after.status, after.attempts, after.claims) == ("sent", 0, 1)
    assert not suppressed
