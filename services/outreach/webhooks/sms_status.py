"""Twilio status callbacks, written with group commit.

Every SMS brings two to four callbacks, so this is the busiest webhook. One transaction per
request made the database the bottleneck (about 250 requests/s, p99 above 300 ms on the bench).
Here concurrent callbacks share a transaction: the first one to arrive is written at once, those
arriving meanwhile queue up and go together in the next one, with a handful of set-wise
statements. Nobody waits for a timer, and a request is answered only after the transaction
holding its event committed, so a 204 still means stored.

On SQLite the batch runs on a connection of its own, on the event loop's thread. Through
aiosqlite every statement, row fetched and commit is a hand-off to its thread, and while the
loop is busy each hand-off waits for the GIL (up to the 5 ms switch interval): a batch took
30-500 ms. SQLite work here is microseconds of CPU and never waits: the connection fails at
once instead of waiting on a lock (another connection writing) and the batch is retried after
an asynchronous pause, and it never checkpoints (the app's own connection does, off the loop).
Other databases run the same code through the async engine (asyncpg has no such hand-off).

The rules are the per-event ones: each callback is stored once, keyed by (MessageSid, status),
and a message's status only moves forward, whatever order the callbacks come in.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from services.outreach import models
from shared.db import utcnow

log = logging.getLogger(__name__)

# Twilio's statuses in the order a message moves through them; the final ones share a rank so
# none overrides another, and a late 'sent' never overrides 'delivered'.
SMS_STATUS_RANK = {
    "scheduled": 0,
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}
FAILED_STATUSES = frozenset({"failed", "undelivered", "canceled"})
MAX_BATCH = 200
LOCKED_RETRY_SECONDS = 0.002
LOCKED_GIVE_UP_SECONDS = 30.0


@dataclass(frozen=True)
class StatusCallback:
    sid: str
    status: str
    form: dict[str, str]

    @property
    def event_id(self) -> str:
        return f"{self.sid}:{self.status}"[:200]


@dataclass
class LedgerState:
    status: str
    provider_status: str
    error: str


def advance(state: LedgerState, callback: StatusCallback) -> bool:
    """Apply one callback to a message's state; False when it would move it backwards."""
    rank = SMS_STATUS_RANK.get(callback.status)
    # unknown statuses (Twilio adds some now and then) are kept but move nothing
    if rank is None or rank < SMS_STATUS_RANK.get(state.provider_status, -1):
        return False
    state.provider_status = callback.status
    if callback.status == "delivered":
        state.status = "delivered"
    elif callback.status in FAILED_STATUSES:
        state.status = "failed"
        code, text = callback.form.get("ErrorCode", ""), callback.form.get("ErrorMessage", "")
        state.error = f"Twilio error {code}: {text}".rstrip(": ") if code else callback.status
    return True


def write_batch(conn: Connection, batch: Sequence[StatusCallback]) -> None:
    """Store the callbacks and move the ledger, in the caller's transaction."""
    messages, events = models.Message.__table__, models.InboxEvent.__table__
    rows = conn.execute(
        select(
            messages.c.id,
            messages.c.provider_id,
            messages.c.prospect_id,
            messages.c.status,
            messages.c.provider_status,
            messages.c.error,
        )
        .where(messages.c.provider_id.in_({cb.sid for cb in batch}))
        .with_for_update()  # other replicas' writers wait (PostgreSQL; SQLite has one writer)
    ).all()
    ledger = {r.provider_id: r for r in rows}
    seen = set(
        conn.execute(
            select(events.c.event_id).where(
                events.c.provider == "twilio", events.c.event_id.in_({cb.event_id for cb in batch})
            )
        ).scalars()
    )
    now = utcnow()
    new: list[StatusCallback] = []
    for cb in batch:
        if cb.event_id not in seen:  # a provider's retry, or the same event twice in the batch
            seen.add(cb.event_id)
            new.append(cb)
    if not new:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    # on conflict: a concurrent writer (another replica) stored it first; its effect is its own
    conn.execute(
        insert(events).on_conflict_do_nothing(index_elements=["provider", "event_id"]),
        [
            {
                "provider": "twilio",
                "event_id": cb.event_id,
                "kind": "sms_status",
                "payload": cb.form,
                "prospect_id": ledger[cb.sid].prospect_id if cb.sid in ledger else None,
                "created_at": now,
                "processed_at": now,
                "delivery": "none",
                "attempts": 0,
                "last_error": "",
            }
            for cb in new
        ],
    )
    # Each message's new callbacks, folded in arrival order from its stored state.
    states: dict[str, LedgerState] = {}
    changed: dict[str, LedgerState] = {}
    for cb in new:
        row = ledger.get(cb.sid)
        if row is None:
            continue
        state = states.setdefault(cb.sid, LedgerState(row.status, row.provider_status, row.error))
        if advance(state, cb):
            changed[row.id] = state
    if changed:
        conn.execute(
            update(messages)
            .where(messages.c.id == bindparam("mid"))
            .values(
                status=bindparam("s"),
                provider_status=bindparam("ps"),
                error=bindparam("e"),
                updated_at=bindparam("u"),
            ),
            [
                {"mid": mid, "s": s.status, "ps": s.provider_status, "e": s.error, "u": now}
                for mid, s in changed.items()
            ],
        )


def _loop_thread_sqlite_engine(async_url: str) -> Engine:
    url = make_url(async_url).set(drivername="sqlite")
    engine = create_engine(
        url,
        poolclass=StaticPool,  # one connection, only ever used from the loop's thread
        connect_args={"timeout": 0, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions begin as below, not at the first write
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # a checkpoint syncs to disk: the app's own connection does it, off the loop
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # the write lock first, so what the batch reads is what it updates; busy: fail at once
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class StatusWriter:
    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine
        self._sync: Engine | None = None
        self._queue: list[tuple[StatusCallback, asyncio.Future[None]]] = []
        self._writing = False

    async def write(self, callback: StatusCallback) -> None:
        """Returns once the callback is committed (raises if its transaction failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((callback, done))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._drain())
        await done

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._commit([cb for cb, _ in batch])
                except Exception as err:
                    log.exception("storing %d Twilio status callbacks failed", len(batch))
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(err)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writing = False

    async def _commit(self, batch: Sequence[StatusCallback]) -> None:
        engine = self._engine()
        if engine.dialect.name != "sqlite":
            async with engine.begin() as conn:
                await conn.run_sync(write_batch, batch)
            return
        if self._sync is None:
            self._sync = _loop_thread_sqlite_engine(engine.url.render_as_string(False))
        waited = 0.0
        while True:
            try:
                with self._sync.begin() as conn:
                    write_batch(conn, batch)
                return
            except OperationalError as err:
                locked = "locked" in str(err.orig) or "busy" in str(err.orig)
                if not locked or waited > LOCKED_GIVE_UP_SECONDS:
                    raise
            # another connection is writing: let it finish, without holding up the loop
            await asyncio.sleep(LOCKED_RETRY_SECONDS)
            waited += LOCKED_RETRY_SECONDS
