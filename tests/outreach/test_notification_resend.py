"""A rep's notification email whose send went unrecorded is not sent twice when the SMTP server
filed it in the Sent folder closeflow searches (CLOSEFLOW_IMAP_SENT_FOLDER).

The SMTP server here keeps each message and files it in the account's Sent folder (a real
dovecot), as Gmail does, then answers the first one late. Two ways the notifier's record of
that send goes unwritten: its SMTP client stops waiting (a failed attempt, recorded), or the
notifier is stopped while it waits and its grace runs out (no record at all: the state a
crash leaves, told apart by the row's claims).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from services.outreach import models
from tests.support.eventually import eventually
from tests.support.filing_smtp import FilingHandler, filing_smtp
from tests.support.fixtures import Ground
from tests.support.imap import PASSWORD as IMAP_PASSWORD
from tests.support.imap import Dovecot, dovecot
from tests.support.inbox import InboxRig, inbox_rig
from tests.support.settings import AUTH

SENT = "Sent"
SMTP_WAIT = 3.0  # the notifier's wait for each of the SMTP server's answers


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
    ground: Ground, server: Dovecot, first_answer_after: float, search: bool = True
) -> AsyncIterator[Rig]:
    user = server.add_user()
    await server.create(user, SENT)

    async def file(raw: bytes) -> None:
        await server.append(user, raw, folder=SENT)

    async with filing_smtp(file, first_answer_after) as (port, smtp):
        changes: dict[str, Any] = {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_data_timeout_seconds": SMTP_WAIT,
            # the goodbye (QUIT) of a send cut short waits on this one
            "smtp_timeout_seconds": SMTP_WAIT,
            "imap_host": "127.0.0.1",
            "imap_port": server.port,
            "imap_tls": "none",
            "imap_username": user,
            "imap_password": SecretStr(IMAP_PASSWORD),
            "imap_sent_folder": SENT if search else "",
        }
        async with inbox_rig(ground, **changes) as r:
            rep = await r.rep("Ron Rep")
            prefs = {"channel": "email", "email": "ron.notify@example.com"}
            put = await r.api.put(f"/reps/{rep}/notifications", json=prefs, headers=AUTH)
            assert put.status_code == 200, put.text
            yield Rig(r, smtp, rep)


async def test_a_rep_s_email_goes_once_when_the_smtp_answer_came_too_late(
    ground: Ground,
) -> None:
    """The server keeps and files the email but answers after the notifier stopped waiting:
    the attempt fails (whether it went is unknown), and the retry finds it in the Sent folder
    by its Message-ID. One email, where without the search the retry sent a second."""
    with dovecot() as server:
        async with rig(ground, server, first_answer_after=SMTP_WAIT + 2) as x:
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
        async with rig(ground, server, first_answer_after=60) as x:
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


async def test_without_the_search_a_late_answer_means_a_second_email(ground: Ground) -> None:
    """The same late answer without CLOSEFLOW_IMAP_SENT_FOLDER: the retry cannot know, and
    sends again with the same Message-ID (a client that dedupes on it shows one)."""
    with dovecot() as server:
        async with rig(ground, server, first_answer_after=SMTP_WAIT + 2, search=False) as x:
            task = await x.urgent_task()
            row = await x.sent(task)
    assert x.smtp.message_ids() == [row.provider_id] * 2
