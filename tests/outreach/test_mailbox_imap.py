"""Replies from an ordinary mailbox (issue 14): outreach watches a real IMAP server (dovecot,
started by tests/support/imap.py) and every message goes through the inbound webhooks' own
path. Messages arrive by APPEND, as a mail server delivers them to a folder.

On SQLite, except where the database matters (the cursor and the lease across restarts: both)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import WorkflowEnvironment

from services.outreach import models
from services.outreach.mailbox import watcher as watcher_module
from services.outreach.mailbox.watcher import MESSAGE_ATTEMPTS, MailboxWatcher
from services.outreach.webhooks.common import InboundEmail, receive_email
from shared.settings import Settings
from tests.support.eventually import eventually
from tests.support.fixtures import DATABASES, fresh_databases
from tests.support.imap import PASSWORD, Dovecot, bounce, counting, dovecot, reply
from tests.support.settings import AUTH, PRODUCTION
from tests.support.webhooks import FAST, Rig, signals_of, webhook_rig


@pytest.fixture(scope="module")
def imap_server() -> Iterator[Dovecot]:
    """One dovecot for the module's tests (a user, so a mailbox, per test)."""
    with dovecot() as server:
        yield server


@contextlib.asynccontextmanager
async def mailbox_rig(
    tmp_path: Path,
    urls: dict[str, str],
    env: WorkflowEnvironment,
    server: Dovecot,
    user: str,
    tls: str = "none",
    **overrides: object,
) -> AsyncIterator[Rig]:
    """The outreach app (its lifespan runs the watcher) on these databases, watching `user`'s
    mailbox on `server`, in clear text, or with `tls` (tls: implicit, or starttls)."""
    settings: dict[str, object] = {
        "imap_host": "127.0.0.1",
        "imap_port": server.tls_port if tls == "tls" else server.port,
        "imap_tls": tls,
        "imap_tls_ca": str(server.ca),
        "imap_username": user,
        "imap_password": PASSWORD,
        "imap_poll_seconds": 0.2,
        **overrides,
    }
    async with webhook_rig(tmp_path, urls, env.client, FAST, migrate=False, **settings) as rig:
        yield rig


def watcher(rig: Rig) -> MailboxWatcher:
    found = rig.app.state.mailbox
    assert isinstance(found, MailboxWatcher)
    return found


async def cursor(rig: Rig) -> models.ImapMailbox | None:
    async with rig.sessions() as s:
        return await s.scalar(select(models.ImapMailbox))


async def read_to(rig: Rig, uid: int) -> models.ImapMailbox:
    """Once the mailbox's cursor is at `uid` (every message up to it stored): the cursor."""

    async def probe() -> models.ImapMailbox | None:
        row = await cursor(rig)
        return row if row is not None and row.last_uid == uid else None

    return await eventually(probe, f"the mailbox read to UID {uid}")


async def in_mode(rig: Rig, mode: str) -> None:
    async def probe() -> bool:
        return watcher(rig).mode == mode

    await eventually(probe, f"the watcher in mode {mode}")


