"""Twilio status callbacks in Twilio's own format, out of order: a status never regresses."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from temporalio.testing import WorkflowEnvironment

from services.outreach import models
from services.outreach.activities import activities_for, close_activities
from services.outreach.notifications import text_status
from services.outreach.webhooks import sms_status
from services.outreach.webhooks.twilio import MAX_FORM_FIELDS
from shared.db import create_engine
from shared.providers.twilio_signature import SIGNATURE_HEADER, sign_twilio_request
from tests.observability.scrape import parse, total
from tests.support.databases import POSTGRES_URL
from tests.support.fixtures import fresh_databases
from tests.support.settings import AUTH, make_settings
from tests.support.webhooks import Rig, WebhookRigs, webhook_rig

TO, FROM = "+14155550123", "+15005550006"


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


async def a_text(rig: Rig) -> tuple[str, models.Message]:
    """A text in the ledger as the send activity leaves it, under a fresh Twilio SID."""
    sid = new_sid()
    return sid, await rig.add_message("sms", TO, sid)


def callback(rig: Rig, sid: str, status: str, **extra: str) -> dict[str, str]:
    """The form Twilio posts to a message's StatusCallback (API version 2010-04-01)."""
    return {
        "AccountSid": rig.settings.twilio_account_sid,
        "ApiVersion": "2010-04-01",
        "From": FROM,
        "To": TO,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        **extra,
    }


async def post(
    rig: Rig,
    params: dict[str, str],
    signature: str | None = None,
    url: str = "http://test/webhooks/twilio/status",
) -> httpx.Response:
    token = rig.settings.twilio_auth_token.get_secret_value()
    sig = signature if signature is not None else sign_twilio_request(token, url, params)
    return await rig.http.post(url, data=params, headers={SIGNATURE_HEADER: sig})


async def test_a_callback_naming_a_text_left_sending_records_its_sid(
    webhooks: WebhookRigs,
) -> None:
    """A text whose worker died between Twilio's answer and the ledger's record: its row is
    `sending`, without a sid. Its callbacks name the row in their URL, signed with it: the first
    one records the sid and `submitted`, the next move it on, and a retry finds it sent. A text
    sent again for a row that has its sid (a retry that could not find the first) moves nothing
    there; another row id in the URL breaks the signature."""
    async with webhooks() as rig:
        row = await rig.add_message("sms", TO, "", status="sending")
        sid, url = new_sid(), sms_status.callback_url("http://test", row.id)
        for status in ("sent", "delivered"):
            assert (await post(rig, callback(rig, sid, status), url=url)).status_code == 204
        moved = await rig.message(row.id)
        assert (moved.status, moved.provider_id, moved.provider_status) == (
            "delivered",
            sid,
            "delivered",
        )
        assert moved.sent_at is not None and moved.sending_until is None
        # its events are the prospect's, the one that found the row included
        assert {e.prospect_id for e in await rig.inbox("twilio")} == {row.prospect_id}

        again = await post(rig, callback(rig, new_sid(), "sent"), url=url)
        assert again.status_code == 204
        assert (await rig.message(row.id)).provider_id == sid
        assert len(await rig.inbox("twilio")) == 3  # stored all the same

        params = callback(rig, new_sid(), "sent")
        signature = sign_twilio_request(
            rig.settings.twilio_auth_token.get_secret_value(), url, params
        )
        elsewhere = sms_status.callback_url("http://test", "f" * 32)
        forged = await post(rig, params, signature, url=elsewhere)
        assert forged.status_code == 403
        assert len(await rig.inbox("twilio")) == 3


