"""Opt-outs racing sends in flight on PostgreSQL (issue 13): 0 messages accepted by a provider
after the opt-out committed.

Each race is one prospect: the real send activity (ledger row, slot, send lease, the consent
guard, the SMTP or Twilio sandbox) sends one touch while the real opt-out path runs for the same
address at a random moment: a Twilio STOP for a text; a Mailgun `unsubscribed` event or the
email's own unsubscribe link for an email. STORM_N / 10 races, many at a time.

How "after the opt-out committed" is told, without trusting the code under test: the sandboxes
themselves witness each acceptance. Right before a sandbox answers "accepted" (the SMTP 250, the
Twilio API's 201) it opens a new database snapshot and asks whether the address is opted out
(the same `consent.blocked` a send asks). A snapshot sees exactly the transactions committed
before it began, so "opted out" there means the opt-out committed before the provider accepted:
a send after an opt-out. As a second, independent record, each acceptance's wall-clock time
(the mailbox names its files by it) is compared with the time the opt-out's HTTP answer came
back (after its commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from devstack.sandbox.mailbox import Mailbox, MailboxHandler
from services.outreach import models
from services.outreach.activities import SendFaults, activities_for, close_activities
from services.outreach.app import create_app
from services.outreach.consent import service as consent
from shared.contracts.journey import Contact, TouchRequest, TouchResult
from shared.db import create_engine, session_factory
from shared.migrations import upgrade
from shared.providers.mailgun import event_payload
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
from shared.settings import Settings
from tests.storms.report import show, storm_n, table
from tests.support.databases import POSTGRES_URL
from tests.support.fixtures import fresh_databases
from tests.support.ports import free_port
from tests.support.sandboxes import EMAIL, SMS, touch_request, twilio_sandbox
from tests.support.serve import HTTP_TIMEOUT, serve
from tests.support.settings import make_settings

pytestmark = pytest.mark.postgres

PUBLIC = "http://test"
AT_ONCE = 16  # races in flight together (fewer than the send engine's 20 connections)
RETRY_SECONDS = 120  # a send that fails is retried for this long, as Temporal retries it
# When each race's opt-out starts, relative to its send (a third each): as the send starts; when
# the send has claimed its ledger row and is about to check consent and call the provider; once
# the provider accepted (the send activity's own fault-injection seam says when).
MOMENTS = ("with the send", "send about to call the provider", "provider accepted")
ANSWER_DELAY = 0.05  # the sandboxes take this long to accept: a provider call has a duration


@dataclass
class Acceptance:
    channel: str
    address: str
    accepted_ns: int  # wall clock, right before the sandbox answered "accepted"
    opted_out: str | None  # what a snapshot taken then said (None: not opted out)


class Witness:
    """Asks the database, at each acceptance, whether the address was opted out by then."""

    def __init__(self, url: str) -> None:
        # a new connection per question (no pool): the SMTP sandbox asks from its own thread
        # and event loop, and a snapshot taken on a fresh connection trusts nothing cached
        self.engine = create_async_engine(url, poolclass=NullPool)
        self.seen: list[Acceptance] = []
        self._lock = threading.Lock()

    async def opted_out(self, channel: str, address: str) -> str | None:
        async with session_factory(self.engine)() as session:
            return await consent.blocked(session, channel, address, None)

    async def check(self, channel: str, address: str) -> None:
        opted_out = await self.opted_out(channel, address)
        with self._lock:
            self.seen.append(Acceptance(channel, address, time.time_ns(), opted_out))


class RaceMoments(SendFaults):
    """Starts a race's opt-out at the moment of the send it was given: observes, changes nothing
    but a few milliseconds of timing."""

    def __init__(self, races: dict[str, Race]) -> None:
        self.races = races

    async def _reached(self, row: models.Message, moment: str) -> None:
        race = self.races.get(row.prospect_id or "")
        if race is not None and race.moment == moment:
            race.trigger.set()
            await asyncio.sleep(random.uniform(0, 0.02))  # let the opt-out get under way

    async def before_provider_call(self, row: models.Message) -> None:
        await self._reached(row, MOMENTS[1])

    async def after_provider_accepted(self, row: models.Message, provider_id: str) -> None:
        await self._reached(row, MOMENTS[2])


class WitnessedMailbox(MailboxHandler):
    def __init__(self, mailbox: Mailbox, witness: Witness) -> None:
        super().__init__(mailbox)
        self.witness = witness

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(ANSWER_DELAY)
        for rcpt in envelope.rcpt_tos:
            await self.witness.check("email", rcpt)
        return answer


class WitnessedTwilio:
    """ASGI wrapper of the Twilio sandbox: a 201 to a message creation is witnessed first."""

    def __init__(self, app: ASGIApp, witness: Witness) -> None:
        self.app, self.witness = app, witness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/Messages.json"):
            return await self.app(scope, receive, send)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        to = dict(parse_qsl(body.decode())).get("To", "")

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def witnessed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 201:
                await asyncio.sleep(ANSWER_DELAY)
                await self.witness.check("sms", to)
            await send(message)

        await self.app(scope, replay, witnessed)


def daytime_zone() -> str:
    """A zone where it is the middle of the day now: texts go only 08:00-21:00 local."""
    now = datetime.now(UTC)
    for offset in range(-11, 13):
        name = f"Etc/GMT{-offset:+d}" if offset else "UTC"
        if 10 <= now.astimezone(ZoneInfo(name)).hour <= 17:
            return name
    return "UTC"


@dataclass
class Race:
    contact: Contact
    channel: str
    opt_out: str  # which path
    moment: str  # one of MOMENTS
    trigger: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    send: TouchResult | None = None
    send_error: str = ""
    send_seconds: float = 0.0
    opt_out_status: int = 0
    opted_out_ns: int = 0  # wall clock once the opt-out's answer (after its commit) came back


@dataclass
class Stack:
    settings: Settings
    witness: Witness
    mailbox: Mailbox
    http: httpx.AsyncClient  # the outreach app: its webhooks and unsubscribe links
    sessions: async_sessionmaker[AsyncSession]
    send_touch: Callable[..., Awaitable[TouchResult]]  # the real send activity


@contextlib.asynccontextmanager
async def racing_stack(
    tmp_path: Path, temporal: WorkflowEnvironment, races: dict[str, Race]
) -> AsyncIterator[Stack]:
    async with fresh_databases("postgres", tmp_path) as urls:
        smtp_port, twilio_port = free_port(), free_port()
        settings = make_settings(
            tmp_path,
            {"outreach": urls["outreach"]},
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            twilio_api_base_url=f"http://127.0.0.1:{twilio_port}",
            outreach_public_url=PUBLIC,
            task_queue_prefix=f"storm{uuid.uuid4().hex[:6]}-",
        )
        await asyncio.to_thread(upgrade, settings, "outreach")
        witness = Witness(urls["outreach"])
        mailbox = Mailbox(tmp_path / "mailbox")
        smtp = Controller(WitnessedMailbox(mailbox, witness), hostname="127.0.0.1", port=smtp_port)
        await asyncio.to_thread(smtp.start)
        twilio_app = twilio_sandbox(settings, twilio_port, PUBLIC)
        engine = create_engine(settings.database_url("outreach"))
        acts = activities_for(settings, session_factory(engine), faults=RaceMoments(races))
        app = create_app(settings, temporal_client=temporal.client)
        try:
            async with (
                serve(WitnessedTwilio(twilio_app, witness), twilio_port),
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app), base_url=PUBLIC
                ) as http,
            ):
                yield Stack(settings, witness, mailbox, http, app.state.sessions, acts[0])
        finally:
            await close_activities(acts)
            await engine.dispose()
            smtp.stop()


async def run_send(
    send_touch: Callable[..., Awaitable[TouchResult]], req: TouchRequest
) -> TouchResult:
    """The send activity as Temporal runs it: in an activity context with a real deadline, each
    failed attempt retried (an attempt that timed out mid-call keeps its send lease)."""
    give_up = time.monotonic() + RETRY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        env = ActivityEnvironment()
        env.info = dataclasses.replace(
            env.info,
            activity_type="send_touch",
            attempt=attempt,
            started_time=datetime.now(UTC),
            start_to_close_timeout=timedelta(seconds=30),
        )
        try:
            result: TouchResult = await env.run(send_touch, req)
            return result
        except Exception:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(min(attempt, 5))


def address(race: Race) -> str:
    return (race.contact.email if race.channel == "email" else race.contact.phone) or ""


async def opt_out(stack: Stack, race: Race) -> int:
    c, http, settings = race.contact, stack.http, stack.settings
    if race.opt_out == "twilio STOP":
        sid = "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": settings.twilio_account_sid,
            "MessageSid": sid,
            "From": c.phone or "",
            "To": settings.twilio_from_number,
            "Body": "STOP",
        }
        token = settings.twilio_auth_token.get_secret_value()
        signature = sign_twilio_request(token, f"{PUBLIC}/webhooks/twilio/sms", params)
        r = await http.post(
            "/webhooks/twilio/sms",
            content=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                SIGNATURE_HEADER: signature,
            },
        )
        return r.status_code
    if race.opt_out == "mailgun unsubscribed":
        doc = event_payload(
            event="unsubscribed",
            recipient=c.email or "",
            message_id=f"<{uuid.uuid4().hex}@elsewhere.test>",
            event_id=uuid.uuid4().hex,
            severity=None,
            reason="storm",
            signing_key=settings.mailgun_signing_key.get_secret_value(),
            now=time.time(),
        )
        return (await http.post("/webhooks/mailgun/events", json=doc)).status_code
    # the email's own unsubscribe link: it exists once the send wrote its ledger row
    for _ in range(2_000):
        async with stack.sessions() as s:
            token = await s.scalar(
                select(models.Message.unsubscribe_token).where(
                    models.Message.prospect_id == c.prospect_id
                )
            )
        if token:
            return (await http.post(f"/unsubscribe/{token}")).status_code
        await asyncio.sleep(0.002)
    return 0


async def test_no_send_is_accepted_after_its_opt_out_committed(
    tmp_path: Path, temporal_local: WorkflowEnvironment, capsys: pytest.CaptureFixture[str]
) -> None:
    if not POSTGRES_URL:
        pytest.skip("set CLOSEFLOW_TEST_POSTGRES_URL")
    n = max(20, storm_n() // 10)
    zone = daytime_zone()
    paths = ["twilio STOP", "mailgun unsubscribed", "twilio STOP", "unsubscribe link"]
    races = []
    for i in range(n):
        tag = uuid.uuid4().hex[:10]
        c = Contact(
            uuid.uuid4().hex,
            "Ada",
            "Lovelace",
            email=f"race-{tag}@race{i % 5}.example.com",
            phone=f"+1646{i:07d}",
            company="Analytical Engines",
            timezone=zone,
        )
        path = paths[i % len(paths)]
        channel = "sms" if path == "twilio STOP" else "email"
        races.append(Race(c, channel, path, MOMENTS[(i // len(paths)) % len(MOMENTS)]))
    async with racing_stack(
        tmp_path, temporal_local, {r.contact.prospect_id: r for r in races}
    ) as stack:
        gate = asyncio.Semaphore(AT_ONCE)

        async def one(race: Race) -> None:
            req = touch_request(race.contact, EMAIL if race.channel == "email" else SMS)

            async def sending() -> None:
                began = time.perf_counter()
                try:
                    race.send = await run_send(stack.send_touch, req)
                except Exception as err:  # reported in the table, and failed below
                    race.send_error = f"{type(err).__name__}: {err}"
                race.send_seconds = time.perf_counter() - began
                race.trigger.set()  # a send that never reached its moment: opt out now

            async def opting_out() -> None:
                if race.moment == MOMENTS[0]:
                    await asyncio.sleep(random.uniform(0, 0.05))
                else:
                    await race.trigger.wait()
                race.opt_out_status = await opt_out(stack, race)
                race.opted_out_ns = time.time_ns()

            async with gate:
                await asyncio.gather(sending(), opting_out())

        started = time.perf_counter()
        await asyncio.gather(*(one(r) for r in races))
        seconds = time.perf_counter() - started
        # the witness sees opt-outs: once they are over, every address is opted out to it
        sample = random.sample(races, min(50, len(races)))
        unseen = [r for r in sample if await stack.witness.opted_out(r.channel, address(r)) is None]
        async with stack.sessions() as s:
            submitted = Counter(
                (m.channel, m.to_address)
                for m in (await s.scalars(select(models.Message))).all()
                if m.status in ("submitted", "delivered")
            )

    by_address = {(r.channel, address(r)): r for r in races}
    durations = sorted(r.send_seconds for r in races)
    seen = stack.witness.seen
    accepted = Counter((a.channel, a.address) for a in seen)
    after_commit = [a for a in seen if a.opted_out is not None]
    after_clock = [
        a for a in seen if a.accepted_ns > by_address[(a.channel, a.address)].opted_out_ns
    ]
    rows: list[list[object]] = []
    for path, moment in sorted({(r.opt_out, r.moment) for r in races}):
        mine = [r for r in races if (r.opt_out, r.moment) == (path, moment)]
        keys = {(r.channel, address(r)) for r in mine}
        outcomes = Counter(
            next((o.status for o in r.send.outcomes), "none") if r.send else "error" for r in mine
        )
        rows.append(
            [
                path,
                moment,
                len(mine),
                sum(1 for r in mine if 200 <= r.opt_out_status < 300),
                outcomes["sent"],
                outcomes["suppressed"],
                sum(v for k, v in outcomes.items() if k not in ("sent", "suppressed")),
                sum(accepted[k] for k in keys),
                sum(1 for a in after_commit if (a.channel, a.address) in keys),
                sum(1 for a in after_clock if (a.channel, a.address) in keys),
            ]
        )
    show(
        capsys,
        table(
            f"Opt-outs racing sends in flight (PostgreSQL): {n} races, {AT_ONCE} at a time, "
            f"sends took {durations[len(durations) // 2]:.2f}s "
            f"(p50), {durations[-1]:.2f}s (max); {seconds:.1f}s in all",
            [
                "opt-out path",
                "opt-out starts",
                "races",
                "opt-outs 2xx",
                "sent",
                "refused (opted out)",
                "other/error",
                "provider acceptances",
                "accepted after opt-out committed (snapshot)",
                "accepted after opt-out answered (clock)",
            ],
            [*rows, ["all", "", *(sum(int(r[i]) for r in rows) for i in range(2, 10))]],  # type: ignore[call-overload]
        ),
    )
    assert unseen == [], unseen[:3]
    errors = [r.send_error for r in races if r.send_error]
    assert not errors, errors[:5]
    assert all(200 <= r.opt_out_status < 300 for r in races), Counter(
        r.opt_out_status for r in races
    )
    assert after_commit == [], after_commit[:5]
    assert after_clock == [], after_clock[:5]
    # every acceptance is a ledger row marked sent, once: nothing sent twice or unrecorded
    assert accepted == submitted
    assert max(accepted.values(), default=1) == 1
    assert len(stack.mailbox.ids()) == sum(v for (ch, _), v in accepted.items() if ch == "email")