async def test_replies_out_of_office_and_stop_as_the_webhooks_take_them(
    tmp_path: Path, temporal_local: WorkflowEnvironment, imap_server: Dovecot
) -> None:
    """A reply reaches its prospect's journey (matched by In-Reply-To, or by the sender), an
    out-of-office pauses it and is no reply, STOP opts the person out and ends the cadence; a
    message seen twice (the same Message-ID, or the same bytes without one) is stored once; a
    dropped connection is taken up again without losing what arrived meanwhile.
    Polling only every 10 minutes: the messages arrive through IDLE's push. Over implicit TLS
    (the server's certificate checked against CLOSEFLOW_IMAP_TLS_CA)."""
    user = imap_server.add_user()
    async with (
        fresh_databases("sqlite", tmp_path) as urls,
        mailbox_rig(
            tmp_path, urls, temporal_local, imap_server, user, "tls", imap_poll_seconds=600
        ) as rig,
        rig.journeys(),
    ):
        ada, bob, cy = (uuid.uuid4().hex for _ in range(3))
        to_ada = await rig.add_message("email", "ada@example.com", "<a1@closeflow>", ada)
        to_bob = await rig.add_message("email", "bob@example.com", "<b1@closeflow>", bob)
        await rig.add_message("email", "cy@example.com", "<c1@closeflow>", cy)
        handles = {p: await rig.start_journey(p) for p in (ada, bob, cy)}

        answer = reply(sender="Ada <ada@example.com>", in_reply_to="<a1@closeflow>")
        away = reply(
            sender="bob@example.com",
            subject="Automatic reply: Quick question",
            text="I am out of the office until further notice.",
            in_reply_to="<b1@closeflow>",
            headers={"Auto-Submitted": "auto-replied"},
        )
        # no In-Reply-To (a new message, not an answer): matched by its sender
        stop = reply(sender="cy@example.com", subject="Quick question", text="STOP")
        headless = reply(sender="nobody@example.com", text="Who is this?", message_id=None)
        await in_mode(rig, "idle")
        await imap_server.append(user, answer, away, stop, answer, headless, headless)

        row = await read_to(rig, 6)
        assert row.processed == 6
        events = await rig.inbox("imap")
        assert [(e.kind, e.prospect_id) for e in events] == [
            ("email_reply", ada),
            ("email_auto_reply", bob),
            ("email_stop", cy),
            ("email_reply", None),  # nobody we wrote to: kept, unknown sender
        ]
        assert events[0].event_id == f"inbound:{events[0].payload['Message-ID']}"
        assert events[3].event_id.startswith("sha256:")
        assert events[3].outcome == "unknown_sender"
        [got] = await eventually(lambda: signals_of(handles[ada]), "the reply")
        assert got["name"] == "reply_received"
        assert got["payload"]["excerpt"] == "Yes, let's talk on Tuesday."  # the quote left out
        [paused] = await eventually(lambda: signals_of(handles[bob]), "the pause")
        assert (paused["name"], paused["payload"]["kind"]) == ("pause", "out_of_office")
        [stopped] = await eventually(lambda: signals_of(handles[cy]), "the stop")
        assert stopped == {
            "name": "stop_cadence",
            "payload": {"reason": "email STOP", "actor": ""},  # the journey's system:stop
        }
        assert (await rig.message(to_ada.id)).replied_at is not None
        assert (await rig.message(to_bob.id)).replied_at is None
        assert await rig.suppressed("email") == {"cy@example.com"}
        assert watcher(rig).idle_wakeups >= 1
        assert watcher(rig).polls == 0
        # the watcher's logins were encrypted (the test's own APPENDs log in in clear text)
        assert any(", TLS," in line for line in imap_server.logins(user))

        # the server drops the IDLE connection: the watcher connects again, loses nothing
        await imap_server.kick(user)
        await imap_server.append(user, reply(sender="dan@example.com"))
        await read_to(rig, 7)
        assert watcher(rig).errors >= 1
        assert len(await rig.inbox("imap")) == 5
        state = (await rig.http.get("/mailbox", headers=AUTH)).json()
        assert (state["last_uid"], state["processed"]) == (7, 7)
        assert state["watched_by"] == state["this_replica"]["owner"]
        assert PASSWORD not in str(state)
        for handle in handles.values():
            await handle.terminate()


async def test_a_bounce_is_a_bounce_not_an_out_of_office_nor_a_reply(
    tmp_path: Path, temporal_local: WorkflowEnvironment, imap_server: Dovecot
) -> None:
    """The mailbox the sender's address reads gets its bounces: delivery status notifications
    (RFC 3464), Auto-Submitted like an out-of-office and often threaded on the original. A
    permanent failure (5.x.x) is a hard bounce as a provider's webhook reports one: the ledger
    row bounced, the address suppressed, the cadence stopped (not paused, to start again at a
    dead address). Matched by the original's Message-ID in the returned headers when the DSN is
    not threaded (Postfix). A delay (4.x.x) is only noted: no pause, no suppression."""
    user = imap_server.add_user()
    async with (
        fresh_databases("sqlite", tmp_path) as urls,
        mailbox_rig(tmp_path, urls, temporal_local, imap_server, user) as rig,
        rig.journeys(),
    ):
        dee, fay, eve = (uuid.uuid4().hex for _ in range(3))
        to_dee = await rig.add_message("email", "dee@example.com", "<d1@closeflow>", dee)
        to_fay = await rig.add_message("email", "fay@example.com", "<f1@closeflow>", fay)
        to_eve = await rig.add_message("email", "eve@example.com", "<e1@closeflow>", eve)
        handles = {p: await rig.start_journey(p) for p in (dee, fay, eve)}
        await imap_server.append(
            user,
            bounce(recipient="dee@example.com", original_id="<d1@closeflow>"),
            bounce(recipient="fay@example.com", original_id="<f1@closeflow>", threaded=False),
            bounce(
                recipient="eve@example.com",
                original_id="<e1@closeflow>",
                action="delayed",
                status="4.4.7",
            ),
        )
        await read_to(rig, 3)
        events = await rig.inbox("imap")
        assert [(e.kind, e.prospect_id, e.signal_name) for e in events] == [
            ("email_failed", dee, "stop_cadence"),
            ("email_failed", fay, "stop_cadence"),
            ("email_delayed", eve, None),
        ]
        for prospect in (dee, fay):
            [stopped] = await eventually(lambda p=prospect: signals_of(handles[p]), "the stop")
            assert stopped["payload"]["reason"] == "hard bounce"
        assert await rig.suppressed("email") == {"dee@example.com", "fay@example.com"}
        assert [(await rig.message(m.id)).status for m in (to_dee, to_fay, to_eve)] == [
            "bounced",
            "bounced",
            "submitted",
        ]
        assert "550 5.1.1" in ((await rig.message(to_dee.id)).error or "")
        for handle in handles.values():
            await handle.terminate()