async def test_a_callback_naming_a_rep_s_notification_text_records_it_sent(
    webhooks: WebhookRigs,
) -> None:
    """A rep's notification text whose answer from Twilio was lost: its row is still pending.
    The callback URL names the notification row, signed with the rest: the row is sent with the
    text's sid, so the notifier's next attempt never comes. A second sid for it (a second text)
    changes nothing; another row in the URL breaks the signature; nothing goes to the ledger."""
    async with webhooks() as rig:
        async with rig.sessions() as s:
            row = models.TaskNotification(
                task_id=uuid.uuid4().hex,
                reason="urgent",
                recipient_rep_id="rep-1",
                channel="sms",
                target=TO,
                text="Urgent: call Ada",
                attempts=1,
            )
            s.add(row)
            await s.commit()
        sid, url = new_sid(), text_status.callback_url("http://test", row.id)
        for status, sent_sid in (("sent", sid), ("delivered", sid), ("sent", new_sid())):
            answer = await post(rig, callback(rig, sent_sid, status), url=url)
            assert answer.status_code == 204
        async with rig.sessions() as s:
            got = await s.get(models.TaskNotification, row.id)
        assert got is not None
        assert (got.status, got.provider_id, got.next_attempt_at) == ("sent", sid, None)
        assert got.sent_at is not None

        params = callback(rig, new_sid(), "sent")
        signature = sign_twilio_request(
            rig.settings.twilio_auth_token.get_secret_value(), url, params
        )
        elsewhere = text_status.callback_url("http://test", "f" * 32)
        assert (await post(rig, params, signature, url=elsewhere)).status_code == 403
        assert await rig.inbox("twilio") == []
        assert await rig.count(models.Message) == 0


