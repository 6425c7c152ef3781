"""Exactly-once sends under faults, counted on real parts.

The outreach send activity is failed, or its worker PROCESS is killed, at the three moments
that matter for a send (SendFaults in services/outreach/activities.py):

  before_provider_call     ledger row `sending`, provider not called yet
  after_provider_accepted  SMTP / Twilio accepted, `submitted` not committed yet
  after_ledger_commit      `submitted` committed, activity not returned to Temporal yet

"raise": the activity fails and Temporal retries it 100 ms later on the same worker.
"kill": fault_worker.py, a real worker process, SIGKILLs itself there; a second copy of the same
command is started (it does not die again: marker file) and Temporal hands it the activity once
the 3 s start_to_close_timeout has expired.

Each test runs two journeys side by side, one with the fault on its email, one on its text, and
then counts what reached the SMTP server (the mailbox sandbox), the Twilio sandbox and the ledger.

What is asserted, per journey:
- no lost step: both ledger rows `submitted`, at least one email and one text out;
- SMS: exactly one text at every point (at after_provider_accepted the retry finds the first one
  through Twilio's message list and adopts its sid);
- email: exactly one copy, except when the worker is killed at after_provider_accepted: SMTP gives
  no way to ask whether a message got through, so the SMTP server receives exactly two copies and
  both carry the ledger's Message-ID, so the receiving side can drop the second (unless the
  provider's webhook named the message before the retry: one copy, tested below). An attempt that
  only fails there (raise) records the send all the same, and its retry finds it sent;
- which path the retry took: one Temporal retry, and the ledger's attempt count.

test_sms_twice_when_twilio_lists_the_message_late shows the window that is left for SMS (a worker
killed between Twilio's answer and the ledger's record, no status callback reaching outreach, a
lagging list). The rig's callbacks reach no outreach app but in the tests that serve one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from devstack.postgres import PostgresError, ThrowawayPostgres, pg_bin
from devstack.sandbox.mailbox import send_event, send_postmark_delivery
from services.outreach import models
from services.outreach.activities import SendFaults
from services.outreach.app import create_app
from shared.contracts.journey import Contact
from shared.providers import postmark
from shared.providers.mailgun import TEMPORARY
from shared.providers.postmark import basic_auth_header, metadata_of
from shared.settings import Settings
from tests.support.consent import outreach_rig
from tests.support.exactly_once import HANG_GUARD, Counted, Rig, exactly_once_rig, new_contact
from tests.support.faults import POINTS
from tests.support.fixtures import Ground
from tests.support.imap import PASSWORD as IMAP_PASSWORD
from tests.support.imap import dovecot
from tests.support.ports import free_port
from tests.support.sandboxes import EMAIL, touch_request
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import POSTMARK_PASSWORD, POSTMARK_USER, POSTMARK_WEBHOOK
from tests.support.twilio_proxy import lagging_twilio


def check(point: str, mode: str, got: Counted) -> None:
    faulted = got.channel
    other = "sms" if faulted == "email" else "email"
    why = got.summary()
    assert got.marker.get("point") == point and got.marker.get("channel") == faulted, why
    # which ledger state the fault left behind: the window each point stands for
    left = "submitted" if point == "after_ledger_commit" else "sending"
    assert got.marker["status"] == left, why
    # the killed attempt and at least one retry (a slow machine may time out one more: what
    # matters is what was sent, checked below)
    assert got.temporal_attempts >= 2, why

    # no lost step
    assert set(got.rows) == {"email", "sms"}, why
    assert all(r.status == "submitted" for r in got.rows.values()), why
    assert got.emails and got.texts, why

    # SMS: one text, and it is the one the ledger points at
    assert len(got.texts) == 1, why
    assert got.rows["sms"].provider_id == got.texts[0]["sid"], why

    # email: every copy the SMTP server got carries the ledger's Message-ID
    assert {m.message_id for m in got.emails} == {got.rows["email"].provider_id}, why
    accepted = point == "after_provider_accepted"
    resent = accepted and faulted == "email" and mode == "kill"
    assert len(got.emails) == (2 if resent else 1), why

    # the retry's path: a row left `sending` is attempted again, a `submitted` one never
    # (a loaded machine may time out a retry too: one more attempt each, never one more send).
    # A failed attempt whose provider accepted the message recorded it: left `submitted`.
    recorded = point == "after_ledger_commit" or (accepted and mode == "raise")
    extra = got.temporal_attempts - 2
    faulted_attempts = 1 if recorded else 2
    assert faulted_attempts <= got.rows[faulted].attempts <= faulted_attempts + extra, why
    assert 1 <= got.rows[other].attempts <= 1 + extra, why
    outcomes = got.outcomes()
    expected = {
        faulted: "already_sent" if recorded else "sent",
        # the email goes first: a fault on the text finds it already sent, one on the email
        # leaves the text to the retry
        other: "already_sent" if other == "email" else "sent",
    }
    if not extra:
        assert outcomes == expected, why
    else:
        # a retry that timed out after it sent (a loaded machine): the last attempt finds that
        # send done. What was sent, and how often, is checked above.
        assert all(outcomes[c] in (want, "already_sent") for c, want in expected.items()), why


@pytest.mark.parametrize("point", POINTS)
async def test_activity_fails_at_the_worst_moments(point: str, ground: Ground) -> None:
    async with exactly_once_rig(ground) as r:
        results = await asyncio.gather(r.run_raise(point, "email"), r.run_raise(point, "sms"))
    for got in results:
        check(point, "raise", got)


@pytest.mark.parametrize("point", POINTS)
async def test_worker_process_killed_at_the_worst_moments(point: str, ground: Ground) -> None:
    async with exactly_once_rig(ground) as r:
        results = await asyncio.gather(r.run_kill(point, "email"), r.run_kill(point, "sms"))
    for got in results:
        check(point, "kill", got)


@pytest.mark.parametrize(("event", "severity"), [("accepted", None), ("failed", TEMPORARY)])
async def test_a_killed_worker_s_email_goes_once_when_the_provider_told_of_it(
    event: str, severity: str | None, ground: Ground
) -> None:
    """The email's kill window closes when the provider tells of the message in time: the worker
    dies between the SMTP server's acceptance and the ledger's record, then, before the send
    lease is over, the mail server posts a signed Mailgun event naming the Message-ID to
    outreach's webhook (Mailgun's `accepted` comes as it queues a message; a temporary failure
    while it retries the recipient's server). The retry finds the row `submitted` and sends
    nothing: one email, where the same kill without the event gives two (above)."""
    async with exactly_once_rig(ground) as r:
        app = create_app(r.sb.settings, temporal_client=ground.temporal.client)
        async with serve(app, free_port()) as outreach_url:

            async def provider_reports(c: Contact) -> None:
                [mail] = r.sb.mailbox.list(to=c.email)
                assert metadata_of(mail.headers) == {}  # Postmark's header only for Postmark
                key = r.sb.settings.mailgun_signing_key.get_secret_value()
                await send_event(mail, event, severity=severity, reason="", description="",
                                 outreach_url=outreach_url, signing_key=key)  # fmt: skip

            got = await r.run_kill("after_provider_accepted", "email", between=provider_reports)
    why = got.summary()
    assert got.marker.get("point") == "after_provider_accepted", why
    assert got.marker.get("status") == "sending", why  # the kill left it unrecorded
    assert len(got.emails) == 1, why
    assert got.rows["email"].status == "submitted", why
    assert got.rows["email"].attempts == 1, why  # no retry claimed it again
    assert got.outcomes() == {"email": "already_sent", "sms": "sent"}, why
    assert len(got.texts) == 1, why


def with_postmark(r: Rig) -> Settings:
    """The rig's settings with Postmark's webhooks configured (so its metadata header is sent)."""
    return r.sb.settings.model_copy(update=POSTMARK_WEBHOOK)


async def post_postmark(outreach_url: str, doc: dict[str, Any]) -> None:
    auth = basic_auth_header(POSTMARK_USER, POSTMARK_PASSWORD)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        answer = await http.post(f"{outreach_url}/webhooks/postmark/events", json=doc, headers=auth)
    assert answer.status_code == 200, answer.text


async def test_a_killed_worker_s_email_goes_once_when_postmark_told_of_it(ground: Ground) -> None:
    """The same window with Postmark, whose events carry its own MessageID: the email goes with
    the `X-PM-Metadata-` header that has Postmark return our Message-ID in the event's metadata,
    so Postmark's Delivery event names the row and the retry sends nothing."""
    async with exactly_once_rig(ground) as r:
        settings = with_postmark(r)
        app = create_app(settings, temporal_client=ground.temporal.client)
        async with serve(app, free_port()) as outreach_url:

            async def postmark_reports(c: Contact) -> None:
                [mail] = r.sb.mailbox.list(to=c.email)
                answer = await send_postmark_delivery(
                    mail,
                    outreach_url=outreach_url,
                    user=POSTMARK_USER,
                    password=POSTMARK_PASSWORD,
                )
                assert answer["webhook_status"] == 200, answer

            got = await r.run_kill(
                "after_provider_accepted", "email", settings, between=postmark_reports
            )
    why = got.summary()
    assert got.marker.get("status") == "sending", why  # the kill left it unrecorded
    assert len(got.emails) == 1, why
    [mail] = got.emails
    assert metadata_of(mail.headers) == {"closeflow-msgid": got.rows["email"].provider_id}, why
    assert got.rows["email"].status == "delivered", why
    assert got.rows["email"].attempts == 1, why
    assert got.outcomes() == {"email": "already_sent", "sms": "sent"}, why