async def test_a_reply_with_a_huge_attachment_is_read_from_its_start_only(
    tmp_path: Path, temporal_local: WorkflowEnvironment, imap_server: Dovecot
) -> None:
    """A reply carrying a 16 MB attachment: the watcher fetched every message whole, into
    memory (and parsed it there), however large, over however slow a link, while no other
    message of the folder was read. Only a message's first MiB is fetched (a person's text comes
    before the attachments): the reply reaches its prospect's journey, the size recorded is
    the whole message's, and what the server sent for both messages is a fraction of it."""
    user = imap_server.add_user()
    async with (
        counting(imap_server.port) as link,
        fresh_databases("sqlite", tmp_path) as urls,
        mailbox_rig(tmp_path, urls, temporal_local, imap_server, user, imap_port=link.port) as rig,
        rig.journeys(),
    ):
        ada = uuid.uuid4().hex
        await rig.add_message("email", "ada@example.com", "<a1@closeflow>", ada)
        journey = await rig.start_journey(ada)
        deck = os.urandom(16 * 1024 * 1024)
        big = reply(sender="ada@example.com", in_reply_to="<a1@closeflow>", attachment=deck)
        await imap_server.append(user, big, reply(sender="bob@example.com"))
        await read_to(rig, 2)
        first, second = await rig.inbox("imap")
        assert (first.kind, first.prospect_id) == ("email_reply", ada)
        assert first.payload["size"] > len(deck)  # the whole message's, not what was read
        assert second.kind == "email_reply"
        assert link.from_server < 4 * 1024 * 1024
        [got] = await eventually(lambda: signals_of(journey), "the reply")
        assert got["payload"]["excerpt"] == "Yes, let's talk on Tuesday."
        await journey.terminate()


@pytest.mark.parametrize("database", DATABASES)
async def test_every_message_exactly_once_across_restarts_replicas_and_a_new_uidvalidity(
    database: str, tmp_path: Path, temporal_local: WorkflowEnvironment, imap_server: Dovecot
) -> None:
    """Stopped after some messages, more arrive, started again as two replicas: one watches,
    the other stands by, and each message is processed once. Then the folder is recreated (a
    new UIDVALIDITY, UIDs from 1 again) holding a message already stored and a new one: only
    the new one is stored (on SQLite: the suite's time is short)."""
    user = imap_server.add_user()
    folder = "Replies"
    await imap_server.create(user, folder)

    def replica(name: str) -> contextlib.AbstractAsyncContextManager[Rig]:
        return mailbox_rig(
            tmp_path / name, urls, temporal_local, imap_server, user, imap_mailbox=folder
        )

    first = [reply(sender=f"p{i}@example.com") for i in range(3)]
    later = [reply(sender=f"q{i}@example.com") for i in range(3)]
    async with fresh_databases(database, tmp_path) as urls:
        await imap_server.append(user, *first, folder=folder)
        async with replica("a") as rig:
            before = await read_to(rig, 3)
            owner = watcher(rig).owner
        after_stop = await cursor(rig)
        assert after_stop is not None
        # the lease was handed back, the cursor kept
        assert (after_stop.lease_owner, after_stop.lease_until) == ("", None)
        assert after_stop.last_uid == 3
        # first[0] again: a copy of a message already stored
        await imap_server.append(user, *later, first[0], folder=folder)
        async with replica("b") as one, replica("c") as two:
            row = await read_to(one, 7)
            assert row.processed == 7
            replicas = (watcher(one), watcher(two))

            async def settled() -> bool:
                return sorted(w.mode for w in replicas) == ["idle", "standby"]

            await eventually(settled, "one replica watching, the other standing by")
            assert owner not in (w.owner for w in replicas)
            assert sum(w.processed for w in replicas) == 4  # UIDs 4-7: nothing read twice
            events = await rig.inbox("imap")
            assert len(events) == len({e.event_id for e in events}) == 6
            assert row.uidvalidity == before.uidvalidity

        if database != "sqlite":
            return  # the renumbered folder runs the same statements: once is enough
        await imap_server.recreate(user, folder)
        fresh = reply(sender="r@example.com")
        await imap_server.append(user, later[1], fresh, folder=folder)
        async with replica("d") as rig:
            row = await read_to(rig, 2)
            assert row.uidvalidity != before.uidvalidity
            assert watcher(rig).processed == 2
            events = await rig.inbox("imap")
            assert len(events) == 7  # later[1] was stored already
            assert events[-1].payload["From"] == "r@example.com"