async def test_late_callbacks_never_move_a_status_back(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        sid, row = await a_text(rig)
        # Twilio sends queued, sent, delivered; the network hands them over in another order
        for status, extra in [
            ("delivered", {"RawDlrDoneDate": "2311271212"}),
            ("sent", {}),
            ("queued", {}),
        ]:
            assert (await post(rig, callback(rig, sid, status, **extra))).status_code == 204
        got = await rig.message(row.id)
        assert (got.status, got.provider_status) == ("delivered", "delivered")
        assert len(await rig.inbox("twilio")) == 3  # every callback is kept, in order received


async def test_undelivered_with_error_code_fails_the_message_for_good(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks() as rig:
        sid, row = await a_text(rig)
        assert (await post(rig, callback(rig, sid, "sent"))).status_code == 204
        assert (await rig.message(row.id)).provider_status == "sent"
        undelivered = callback(rig, sid, "undelivered", ErrorCode="30003")
        assert (await post(rig, undelivered)).status_code == 204
        assert (await post(rig, undelivered)).status_code == 204  # Twilio's retry: a duplicate
        assert (await post(rig, callback(rig, sid, "sent"))).status_code == 204  # late
        got = await rig.message(row.id)
        assert (got.status, got.provider_status) == ("failed", "undelivered")
        assert "30003" in got.error
        kinds = [e.event_id for e in await rig.inbox("twilio")]
        assert kinds == [f"{sid}:sent", f"{sid}:undelivered"]


async def test_unknown_statuses_and_messages_are_kept_without_effect(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        sid, row = await a_text(rig)
        assert (await post(rig, callback(rig, sid, "partially_delivered"))).status_code == 204
        assert (await post(rig, callback(rig, new_sid(), "delivered"))).status_code == 204
        got = await rig.message(row.id)
        assert (got.status, got.provider_status) == ("submitted", "accepted")
        events = await rig.inbox("twilio")
        assert [e.prospect_id for e in events] == [row.prospect_id, None]


async def test_a_forged_callback_is_refused_and_nothing_is_stored(webhooks: WebhookRigs) -> None:
    async with webhooks() as rig:
        sid, row = await a_text(rig)
        params = callback(rig, sid, "delivered")
        forged = sign_twilio_request("another-token", "http://test/webhooks/twilio/status", params)
        assert (await post(rig, params, forged)).status_code == 403
        assert (await post(rig, params, "")).status_code == 403
        assert (await rig.message(row.id)).status == "submitted"
        assert await rig.count(models.InboxEvent) == 0
        # a stranger's form of many fields is refused before it is read, on both routes
        many = "&".join(f"{n}=" for n in range(MAX_FORM_FIELDS + 1)).encode()
        urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
        for path in ("/webhooks/twilio/status", "/webhooks/twilio/sms"):
            answer = await rig.http.post(path, content=many, headers=urlencoded)
            assert answer.status_code == 400, (path, answer.text)
            assert "fields" in answer.json()["error"]["message"]
        assert await rig.count(models.InboxEvent) == 0


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)  # counting is no DB matter
async def test_callbacks_are_counted_like_every_webhook(webhooks: WebhookRigs) -> None:
    """The fast path answers before routing, and still counts each callback in
    closeflow_webhooks_total and closeflow_http_requests_total (issue 12)."""
    async with webhooks() as rig:
        sid, _ = await a_text(rig)
        assert (await post(rig, callback(rig, sid, "sent"))).status_code == 204
        assert (await post(rig, callback(rig, sid, "delivered"))).status_code == 204
        assert (await post(rig, callback(rig, sid, "delivered"), "forged")).status_code == 403
        assert (await post(rig, {"MessageSid": sid}, None)).status_code == 400  # no status
        scraped = await rig.http.get("/metrics", headers=AUTH)
        assert scraped.status_code == 200, scraped.text
        samples = parse(scraped.text)
        webhooks_total = "closeflow_webhooks_total"
        assert total(samples, webhooks_total, provider="twilio", result="accepted") == 2
        assert total(samples, webhooks_total, provider="twilio", result="invalid_signature") == 1
        assert total(samples, webhooks_total, provider="twilio", result="rejected") == 1
        route = {"route": "/webhooks/twilio/status", "method": "POST"}
        assert total(samples, "closeflow_http_requests_total", status="204", **route) == 2
        assert total(samples, "closeflow_http_requests_total", status="403", **route) == 1
        assert total(samples, "closeflow_http_request_duration_seconds_count", **route) == 4


async def test_concurrent_callbacks_sharing_a_transaction_keep_the_rules(
    webhooks: WebhookRigs,
) -> None:
    """Callbacks arriving together are written together; each message still ends at its
    furthest status, whatever the order, and a repeat in the same batch counts once."""
    async with webhooks() as rig:
        sids = [new_sid() for _ in range(10)]
        rows = [await rig.add_message("sms", TO, sid) for sid in sids]
        forms = []
        for n, sid in enumerate(sids):
            final = ("undelivered", {"ErrorCode": "30005"}) if n % 3 == 0 else ("delivered", {})
            forms += [
                callback(rig, sid, final[0], **final[1]),
                callback(rig, sid, final[0], **final[1]),
            ]
            forms += [callback(rig, sid, "sent"), callback(rig, sid, "queued")]
        responses = await asyncio.gather(*(post(rig, form) for form in forms))
        assert {r.status_code for r in responses} == {204}
        for n, row in enumerate(rows):
            got = await rig.message(row.id)
            want = ("failed", "undelivered") if n % 3 == 0 else ("delivered", "delivered")
            assert (got.status, got.provider_status) == want
        assert len(await rig.inbox("twilio")) == 3 * len(sids)


async def test_a_writer_holding_the_database_delays_callbacks_without_blocking(
    webhooks: WebhookRigs,
) -> None:
    async with webhooks() as rig:
        sid, row = await a_text(rig)
        engine = rig.app.state.engine
        async with engine.connect() as other:
            # another transaction holds the write lock (SQLite) / the ledger row (PostgreSQL)
            await other.begin()
            await other.execute(
                update(models.Message).where(models.Message.id == row.id).values(body="held")
            )
            pending = asyncio.create_task(post(rig, callback(rig, sid, "delivered")))
            await asyncio.sleep(0.3)  # the callback reaches the held row and waits on it
            # the loop still serves: had the writer blocked it, this request could only be
            # answered once the writer gave up (then `pending` would be done) or never
            health = await rig.http.get("/healthz")
            assert health.status_code == 200
            assert not pending.done()
            await other.commit()
        response = await asyncio.wait_for(pending, 10)
        assert response.status_code == 204
        got = await rig.message(row.id)
        assert (got.status, got.body) == ("delivered", "held")


async def test_the_write_ahead_log_is_checkpointed_off_the_loop(
    tmp_path: Path, temporal_local: WorkflowEnvironment
) -> None:
    """SQLite only. The callback writer's connection never checkpoints (that syncs to disk, on
    the event loop); the relay's housekeeping does, so the log does not grow without end."""
    database_urls = {"outreach": f"sqlite+aiosqlite:///{tmp_path / 'outreach.db'}"}
    async with webhook_rig(tmp_path, database_urls, temporal_local.client) as rig:
        sids = [new_sid() for _ in range(20)]
        for sid in sids:
            await rig.add_message("sms", TO, sid)
        await asyncio.gather(*(post(rig, callback(rig, sid, "sent")) for sid in sids))
        db = database_urls["outreach"].split("///", 1)[1]

        def checkpointed() -> int:
            """Events in the database file itself: immutable=1 reads it without the log."""
            with contextlib.closing(sqlite3.connect(f"file:{db}?immutable=1", uri=True)) as conn:
                return int(conn.execute("SELECT count(*) FROM inbox_events").fetchone()[0])

        writer = rig.app.state.sms_status_writer
        assert writer._sqlite is not None  # the loop-thread connection took the writes
        assert writer._sqlite.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert checkpointed() == 0  # all still in the log
        await rig.app.state.inbox.maintain(force=True)
        assert checkpointed() == len(sids)


async def test_the_fast_path_stores_what_the_orm_reads_and_keeps_the_route_behaviour(
    webhooks: WebhookRigs,
) -> None:
    """Status callbacks are answered before routing (StatusCallbackFastPath) and, on SQLite,
    written with the raw driver: the rows read back through the ORM as any other, errors have
    the API's shape, and a multipart callback still reaches the route."""
    async with webhooks() as rig:
        sid, row = await a_text(rig)
        before = datetime.now(UTC)
        assert (await post(rig, callback(rig, sid, "sent"))).status_code == 204
        [event] = await rig.inbox("twilio")
        assert (event.event_id, event.kind, event.prospect_id) == (
            f"{sid}:sent",
            "sms_status",
            row.prospect_id,
        )
        assert event.payload == callback(rig, sid, "sent")
        assert event.created_at.tzinfo is not None and event.created_at >= before
        moved = await rig.message(row.id)
        assert (moved.status, moved.provider_status) == ("submitted", "sent")
        assert moved.updated_at >= before

        missing = await post(rig, {"AccountSid": rig.settings.twilio_account_sid})
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "invalid_payload"
        huge = await rig.http.post(
            "http://test/webhooks/twilio/status",
            content=b"a=" + b"x" * 70_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code == 413
        # multipart/form-data: not what Twilio sends, parsed by the route
        params = callback(rig, sid, "delivered")
        url = "http://test/webhooks/twilio/status"
        signature = sign_twilio_request(
            rig.settings.twilio_auth_token.get_secret_value(), url, params
        )
        multipart = await rig.http.post(
            url,
            files={k: (None, v) for k, v in params.items()},
            headers={SIGNATURE_HEADER: signature},
        )
        assert multipart.status_code == 204
        assert (await rig.message(row.id)).status == "delivered"
        assert await rig.count(models.InboxEvent) == 2


@pytest.mark.postgres
async def test_a_connection_lost_mid_batch_is_written_again_on_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the writer keeps its connection from batch to batch. When the server drops
    it (a restart) in the middle of a batch, that batch is written again on a fresh connection
    (it is idempotent), the batch queued behind it follows, and each callback is stored once."""
    monkeypatch.setattr(sms_status, "POSTGRES_WRITERS", 1)  # both batches on one writer
    async with status_writer_on_postgres(tmp_path) as (engine, writer, sessions, sids):
        first_cb, second_cb = (sms_status.StatusCallback(s, "delivered", {}) for s in sids)
        async with engine.connect() as holder:
            await holder.begin()
            # the writer's batch waits on this message's lock, holding its connection
            await holder.execute(lock_sql, {"k": f"twilio-sms:{sids[0]}"})
            first = asyncio.create_task(writer.write(first_cb))
            pid = await waiting_backend(holder)
            second = asyncio.create_task(writer.write(second_cb))
            await asyncio.sleep(0.1)
            assert not second.done()  # queued behind the held batch
            await holder.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            # written again on a new connection, which waits on the lock in turn
            await waiting_backend(holder, other_than=pid)
            assert not first.done()
            await holder.rollback()
        await asyncio.wait_for(first, 10)
        await asyncio.wait_for(second, 10)
        await writer.write(first_cb)  # Twilio's retry: no second effect
        await assert_stored_once(sessions, sids)


@pytest.mark.postgres
async def test_a_held_connection_dropped_between_batches_is_replaced_and_given_back_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: between batches the writer holds its connection (no checkout, no ping) for
    LINGER_SECONDS. A restart that drops it meanwhile costs no callback: the next batch goes on
    a fresh one. Once no callback came for that long, or at shutdown, the connection is back in
    the pool."""
    monkeypatch.setattr(sms_status, "LINGER_SECONDS", 2.0)
    async with status_writer_on_postgres(tmp_path) as (engine, writer, sessions, sids):
        await writer.write(sms_status.StatusCallback(sids[0], "delivered", {}))
        pool = engine.sync_engine.pool
        assert pool.checkedout() == 1  # type: ignore[attr-defined]  # held by the writer
        async with engine.connect() as other:
            await drop_connections(other, engine.url.database or "")
        await writer.write(sms_status.StatusCallback(sids[1], "delivered", {}))
        await assert_stored_once(sessions, sids)
        for _ in range(100):
            if pool.checkedout() == 0:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.1)
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
        # shutting down does not wait out the linger: the connection is back at once
        monkeypatch.setattr(sms_status, "LINGER_SECONDS", 3600.0)
        await writer.write(sms_status.StatusCallback(sids[1], "read", {}))
        assert pool.checkedout() == 1  # type: ignore[attr-defined]
        await asyncio.wait_for(writer.close(), 60)
        assert pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.postgres
async def test_a_database_refusing_connections_for_a_moment_costs_no_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: while the server refuses connections (a restart), the batch waits and tries
    again, so the callbacks arriving meanwhile are stored once it is back rather than answered
    with a 5xx; after RECONNECT_SECONDS it gives up with the server's error."""
    async with status_writer_on_postgres(tmp_path) as (engine, writer, sessions, sids):
        admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        database = engine.url.database or ""

        async def refuse(refused: bool) -> None:
            async with admin.connect() as conn:
                allowed = "false" if refused else "true"
                await conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allowed}'))
                if refused:  # the writer's held connection goes too
                    await drop_connections(conn, database)

        try:
            await refuse(True)
            pending = asyncio.create_task(
                writer.write(sms_status.StatusCallback(sids[0], "delivered", {}))
            )
            await asyncio.sleep(1.0)
            assert not pending.done()  # still trying, not failed
            await refuse(False)
            await asyncio.wait_for(pending, 15)

            monkeypatch.setattr(sms_status, "RECONNECT_SECONDS", 0.5)
            await refuse(True)
            # the server's error of the last try: its refusal, or (when the first try, on the
            # dropped connection, already used up the half second on a loaded machine) the drop
            gone = "not currently accepting connections|terminating connection due to admin"
            with pytest.raises(Exception, match=gone):
                await asyncio.wait_for(
                    writer.write(sms_status.StatusCallback(sids[1], "delivered", {})), 15
                )
        finally:
            await refuse(False)
            await admin.dispose()
        await writer.write(sms_status.StatusCallback(sids[1], "delivered", {}))  # Twilio's retry
        await assert_stored_once(sessions, sids)


@pytest.mark.postgres
async def test_a_send_recording_its_sid_and_a_callback_naming_its_row_do_not_deadlock(
    tmp_path: Path,
) -> None:
    """PostgreSQL: Twilio's callback for a text, its URL naming the row, comes while the send
    activity records the text's sid. The status writer takes the sid's lock, then adopts the row;
    the activity takes the same lock before it writes the row. With the activity's former order
    (the row, then the lock), each waited for the other and PostgreSQL aborted one of them
    ("deadlock detected"): here the writer waits on the lock first, the activity comes second."""
    async with status_writer_on_postgres(tmp_path) as (engine, writer, sessions, _):
        row = ledger_row("")
        row.status, row.provider_id, row.attempts = "sending", None, 1
        async with sessions.begin() as session:
            session.add(row)
        sid = new_sid()
        url = engine.url.render_as_string(hide_password=False)
        acts = activities_for(make_settings(tmp_path, {"outreach": url}), sessions)
        outreach = acts[0].__self__  # type: ignore[attr-defined]
        try:
            async with engine.connect() as holder:
                await holder.begin()
                await holder.execute(lock_sql, {"k": f"twilio-sms:{sid}"})
                adopt = asyncio.create_task(
                    writer.write(sms_status.StatusCallback(sid, "sent", {}, row.id))
                )
                first = await waiting_backend(holder)
                record = asyncio.create_task(outreach._record_sent(row, sid, None))
                await waiting_backend(holder, other_than=first)
                await holder.rollback()
            await asyncio.wait_for(asyncio.gather(adopt, record), 30)
        finally:
            await close_activities(acts)
        async with sessions() as session:
            stored = await session.get(models.Message, row.id)
            assert stored is not None
            assert (stored.status, stored.provider_id, stored.provider_status) == (
                "submitted",
                sid,
                "sent",
            )


@contextlib.asynccontextmanager
async def status_writer_on_postgres(
    tmp_path: Path,
) -> AsyncIterator[tuple[AsyncEngine, sms_status.StatusWriter, async_sessionmaker[Any], list[str]]]:
    """A status writer on a fresh PostgreSQL database whose ledger has two texts (their sids)."""
    async with fresh_databases("postgres", tmp_path) as urls:
        engine = create_engine(urls["outreach"])
        writer = sms_status.StatusWriter(lambda: engine)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            sids = [new_sid(), new_sid()]
            async with sessions.begin() as session:
                session.add_all([ledger_row(sid) for sid in sids])
            yield engine, writer, sessions, sids
        finally:
            await writer.close()
            await engine.dispose()


async def drop_connections(conn: AsyncConnection, database: str) -> None:
    """Ends every other session on `database`, as a server restart does."""
    await conn.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :d AND pid <> pg_backend_pid()"
        ),
        {"d": database},
    )


