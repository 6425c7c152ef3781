"""The one durable relay (shared.relay), driven over the outbox's table with a handler of the
test's own: leases outlive a crash, stop lets the item in flight finish, the backoff policy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.deals.models import EventOutbox
from services.outreach.events.delivery import EventDeliveries
from services.outreach.inbox import InboxRelay
from services.outreach.models import TaskNotification
from services.outreach.notifications import notifier
from services.prospecting import outbox
from services.prospecting.models import OutboxMessage
from shared.db import create_engine, session_factory
from shared.events import EventForwarder
from shared.migrations import upgrade
from shared.relay import Outcome, Relay, RelayTiming, done
from shared.settings import Settings
from tests.support.eventually import eventually
from tests.support.plans import query_plan
from tests.support.settings import make_settings


@pytest.fixture
async def sessions(
    tmp_path: Path, database_urls: dict[str, str]
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "prospecting")
    engine = create_engine(settings.database_url("prospecting"))
    yield session_factory(engine)
    await engine.dispose()


async def add_rows(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    async with sessions() as session:
        for n in range(count):
            outbox.add(
                session, kind="test", target="outreach", path="/x", payload={}, subject_id=str(n)
            )
        await session.commit()


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessions() as session:
        return list((await session.scalars(select(OutboxMessage))).all())


async def deliver(row: OutboxMessage) -> Outcome:
    return done(status=outbox.DONE)


def relay(
    sessions: async_sessionmaker[AsyncSession],
    timing: RelayTiming,
    handle: Callable[[OutboxMessage], Awaitable[Outcome]] = deliver,
) -> Relay[OutboxMessage]:
    return Relay("test relay", lambda: sessions, outbox.TABLE, handle, timing)


async def test_the_claims_of_a_crashed_relay_are_taken_again_after_their_lease(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_rows(sessions, 3)
    # long enough that the survivor's first look (right after the claim) falls inside it on a
    # loaded machine (0.3 s did not, once, in CI); the wait below is the lease's length
    timing = RelayTiming(lease=3.0)
    crashed = relay(sessions, timing)
    assert len(await crashed.take()) == 3  # claimed, then the process died: never recorded
    survivor = relay(sessions, timing)
    assert await survivor.run_once() == 0  # leased: not due for anyone else
    for _ in range(400):
        handled = await survivor.run_once()
        if handled:
            break
        await asyncio.sleep(0.05)
    assert handled == 3
    assert {(r.status, r.attempts) for r in await rows(sessions)} == {(outbox.DONE, 1)}


async def test_two_relays_claim_each_row_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_rows(sessions, 10)
    a, b = relay(sessions, RelayTiming()), relay(sessions, RelayTiming())
    seen_by_b = await b.due()
    taken = await asyncio.gather(a.take(), a.take())
    assert sorted(r.id for r in taken[0] + taken[1]) == sorted(seen_by_b)
    assert await b.claim(seen_by_b) == []


async def test_a_row_whose_lease_passed_while_its_batch_waited_is_left_to_who_claimed_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A relay handles its batch a chunk at a time. Its first item outlasts the lease; another
    replica claims the second row meanwhile and handles it. The first relay leaves that row
    alone (it used to handle it too: a rep notified twice, an event delivered twice), and
    handles the third, whose lease passed with nobody claiming it (renewed, still its own)."""
    await add_rows(sessions, 3)
    released = asyncio.Event()
    handled: list[tuple[str, str]] = []

    def handler(name: str) -> Callable[[OutboxMessage], Awaitable[Outcome]]:
        async def handle(row: OutboxMessage) -> Outcome:
            handled.append((name, row.subject_id or ""))
            if (name, row.subject_id) == ("a", "0"):
                await released.wait()  # outlasts the lease
            return done(status=outbox.DONE)

        return handle

    a = relay(sessions, RelayTiming(concurrency=1, lease=0.5), handler("a"))
    b = relay(sessions, RelayTiming(concurrency=1), handler("b"))
    mine = await a.take()
    assert [r.subject_id for r in mine] == ["0", "1", "2"]
    working = asyncio.create_task(a.handle(mine))
    await eventually(lambda: asyncio.sleep(0, bool(handled)), "a at its first row")
    await asyncio.sleep(0.7)  # a's lease is over
    second = await b.claim([mine[1].id])
    assert [r.subject_id for r in second] == ["1"]
    await b.handle(second)
    released.set()
    await working
    assert sorted(handled) == [("a", "0"), ("a", "2"), ("b", "1")]
    assert {(r.status, r.attempts) for r in await rows(sessions)} == {(outbox.DONE, 1)}