async def test_a_killed_worker_s_email_goes_once_when_the_sent_folder_has_it(
    ground: Ground,
) -> None:
    """Plain SMTP, no provider events, but a server that files every message it accepts in
    the account's Sent folder (Gmail does): the worker dies after the SMTP server accepted the
    email, the server's copy is in the folder (APPENDed, as the server files it), and the
    retry, once the lease is over, finds it there by its Message-ID over IMAP and sends
    nothing. Two emails without CLOSEFLOW_IMAP_SENT_FOLDER (above)."""
    with dovecot() as server:
        user = server.add_user()
        folder = "Sent Mail"  # a name that must be quoted, as Gmail's "[Gmail]/Sent Mail"
        await server.create(user, f'"{folder}"')  # imaplib sends names as given
        async with exactly_once_rig(ground) as r:
            settings = r.sb.settings.model_copy(
                update={
                    "imap_host": "127.0.0.1",
                    "imap_port": server.port,
                    "imap_tls": "none",
                    "imap_username": user,
                    "imap_password": SecretStr(IMAP_PASSWORD),
                    "imap_sent_folder": folder,
                }
            )

            async def filed(c: Contact) -> None:
                [mail] = r.sb.mailbox.list(to=c.email)
                raw = r.sb.mailbox.raw(mail.id)
                assert raw is not None
                await server.append(user, raw, folder=f'"{folder}"')

            got = await r.run_kill("after_provider_accepted", "email", settings, between=filed)
    why = got.summary()
    assert got.marker.get("status") == "sending", why  # the kill left it unrecorded
    assert len(got.emails) == 1, why
    assert got.rows["email"].status == "submitted", why
    assert got.rows["email"].provider_id == got.marker["provider_id"], why
    assert len(got.texts) == 1, why