async def assert_stored_once(sessions: async_sessionmaker[Any], sids: list[str]) -> None:
    """Each sid's 'delivered' callback stored once, and its message delivered."""
    async with sessions() as session:
        statuses = (
            await session.execute(select(models.Message.provider_id, models.Message.status))
        ).all()
        stored = (
            await session.execute(
                select(models.InboxEvent.event_id).where(models.InboxEvent.provider == "twilio")
            )
        ).scalars()
        assert dict(statuses) == {sid: "delivered" for sid in sids}
        assert sorted(stored) == sorted(f"{s}:delivered" for s in sids)


lock_sql = text("SELECT pg_advisory_xact_lock(hashtext(:k))")


def ledger_row(sid: str) -> models.Message:
    pid = uuid.uuid4().hex
    return models.Message(
        journey_id=f"journey-{pid}",
        touch_key="step-0",
        channel="sms",
        kind="cadence",
        prospect_id=pid,
        to_address=TO,
        body="Hello",
        status="submitted",
        provider_status="accepted",
        provider_id=sid,
    )


async def waiting_backend(holder: AsyncConnection, other_than: int = 0) -> int:
    """The backend waiting on an advisory lock (the writer's), once it waits; `other_than`:
    not that one (terminated, it may still be listed for a moment)."""
    for _ in range(200):
        pid = (
            await holder.execute(
                text(
                    "SELECT pid FROM pg_locks"
                    " WHERE locktype = 'advisory' AND NOT granted AND pid <> :other"
                    # every database's waits are listed, other tests' too
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                ),
                {"other": other_than},
            )
        ).scalar()
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError("the writer never waited on the lock")