async def test_polling_when_the_server_offers_no_idle(
    tmp_path: Path, temporal_local: WorkflowEnvironment
) -> None:
    """Over STARTTLS (the connection upgraded in place before the login)."""
    with dovecot(idle=False) as server:
        user = server.add_user()
        async with (
            fresh_databases("sqlite", tmp_path) as urls,
            mailbox_rig(tmp_path, urls, temporal_local, server, user, "starttls") as rig,
        ):
            watching = watcher(rig)

            async def polled() -> bool:
                return watching.mode == "poll" and watching.polls >= 1

            await eventually(polled, "the watcher polling")
            await server.append(user, reply(sender="ada@example.com"))
            await read_to(rig, 1)
            assert watching.idle_wakeups == 0
            assert len(await rig.inbox("imap")) == 1
            assert any(", TLS," in line for line in server.logins(user))


@pytest.mark.parametrize("database", DATABASES)
async def test_a_message_from_an_address_longer_than_any_is_set_aside(
    database: str, tmp_path: Path, temporal_local: WorkflowEnvironment, imap_server: Dovecot
) -> None:
    """A STOP from a 342-character address (or a bounce for one) went to the suppression
    (varchar(320)): on PostgreSQL its transaction failed, the cursor never moved and every
    later message waited behind it for good. The address is checked where the message is read:
    the message is kept aside with the reason and the ones after it are stored."""
    user = imap_server.add_user()
    long_address = "a" * 330 + "@example.com"
    async with (
        fresh_databases(database, tmp_path) as urls,
        mailbox_rig(tmp_path, urls, temporal_local, imap_server, user) as rig,
    ):
        ada = uuid.uuid4().hex
        await rig.add_message("email", "ada@example.com", "<a1@closeflow>", ada)
        await imap_server.append(
            user,
            reply(sender=long_address, subject="STOP", text="STOP"),
            bounce(recipient=long_address, original_id="<a1@closeflow>"),
            reply(sender="ada@example.com", in_reply_to="<a1@closeflow>"),
        )
        row = await read_to(rig, 3)
        assert row.processed == 3
        reasons = [r.reason for r in await rig.rejected()]
        assert reasons == [
            "uid 1: From address of 342 characters (at most 320)",
            "uid 2: Final-Recipient address of 342 characters (at most 320)",
        ]
        [event] = await rig.inbox("imap")
        assert (event.kind, event.prospect_id) == ("email_reply", ada)
        assert await rig.suppressed("email") == set()