async def test_stop_lets_the_item_in_flight_finish_and_hands_back_the_rest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_rows(sessions, 2)
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(row: OutboxMessage) -> Outcome:
        entered.set()
        await release.wait()
        return done(status=outbox.DONE)

    running = relay(sessions, RelayTiming(concurrency=1, lease=3600), slow)
    running.start()
    await entered.wait()
    stopping = asyncio.create_task(running.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the item in flight
    release.set()
    await stopping
    finished = await rows(sessions)
    assert sorted((r.status, r.attempts) for r in finished) == [
        (outbox.DONE, 1),
        (outbox.PENDING, 0),
    ]
    # the row it had claimed but not started is due again at once, not after its lease
    assert await relay(sessions, RelayTiming()).run_once() == 1


async def test_claims_are_counted_and_a_hand_back_gives_its_claim_back(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    """The notifications' table counts claims (services.outreach.notifications): an attempt
    that ended unrecorded leaves one claim more than the attempts recorded; a row handed back
    by a stop before it started does not."""
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "outreach")
    engine = create_engine(settings.database_url("outreach"))
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            for n in range(2):
                session.add(
                    TaskNotification(
                        task_id=f"t{n}",
                        reason="urgent",
                        recipient_rep_id="r",
                        channel="email",
                        target="r@example.com",
                        next_attempt_at=datetime.now(UTC),
                    )
                )
            await session.commit()
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow(row: TaskNotification) -> Outcome:
            entered.set()
            await release.wait()
            return done(status="sent")

        timing = RelayTiming(concurrency=1, lease=1.0)
        running = Relay("test relay", lambda: sessions, notifier.TABLE, slow, timing)
        running.start()
        await entered.wait()
        stopping = asyncio.create_task(running.stop())
        await asyncio.sleep(0)
        release.set()
        await stopping

        async def counts() -> list[tuple[str, int, int]]:
            async with sessions() as session:
                found = (await session.scalars(select(TaskNotification))).all()
            return sorted((r.status, r.attempts, r.claims) for r in found)

        assert await counts() == [("pending", 0, 0), ("sent", 1, 1)]
        crashed = Relay("test relay", lambda: sessions, notifier.TABLE, slow, timing)
        [taken] = await crashed.take()  # then the process died: never recorded
        assert (taken.attempts, taken.claims) == (0, 1)
        await asyncio.sleep(timing.lease)
        [again] = await crashed.take()
        assert (again.attempts, again.claims) == (0, 2)
        assert notifier.tried_before(again) and not notifier.tried_before(taken)
    finally:
        await engine.dispose()


async def test_a_backlog_of_old_rows_is_pruned_a_batch_per_pass_until_it_is_gone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Months of finished rows are not deleted in one transaction, nor an hour apart: a batch
    per pass, and the next pass goes on while a batch came back full."""
    await add_rows(sessions, 5)
    old = datetime.now(UTC) - timedelta(days=2)
    async with sessions() as session:
        await session.execute(update(OutboxMessage).values(status=outbox.DONE, created_at=old))
        await session.commit()
    timing = RelayTiming(retention=timedelta(days=1), prune_batch=2, poll_seconds=0.05)
    pruning = relay(sessions, timing)
    assert await pruning.prune_once()  # a full batch: more to go
    assert len(await rows(sessions)) == 3
    pruning.start()
    try:
        await eventually(lambda: _none_left(sessions), "the rest pruned", timeout=60)
    finally:
        await pruning.stop()
    assert not await pruning.prune_once()


async def _none_left(sessions: async_sessionmaker[AsyncSession]) -> bool | None:
    return True if not await rows(sessions) else None


@pytest.mark.parametrize("attempts", [1, 2, 3, 8, 20])
def test_the_backoff_doubles_up_to_its_cap_less_some_jitter(attempts: int) -> None:
    timing = RelayTiming(base_delay=1.0, max_delay=60.0, jitter=0.2)
    ceiling = min(60.0, 2.0 ** (attempts - 1))
    for _ in range(50):
        assert ceiling * 0.8 <= timing.backoff(attempts) <= ceiling
    assert RelayTiming(jitter=0).backoff(attempts) == min(300.0, 2.0 ** (attempts - 1))


def _pruning_relays(
    service: str, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> list[Relay[Any]]:
    """Every relay of `service` that prunes, as its app builds it (never started here)."""
    if service == "prospecting":
        return [outbox.OutboxRelay(lambda: sessions, settings)]
    if service == "deals":
        return [EventForwarder(lambda: sessions, EventOutbox, settings.outreach_url, "key")]
    rejected = timedelta(days=settings.rejected_item_retention_days)
    reports = timedelta(days=settings.webhook_event_retention_days)
    inbox = InboxRelay(
        lambda: sessions,
        lambda: None,  # type: ignore[arg-type,return-value]
        keep_rejected=rejected,
        keep_reports=reports,
    )
    return [EventDeliveries(lambda: sessions, settings), inbox]


@pytest.mark.parametrize("service", ["prospecting", "deals", "outreach"])
async def test_every_prune_finds_its_old_rows_through_an_index(
    service: str, tmp_path: Path, database_urls: dict[str, str]
) -> None:
    """The hourly prune of a table that grows for months reads the old rows, not the table (and
    an event's check that no delivery names it any more reads that event's deliveries only)."""
    settings = make_settings(tmp_path, database_urls)
    engine = create_engine(settings.database_url(service))
    relays = _pruning_relays(service, session_factory(engine), settings)
    try:
        pruned = [r for relay in relays for r in relay.retained()]
        assert pruned, service
        for retained in pruned:
            table = retained.id.class_.__tablename__
            plan = await query_plan(engine, retained.candidates(1000))
            # (status, created_at) where the prune asks for finished rows too
            assert re.search(rf"ix_{table}_(status_)?created_at", plan), plan
            if table == "webhook_events":
                assert "ix_event_deliveries_event_id" in plan, plan
    finally:
        for relay in relays:
            await relay.stop()
        await engine.dispose()


# the retention prunes' indexes (the migrations of 9eab940): tables a running release writes to
PRUNE_INDEXES = {
    "ix_event_deliveries_status_created_at": "event_deliveries",
    "ix_event_deliveries_event_id": "event_deliveries",
    "ix_webhook_events_created_at": "webhook_events",
    "ix_rejected_items_created_at": "rejected_items",
    "ix_outbox_status_created_at": "outbox",
    "ix_event_outbox_status_created_at": "event_outbox",
    # not a prune's: the analytics' window (deals 0010), the lists' pages (referrals 0006)
    "ix_deals_created_at": "deals",
    "ix_referral_asks_page": "referral_asks",
    "ix_referral_asks_rep_page": "referral_asks",
    "ix_referrals_page": "referrals",
    "ix_inbox_events_prospect": "inbox_events",  # a prospect's events (outreach 0025)
    "ix_inbox_events_due_lane": "inbox_events",  # the inbox relay's claim by lane (outreach 0030)
    "ix_inbox_events_created_at": "inbox_events",  # the reports' retention (outreach 0031)
}


@pytest.mark.empty_databases
# PostgreSQL only: SQLite has one writer, so a migration blocks it whatever it does
@pytest.mark.parametrize(
    "database_urls", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.parametrize("service", ["prospecting", "deals", "outreach", "referrals"])
async def test_the_prune_indexes_are_built_without_blocking_writes_to_their_tables(
    service: str, tmp_path: Path, database_urls: dict[str, str]
) -> None:
    """The release before keeps running while `closeflow migrate` runs: on PostgreSQL an index
    built on a table of webhook events or outbox rows that have grown for months must leave the
    table writable (a plain CREATE INDEX holds a SHARE lock, which blocks every insert, until
    the service's whole migration transaction ends)."""
    settings = make_settings(tmp_path, database_urls)
    held: dict[str, list[str]] = {}

    def locks_after(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        name = re.search(r"CREATE INDEX (?:CONCURRENTLY )?(?:IF NOT EXISTS )?(\w+)", statement)
        if name is None or name[1] not in PRUNE_INDEXES:
            return
        table = PRUNE_INDEXES[name[1]]
        check = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        check.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() "
            f"AND relation = '{table}'::regclass AND mode IN ('ShareLock', 'ExclusiveLock', "
            "'AccessExclusiveLock', 'ShareRowExclusiveLock')"
        )
        held[name[1]] = [row[0] for row in check.fetchall()]

    event.listen(Engine, "after_cursor_execute", locks_after)
    try:
        await asyncio.to_thread(upgrade, settings, service)
    finally:
        event.remove(Engine, "after_cursor_execute", locks_after)
    assert held, "no prune index built"
    assert held == {key: [] for key in held}, held