async def test_old_delivery_reports_go_and_what_a_person_did_stays(
    webhooks: WebhookRigs,
) -> None:
    """A text's status callbacks (two to four per text, each holding both numbers) and the
    events nobody could be matched to are deleted once older than the retention; a STOP, a HELP
    and a reply that told the journey stay, for the timeline and the counts, however old. The ledger row keeps the status the reports gave it."""
    async with webhooks() as rig, rig.journeys():
        sid, row = await a_text(rig)
        await rig.start_journey(row.prospect_id)
        for status in ("sent", "delivered"):
            assert (await post(rig, callback(rig, sid, status))).status_code == 204

        async def inbound(sender: str, body: str) -> None:
            form = {**callback(rig, new_sid(), "received"), "From": sender, "Body": body}
            del form["MessageStatus"]
            url = "http://test/webhooks/twilio/sms"
            token = rig.settings.twilio_auth_token.get_secret_value()
            signed = {SIGNATURE_HEADER: sign_twilio_request(token, url, form)}
            assert (await rig.http.post(url, data=form, headers=signed)).status_code == 200

        await inbound(TO, "Sounds good, call me Tuesday")  # a reply: told the journey
        await inbound("+14155550199", "who is this?")  # nobody we wrote to
        await inbound(TO, "HELP")  # told nobody, but the timeline shows it
        await inbound(TO, "STOP")
        # a week short of the retention, and past it
        kinds = {e.id: e.kind for e in await rig.inbox()}
        assert sorted(kinds.values()) == [
            "sms_help", "sms_reply", "sms_reply", "sms_status", "sms_status", "sms_stop"
        ]  # fmt: skip
        keep = timedelta(days=rig.settings.webhook_event_retention_days)
        async with rig.sessions() as session:
            await session.execute(
                update(models.InboxEvent).values(created_at=datetime.now(UTC) - keep * 2)
            )
            await session.execute(  # one report still within the retention
                update(models.InboxEvent)
                .where(models.InboxEvent.id == min(kinds))
                .values(created_at=datetime.now(UTC) - keep + timedelta(days=7))
            )
            await session.commit()
        assert not await rig.app.state.inbox.prune_once()
        left = [(e.kind, e.prospect_id is not None) for e in await rig.inbox()]
        assert sorted(left) == [
            ("sms_help", True), ("sms_reply", True), ("sms_status", True), ("sms_stop", True)
        ]  # fmt: skip
        assert min(kinds) in {e.id for e in await rig.inbox()}  # the report within it
        got = await rig.message(row.id)
        assert (got.status, got.provider_status) == ("delivered", "delivered")


async def test_status_callbacks_are_listed_as_recorded(webhooks: WebhookRigs) -> None:
    """GET /inbox-events?outcome=recorded lists the events that told no journey anything: a
    text's status callbacks among them (they were stored without an outcome, listed as `none`
    and never found by that filter); those stored so before are listed the same way."""
    async with webhooks() as rig:
        sid, _row = await a_text(rig)
        for status in ("sent", "delivered"):
            assert (await post(rig, callback(rig, sid, status))).status_code == 204
        first, second = (e.id for e in await rig.inbox("twilio"))
        async with rig.sessions() as session:  # as the writer stored them before
            await session.execute(
                update(models.InboxEvent)
                .where(models.InboxEvent.id == first)
                .values(outcome="", outcome_detail="")
            )
            await session.commit()
        stored = [(e.outcome, e.outcome_detail) for e in await rig.inbox("twilio")]
        assert stored == [("", ""), ("recorded", "sms_status")]
        listed = await rig.http.get("/inbox-events", params={"outcome": "recorded"}, headers=AUTH)
        assert listed.status_code == 200, listed.text
        assert [(e["id"], e["outcome"]) for e in listed.json()] == [
            (second, "recorded"),
            (first, "recorded"),
        ]
