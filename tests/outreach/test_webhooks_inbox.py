"""Durable ingestion: an event acknowledged to a provider reaches the journey even when Temporal
was down at the time, exactly once.

The outage is real: the test runs its own Temporal dev server (with a database file, so the
journey survives), stops it, posts provider webhooks, starts it again on the same port, and
watches the stored signals arrive through the app's own client and relay loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from services.outreach import models
from services.outreach.inbox import (
    InboxRelay,
    InboxTiming,
    JourneySignal,
    store_event,
)
from shared.contracts.journey import ReplyReceived, journey_id
from shared.contracts.names import Sig
from shared.providers import postmark, sendgrid
from shared.providers.postmark import basic_auth_header
from shared.providers.sendgrid import generate_key_pair, signed_headers
from tests.support.eventually import eventually
from tests.support.fixtures import binary
from tests.support.ports import free_port
from tests.support.settings import POSTMARK_PASSWORD, POSTMARK_USER
from tests.support.webhooks import (
    Rig,
    WebhookRigs,
    journeys,
    signals_of,
    start_journey,
    webhook_rig,
)

PRIVATE, PUBLIC = generate_key_pair()
USER, PASSWORD = POSTMARK_USER, POSTMARK_PASSWORD
CONFIG = {
    "postmark_webhook_user": USER,
    "postmark_webhook_password": PASSWORD,
    "sendgrid_webhook_public_key": PUBLIC,
}


async def temporal_server(port: int, db: Path) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        port=port,
        dev_server_existing_path=binary("temporal"),
        dev_server_database_filename=str(db),
        dev_server_extra_args=["--log-level", "error"],
    )


def reply(n: int, in_reply_to: str) -> dict[str, Any]:
    return postmark.inbound(
        from_email="ada@example.com",
        to_email="sales@closeflow.localhost",
        subject="Re: Quick question",
        text=f"answer {n}",
        stripped_reply=f"answer {n}",
        message_id_header=f"<reply-{n}-{uuid.uuid4().hex[:6]}@example.com>",
        in_reply_to=in_reply_to,
        references=None,
        now=time.time(),
    )


async def post_reply(rig: Rig, doc: dict[str, Any]) -> int:
    headers = basic_auth_header(USER, PASSWORD)
    return (
        await rig.http.post("/webhooks/postmark/inbound", json=doc, headers=headers)
    ).status_code


async def post_sendgrid(rig: Rig, items: list[dict[str, Any]]) -> int:
    body = sendgrid.batch_body(items)
    headers = signed_headers(PRIVATE, body, time.time())
    return (
        await rig.http.post("/webhooks/sendgrid/events", content=body, headers=headers)
    ).status_code


async def test_events_acknowledged_while_temporal_is_down_arrive_once_it_is_back(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    port, db = free_port(), tmp_path / "temporal.db"
    server = await temporal_server(port, db)
    # the app's client, as in production: one connection it keeps through the outage
    client = await Client.connect(f"127.0.0.1:{port}")
    try:
        async with webhook_rig(tmp_path, database_urls, client, **CONFIG) as rig:
            pid = uuid.uuid4().hex
            sent = await rig.add_message("email", "ada@example.com", "<t1@closeflow>", pid)
            async with journeys(server.client, rig.queue):
                await start_journey(server.client, rig.queue, pid)
            await server.shutdown()  # Temporal is gone

            docs = [reply(n, sent.provider_id or "") for n in range(3)]
            complaint = sendgrid.event(
                "spamreport", email="ada@example.com", smtp_id="<t1@closeflow>", now=time.time()
            )
            for doc in docs:
                assert await post_reply(rig, doc) == 200  # acknowledged all the same
            assert await post_sendgrid(rig, [complaint]) == 200
            assert await post_reply(rig, docs[0]) == 200  # Postmark retrying: a duplicate
            rows = await rig.inbox()
            assert len(rows) == 4
            assert {r.delivery for r in rows} == {"pending"}
            assert all(r.attempts >= 1 and r.last_error for r in rows)

            async def retried() -> bool:
                return all(r.attempts >= 3 for r in await rig.inbox())

            await eventually(retried, "the relay retrying while Temporal is down", timeout=15)

            server = await temporal_server(port, db)  # back, same address, same state
            async with journeys(server.client, rig.queue):
                handle = server.client.get_workflow_handle(journey_id(pid))

                async def all_four() -> list[dict[str, Any]] | None:
                    got = await signals_of(handle)
                    return got if len(got) >= 4 else None

                got = await eventually(all_four, "the stored signals after the outage", 20)
                await asyncio.sleep(0.5)
                assert await signals_of(handle) == got  # and nothing more
                assert Counter(s["name"] for s in got) == {"reply_received": 3, "stop_cadence": 1}
                excerpts = sorted(
                    s["payload"]["excerpt"] for s in got if s["name"] == "reply_received"
                )
                assert excerpts == ["answer 0", "answer 1", "answer 2"]
                rows = await rig.inbox()
                assert {r.delivery for r in rows} == {"delivered"}
                assert all(r.delivered_at is not None for r in rows)

                # The window a crash leaves: the signal reached Temporal but the row was not
                # marked. The relay delivers it again; Temporal drops it by its request id.
                async with rig.sessions() as s:
                    await s.execute(
                        update(models.InboxEvent)
                        .where(models.InboxEvent.id == rows[0].id)
                        .values(delivery="pending", next_attempt_at=datetime.now(UTC))
                    )
                    await s.commit()

                async def redelivered() -> bool:
                    row = (await rig.inbox())[0]
                    return row.delivery == "delivered" and row.attempts > rows[0].attempts

                await eventually(redelivered, "the second delivery of the same event", 10)
                await asyncio.sleep(0.3)
                assert await signals_of(handle) == got
                await handle.terminate()
    finally:
        await server.shutdown()


async def test_no_journey_is_recorded_and_not_retried(webhooks: WebhookRigs) -> None:
    async with webhooks(**CONFIG) as rig:
        sent = await rig.add_message("email", "ada@example.com", "<t1@closeflow>")  # no journey
        assert await post_reply(rig, reply(1, sent.provider_id or "")) == 200
        stranger = reply(2, "<unknown@elsewhere>")
        stranger["From"] = stranger["FromFull"]["Email"] = "nobody@example.org"
        assert await post_reply(rig, stranger) == 200
        await asyncio.sleep(0.5)  # several relay passes
        known, unknown = await rig.inbox()
        assert (known.delivery, known.attempts, known.prospect_id) == (
            "no_journey",
            1,
            sent.prospect_id,
        )
        assert "not found" in known.last_error
        assert (unknown.delivery, unknown.attempts, unknown.prospect_id) == ("no_journey", 0, None)


async def test_two_relays_never_take_the_same_row(webhooks: WebhookRigs) -> None:
    idle = InboxTiming(poll_seconds=3600)  # the app's own loop stays out of the way
    async with webhooks(idle) as rig:
        pid = uuid.uuid4().hex
        async with rig.journeys():
            handle = await rig.start_journey(pid)
            async with rig.sessions() as s:
                for n in range(20):
                    signal = JourneySignal(pid, Sig.REPLY_RECEIVED, ReplyReceived("sms", f"SM{n}"))
                    await store_event(s, "twilio", f"SM{n}", "sms_reply", {}, signal=signal)
                # as a request that died before its own attempt leaves them, lease over
                await s.execute(update(models.InboxEvent).values(next_attempt_at=datetime.now(UTC)))
                await s.commit()
            # a signal that fails on a loaded machine (an RPC cancelled) is tried again only
            # once the exclusivity is checked, not while b looks (the default is 0.5 s later)
            later = InboxTiming(base_delay=3600, jitter=0)
            a, b = (InboxRelay(lambda: rig.sessions, lambda: rig.client, later) for _ in "ab")
            seen_by_b = await b.due()
            assert len(seen_by_b) == 20
            assert await a.run_once() == 20  # a takes them while b is between its two steps
            assert await b.claim(seen_by_b) == []
            assert await b.run_once() == 0
            rows = await rig.inbox()
            # each row was tried once, by a alone (a signal that failed on a loaded machine, e.g.
            # an RPC cancelled, stays pending with that one attempt and is retried below)
            assert {r.attempts for r in rows} == {1}
            async with rig.sessions() as s:
                await s.execute(
                    update(models.InboxEvent)
                    .where(models.InboxEvent.delivery != "delivered")
                    .values(next_attempt_at=datetime.now(UTC))
                )
                await s.commit()

            retrier = InboxRelay(lambda: rig.sessions, lambda: rig.client)  # default backoff

            async def all_delivered() -> bool:
                await retrier.run_once()
                return {r.delivery for r in await rig.inbox()} == {"delivered"}

            await eventually(all_delivered, "every row delivered")

            async def all_twenty() -> list[dict[str, Any]] | None:
                got = await signals_of(handle)
                return got if len(got) >= 20 else None

            got = await eventually(all_twenty, "twenty signals", timeout=10)
            await asyncio.sleep(0.3)
            assert len(await signals_of(handle)) == 20
            assert sorted(s["payload"]["event_id"] for s in got) == sorted(
                f"SM{n}" for n in range(20)
            )
            await handle.terminate()