async def test_an_unreadable_sent_folder_sends_the_email_again(ground: Ground) -> None:
    """The Sent folder cannot be read (here: the IMAP server is gone): the email is sent again,
    with the same Message-ID, as without the setting. A step is never lost for want of an
    answer from the mailbox."""
    async with exactly_once_rig(ground) as r:
        settings = r.sb.settings.model_copy(
            update={
                "imap_host": "127.0.0.1",
                "imap_port": free_port(),  # nothing listens there
                "imap_tls": "none",
                "imap_username": "nobody",
                "imap_password": SecretStr(IMAP_PASSWORD),
                "imap_sent_folder": "Sent",
            }
        )
        got = await r.run_kill("after_provider_accepted", "email", settings)
    why = got.summary()
    assert len(got.emails) == 2, why
    assert {m.message_id for m in got.emails} == {got.rows["email"].provider_id}, why
    assert got.rows["email"].status == "submitted", why


@pytest.mark.parametrize("event", ["delivery", "hard_bounce"])
async def test_an_event_about_an_earlier_email_does_not_stand_for_one_never_sent(
    ground: Ground, event: str
) -> None:
    """A worker killed before its provider call leaves the row `sending` with nothing sent. An
    event matched only by the address (Postmark's Delivery or hard bounce of an earlier email
    to the same person, without our metadata: its MessageID names no row) then lands on that
    row, the latest to the address. It must not record it delivered: the retry sends the email;
    nor bounced, which the retry took for gone (`already_sent`, no other channel tried): the
    bounce suppresses the address, and the retry finds it so (`suppressed`)."""
    async with exactly_once_rig(ground) as r:
        settings = with_postmark(r)
        app = create_app(settings, temporal_client=ground.temporal.client)
        async with serve(app, free_port()) as outreach_url:

            async def earlier_email_reported(c: Contact) -> None:
                pm_id, now = postmark.new_message_id(), time.time()
                doc = (
                    postmark.delivery(recipient=c.email, message_id=pm_id, now=now)
                    if event == "delivery"
                    else postmark.bounce(email=c.email or "", message_id=pm_id, now=now)
                )
                await post_postmark(outreach_url, doc)

            got = await r.run_kill(
                "before_provider_call", "email", settings, between=earlier_email_reported
            )
    why = got.summary()
    assert got.marker.get("status") == "sending", why
    if event == "delivery":
        assert len(got.emails) == 1, why
        assert got.rows["email"].status == "submitted", why
        assert got.outcomes() == {"email": "sent", "sms": "sent"}, why
    else:
        assert len(got.emails) == 0, why
        # the email that cannot go falls back to a call task (issue 10)
        expected = {"email": "suppressed", "sms": "sent", "call_task": "task_created"}
        assert got.outcomes() == expected, why