async def test_a_bounce_counts_only_when_it_names_our_send_to_that_address(
    tmp_path: Path, temporal_local: WorkflowEnvironment, imap_server: Dovecot
) -> None:
    """Anyone can mail a delivery-status report. One naming no send of ours (a Message-ID we
    never sent, nothing threaded), or naming ours but reporting another address, was matched
    by its Final-Recipient alone: the prospect's ledger row bounced, the address suppressed,
    the cadence stopped. Now such a report is only noted (kind email_unmatched_bounce, no
    signal, no effect); one that names our send to that address is still a hard bounce."""
    user = imap_server.add_user()
    async with (
        fresh_databases("sqlite", tmp_path) as urls,
        mailbox_rig(tmp_path, urls, temporal_local, imap_server, user) as rig,
    ):
        ceo, cfo = uuid.uuid4().hex, uuid.uuid4().hex
        to_ceo = await rig.add_message("email", "ceo@big.example", "<c1@closeflow>", ceo)
        to_cfo = await rig.add_message("email", "cfo@big.example", "<f1@closeflow>", cfo)
        await imap_server.append(
            user,
            # forged: returns a Message-ID we never sent, threaded on nothing
            bounce(recipient="ceo@big.example", original_id="<x@attacker>", threaded=False),
            # threaded on our email to the CFO, but says the CEO's address failed
            bounce(recipient="ceo@big.example", original_id="<f1@closeflow>"),
            # the real thing: our email to the CFO, and the CFO's address
            bounce(recipient="cfo@big.example", original_id="<f1@closeflow>", threaded=False),
        )
        await read_to(rig, 3)
        events = await rig.inbox("imap")
        assert [(e.kind, e.prospect_id, e.signal_name) for e in events] == [
            ("email_unmatched_bounce", None, None),
            ("email_unmatched_bounce", None, None),
            ("email_failed", cfo, "stop_cadence"),
        ]
        assert (await rig.message(to_ceo.id)).status == "submitted"
        assert (await rig.message(to_cfo.id)).status == "bounced"
        assert await rig.suppressed("email") == {"cfo@big.example"}


async def test_a_failing_message_is_set_aside_and_a_database_outage_waited_out(
    tmp_path: Path,
    temporal_local: WorkflowEnvironment,
    imap_server: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Storing a message fails. A value the database refuses (DataError) is set aside at once;
    any other failure of that message (here an error of our code on it) after MESSAGE_ATTEMPTS
    tries, so the messages after it are read. Before, each of them blocked the mailbox for good.
    A database that is down (OperationalError) is no fault of the message: it is tried again
    for as long as that lasts and stored, never set aside."""
    calls: Counter[str] = Counter()

    async def flaky(session: AsyncSession, settings: Settings, mail: InboundEmail) -> object:
        calls[mail.subject] += 1
        if mail.subject == "refused":
            raise DataError("INSERT", {}, ValueError("value too long"))
        if mail.subject == "bug":
            raise KeyError("something in this message")
        if mail.subject == "outage" and calls["outage"] <= MESSAGE_ATTEMPTS + 1:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database down"))
        return await receive_email(session, settings, mail)

    monkeypatch.setattr(watcher_module, "receive_email", flaky)
    user = imap_server.add_user()
    async with (
        fresh_databases("sqlite", tmp_path) as urls,
        mailbox_rig(tmp_path, urls, temporal_local, imap_server, user) as rig,
    ):
        await imap_server.append(
            user,
            *(reply(sender="ada@example.com", subject=s) for s in ("refused", "bug", "outage")),
            reply(sender="bob@example.com", subject="fine"),
        )
        row = await read_to(rig, 4)
        assert row.processed == 4
        assert calls == {
            "refused": 1,
            "bug": MESSAGE_ATTEMPTS,
            "outage": MESSAGE_ATTEMPTS + 2,
            "fine": 1,
        }
        reasons = [r.reason for r in await rig.rejected()]
        assert len(reasons) == 2
        assert reasons[0].startswith("uid 1: not stored after 1 attempt(s): DataError")
        assert reasons[1].startswith(f"uid 2: not stored after {MESSAGE_ATTEMPTS} attempt(s)")
        assert [e.payload["Subject"] for e in await rig.inbox("imap")] == ["outage", "fine"]
        assert watcher(rig).set_aside == 2
        assert "ada@example.com" not in watcher(rig).last_error


def test_production_needs_tls_to_the_mailbox() -> None:
    with pytest.raises(ValueError, match="CLOSEFLOW_IMAP_TLS"):
        Settings(**PRODUCTION, imap_host="imap.example.com", imap_tls="none")  # type: ignore[arg-type]
    assert Settings(**PRODUCTION, imap_host="imap.example.com").imap_tls == "tls"  # type: ignore[arg-type]


def test_the_sent_folder_is_a_folder_of_the_imap_account() -> None:
    with pytest.raises(ValueError, match="CLOSEFLOW_IMAP_HOST"):
        Settings(imap_sent_folder="Sent")
    assert Settings(imap_host="imap.example.com", imap_sent_folder="Sent").imap_sent_folder