# --- the window that is left ------------------------------------------------------------------


async def lagging_list_send(tmp: Path, env: WorkflowEnvironment, prefix: str, mode: str) -> Counted:
    """A text whose worker fails (`mode`) right after Twilio accepted it, while Twilio's message
    list shows new messages only a minute late."""
    urls = {"outreach": f"sqlite+aiosqlite:///{tmp / 'outreach.db'}"}
    async with exactly_once_rig(Ground(tmp, urls, env, prefix)) as r:
        proxy = lagging_twilio(r.sb.twilio_url, timedelta(seconds=60))
        async with serve(proxy, free_port()) as proxy_url:
            settings = r.sb.settings.model_copy(update={"twilio_api_base_url": proxy_url})
            run = r.run_kill if mode == "kill" else r.run_raise
            return await run("after_provider_accepted", "sms", settings)


async def test_sms_twice_when_twilio_lists_the_message_late(
    tmp_path: Path, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> None:
    """The window left for SMS: the worker dies between Twilio's answer and the ledger's record,
    and the retry, once the lease is over, cannot find the text in the lagging list."""
    got = await lagging_list_send(tmp_path, temporal_local, queue_prefix, "kill")
    why = got.summary()
    # the step is not lost, but the retry could not see the first text and sent a second one
    # "sent" by the retry that sent the second text, or "already_sent" when a loaded machine
    # timed that retry out too and a third attempt found its row submitted: the count is the point
    assert got.outcomes()["email"] == "already_sent", why
    assert got.outcomes()["sms"] in ("sent", "already_sent"), why
    assert len(got.texts) == 2, why
    assert {t["body"] for t in got.texts} == {got.rows["sms"].body}, why
    # the ledger keeps the second sid; the first is the duplicate nobody points at
    assert got.rows["sms"].provider_id in {t["sid"] for t in got.texts}, why
    assert got.rows["sms"].provider_id != got.marker["provider_id"], why
    assert len(got.emails) == 1, why


async def test_a_killed_worker_s_text_goes_once_when_twilio_called_back(ground: Ground) -> None:
    """The text's kill window closes with Twilio's status callback: the same kill and lagging
    list as above, but outreach's app now gets the Twilio sandbox's signed callbacks. The first
    text's callback names its ledger row in its URL, and the row records that text's sid before
    the send lease is over: the retry finds it sent. One text, where the same kill without a
    callback gives two (above)."""
    async with exactly_once_rig(ground) as r:
        port = free_port()
        settings = r.sb.settings.model_copy(
            update={"outreach_public_url": f"http://127.0.0.1:{port}"}
        )
        app = create_app(settings, temporal_client=ground.temporal.client)
        proxy = lagging_twilio(r.sb.twilio_url, timedelta(seconds=60))
        async with serve(app, port), serve(proxy, free_port()) as proxy_url:
            worker = settings.model_copy(update={"twilio_api_base_url": proxy_url})
            got = await r.run_kill("after_provider_accepted", "sms", worker)
    why = got.summary()
    assert got.marker.get("point") == "after_provider_accepted", why
    assert got.marker.get("status") == "sending", why  # the kill left it unrecorded
    assert len(got.texts) == 1, why
    assert got.rows["sms"].provider_id == got.marker["provider_id"] == got.texts[0]["sid"], why
    assert got.rows["sms"].status in ("submitted", "delivered"), why  # the sandbox delivers it
    assert got.rows["sms"].attempts == 1, why  # no retry claimed it again
    assert got.outcomes() == {"email": "already_sent", "sms": "already_sent"}, why
    assert len(got.emails) == 1, why


async def test_an_attempt_failing_after_twilio_accepted_records_the_text_it_sent(
    tmp_path: Path, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> None:
    """The same failure in a worker that lives on: the attempt records the text before it
    fails, so the retry finds it sent and needs no list (two texts before it did)."""
    got = await lagging_list_send(tmp_path, temporal_local, queue_prefix, "raise")
    why = got.summary()
    assert got.temporal_attempts >= 2, why  # the attempt did fail
    assert len(got.texts) == 1, why
    assert got.rows["sms"].provider_id == got.marker["provider_id"] == got.texts[0]["sid"], why
    assert got.rows["sms"].attempts == 1, why  # no retry claimed the row again
    assert got.outcomes()["sms"] == "already_sent", why
    assert len(got.emails) == 1, why


async def test_a_retry_never_sends_while_a_timed_out_attempt_may_still_be_sending(
    tmp_path: Path, temporal_local: WorkflowEnvironment, queue_prefix: str
) -> None:
    """Twilio answers the first text after 4 s: its attempt times out at 3 s and Temporal starts
    another while the first is still waiting for Twilio. The list lags, so the second attempt
    could not find the first text there: only the send lease keeps it from sending a second."""
    urls = {"outreach": f"sqlite+aiosqlite:///{tmp_path / 'outreach.db'}"}
    async with exactly_once_rig(Ground(tmp_path, urls, temporal_local, queue_prefix)) as r:
        proxy = lagging_twilio(r.sb.twilio_url, timedelta(seconds=60), first_send_after=4.0)
        async with serve(proxy, free_port()) as proxy_url:
            # Twilio's answer must come within the client's timeout, also on a loaded machine: a
            # call that times out is the documented window (outcome unknown), not this case
            update = {"twilio_api_base_url": proxy_url, "twilio_timeout_seconds": 15}
            got = await r.run_in_process("sms", r.sb.settings.model_copy(update=update))
    why = got.summary()
    assert got.temporal_attempts >= 2, why  # the first attempt did time out
    assert len(got.texts) == 1, why
    assert got.rows["sms"].status == "submitted", why
    assert got.rows["sms"].provider_id == got.texts[0]["sid"], why
    assert got.rows["sms"].attempts == 1, why  # no attempt but the first claimed the row
    assert got.rows["sms"].sending_until is None, why
    assert len(got.emails) == 1, why


class CancelledAfterTheProvider(SendFaults):
    """The attempt is cancelled (as a worker's shutdown cancels what is still running) right
    after the SMTP server accepted the email, before the ledger recorded it."""

    def __init__(self) -> None:
        self.cancelled = False

    async def after_provider_accepted(self, row: models.Message, provider_id: str) -> None:
        if row.channel == "email" and not self.cancelled:
            self.cancelled = True
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # lands at the attempt's next wait: recording the send


async def test_an_attempt_cancelled_after_the_provider_accepted_still_records_the_send(
    ground: Ground,
) -> None:
    faults = CancelledAfterTheProvider()
    async with exactly_once_rig(ground) as rig:
        got = await rig.run_in_process("email", faults=faults)
    why = got.summary()
    assert faults.cancelled, why
    assert got.temporal_attempts >= 2, why  # the cancelled attempt failed; a retry ran
    # one email: the record was written all the same, so no retry sent it again
    assert [m.message_id for m in got.emails] == [got.rows["email"].provider_id], why
    assert got.rows["email"].status == "submitted" and got.rows["email"].attempts == 1, why


class DatabaseRestarts(SendFaults):
    """PostgreSQL crash-stops at one moment of the email's send and starts again 0.2 s later.

    After the provider accepted it (the default): the ledger cannot record `submitted` meanwhile
    (make chaos: emails sent twice). Back inside the attempt (RESTART_ATTEMPT; production's is
    60 s): the attempt waits the database out, up to its deadline. A database away longer than
    the attempt may see the email sent again (SMTP has no way to ask whether it was).

    Before the provider call: the attempt's next statement fails before anything was sent, and
    its lease must go back (make chaos: it could not, and held the email for minutes)."""

    def __init__(self, pg: ThrowawayPostgres, *, before_the_call: bool = False) -> None:
        self.pg = pg
        self.before_the_call = before_the_call
        self.back: asyncio.Task[None] | None = None

    async def before_provider_call(self, row: models.Message) -> None:
        if self.before_the_call:
            await self._restart(row)

    async def after_provider_accepted(self, row: models.Message, provider_id: str) -> None:
        if not self.before_the_call:
            await self._restart(row)

    async def _restart(self, row: models.Message) -> None:
        if row.channel != "email" or self.back is not None:
            return
        await asyncio.to_thread(self.pg.stop, "immediate")

        async def start_again() -> None:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(self.pg.start)

        self.back = asyncio.create_task(start_again())


@contextlib.contextmanager
def own_postgres(ground: Ground) -> Iterator[tuple[ThrowawayPostgres, Ground]]:
    """A PostgreSQL server of the test's own (it is the one restarted) holding outreach's
    database, and `ground` pointed at it."""
    try:
        pg_bin()
    except PostgresError as exc:
        pytest.skip(str(exc))  # Debian's postgresql is on every CI machine (.ci/run)
    with ThrowawayPostgres() as pg:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/postgres"
        yield pg, dataclasses.replace(ground, database_urls={"outreach": url})


# the suite's databases are not used (own_postgres replaces them): the cheapest of them
ITS_OWN_POSTGRES = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)


# a restart takes a few seconds on a loaded machine (the CI run saw one outlast a 3 s attempt)
RESTART_ATTEMPT = timedelta(seconds=20)


async def email_through_a_restart(
    ground: Ground, attempt: timedelta, *, before_the_call: bool = False
) -> Counted:
    """One journey's send on a PostgreSQL of its own, restarted during the email's send."""
    with own_postgres(ground) as (pg, own):
        faults = DatabaseRestarts(pg, before_the_call=before_the_call)
        async with exactly_once_rig(own) as rig:
            got = await rig.run_in_process("email", faults=faults, attempt=attempt)
        assert faults.back is not None
        await faults.back
    return got


@ITS_OWN_POSTGRES
async def test_a_database_restart_right_after_the_provider_accepted_sends_once(
    ground: Ground,
) -> None:
    got = await email_through_a_restart(ground, RESTART_ATTEMPT)
    why = got.summary()
    # the attempt waited the database out and recorded its send: one email, claimed once (the
    # text after it may take a retry while the database is still starting up: nothing was sent)
    assert got.rows["email"].status == "submitted" and got.rows["email"].attempts == 1, why
    assert [m.message_id for m in got.emails] == [got.rows["email"].provider_id], why


@ITS_OWN_POSTGRES
async def test_a_database_restart_before_the_provider_call_gives_the_lease_back(
    ground: Ground,
) -> None:
    # A lease that outlasts the rig's retries and its guard against a hang: kept, it fails this
    # test (20 attempts refused in 38 s, seen). Given back, the next attempt sends at once.
    got = await email_through_a_restart(
        ground, HANG_GUARD + timedelta(seconds=30), before_the_call=True
    )
    why = got.summary()
    # the failed attempt claimed the row and sent nothing; the next claimed it and sent it
    assert got.rows["email"].status == "submitted" and got.rows["email"].attempts == 2, why
    assert [m.message_id for m in got.emails] == [got.rows["email"].provider_id], why


class RestartingSmtp:
    """An SMTP server during whose DATA the database crash-stops (started again 0.2 s later):
    the send guard's transaction cannot end where it began."""

    def __init__(self, pg: ThrowawayPostgres) -> None:
        self.pg = pg
        self.accepted = 0
        self.back: threading.Timer | None = None

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        if self.back is None:
            await asyncio.to_thread(self.pg.stop, "immediate")
            self.back = threading.Timer(0.2, self.pg.start)
            self.back.start()
        self.accepted += 1
        return "250 OK"


@ITS_OWN_POSTGRES
async def test_a_database_restart_during_the_provider_call_sends_once(ground: Ground) -> None:
    with own_postgres(ground) as (pg, own):
        smtp, port = RestartingSmtp(pg), free_port()
        controller = Controller(smtp, hostname="127.0.0.1", port=port)
        await asyncio.to_thread(controller.start)
        try:
            async with outreach_rig(own, smtp_port=port) as st:
                c = new_contact()
                outcomes = await st.send(touch_request(c, EMAIL))
                rows = await st.rows(c.prospect_id)
        finally:
            await asyncio.to_thread(controller.stop)
            if smtp.back is not None:
                smtp.back.join()
    assert outcomes == {"email": "sent"}
    assert smtp.accepted == 1  # one email: the attempt recorded it once the database was back
    assert [(r.status, r.attempts) for r in rows] == [("submitted", 1)]
