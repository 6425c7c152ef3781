"""Twilio status callbacks, written with group commit.

Every SMS brings two to four callbacks, so this is the busiest webhook. One transaction per
request made the database the bottleneck (about 250 requests/s, p99 above 300 ms on the bench).
Here concurrent callbacks share a transaction: the first one to arrive is written at once, those
arriving meanwhile queue up and go together in the next one, with a handful of statements. Nobody waits for a timer, and a request is answered only after the transaction
holding its event committed, so a 204 still means stored.

On SQLite the batch runs on a connection of its own, on the event loop's thread, through the
sqlite3 driver itself (write_batch_sqlite). Through aiosqlite every statement, row fetched and
commit is a hand-off to its thread, and while the loop is busy each hand-off waits for the GIL
(up to the 5 ms switch interval): a batch took 30-500 ms. Through SQLAlchemy Core on the same
connection each statement's compiling, parameter processing and result rows cost more than
SQLite's own work (on the bench: 3.9k callbacks/s before the switch, 4.8k after). SQLite work here
is microseconds of CPU and never waits: the connection fails at once instead of waiting on a
lock (another connection writing) and the batch is retried after an asynchronous pause, and it
never checkpoints (the app's own connection does, off the loop). Other databases run
write_batch through the async engine (asyncpg has no such hand-off).

The rules are the per-event ones: each callback is stored once, keyed by (MessageSid, status),
and a message's status only moves forward, whatever order the callbacks come in.

Twilio may call back before the send activity has recorded the sid its create call returned (the
activity's commit was slow: a loaded database, one restarting): the callback is stored, but no
ledger row has that sid yet. The activity applies such stored callbacks when it records the sid
(catch_up), and on PostgreSQL both sides take a lock per sid (lock_messages) so that each
callback is seen by one of them: make chaos lost a tenth of the delivered callbacks without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

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


_LOCK_SIDS = text(
    "SELECT pg_advisory_xact_lock(hashtext(k))"
    " FROM (SELECT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS sids"
)


def lock_messages(conn: Connection, sids: Iterable[str]) -> None:
    """PostgreSQL: a lock per message sid, held to the end of the caller's transaction (in
    sorted order: two writers never wait on each other in a circle). SQLite has one writer.

    The writer takes its batch's before it looks for their ledger rows, the send activity its
    text's before it reads the callbacks stored for it: a callback's transaction then either
    commits before the activity reads, or finds the sid in the ledger."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_SIDS, {"keys": sorted({f"twilio-sms:{sid}" for sid in sids})})


def catch_up(conn: Connection, sid: str, state: LedgerState) -> bool:
    """Apply to `state` the callbacks stored for `sid` before the ledger had it, in arrival
    order; True when they moved it. Run where the sid is written to the ledger, in that
    transaction, after the row's write (SQLite: its write lock, which the writer takes too)."""
    lock_messages(conn, [sid])
    events = models.InboxEvent.__table__
    stored = conn.execute(
        select(events.c.event_id, events.c.payload)
        .where(
            events.c.provider == "twilio",
            events.c.event_id.in_([f"{sid}:{status}"[:200] for status in SMS_STATUS_RANK]),
        )
        .order_by(events.c.id)
    ).all()
    moved = False
    for event_id, payload in stored:
        status = event_id.rsplit(":", 1)[1]
        moved = advance(state, StatusCallback(sid, status, dict(payload or {}))) or moved
    return moved


def write_batch(conn: Connection, batch: Sequence[StatusCallback]) -> None:
    """Store the callbacks and move the ledger, in the caller's transaction."""
    messages, events = models.Message.__table__, models.InboxEvent.__table__
    lock_messages(conn, {cb.sid for cb in batch})
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


# --- SQLite: the raw driver on the loop's thread -------------------------------------------------
# The same statements as write_batch, written out: through SQLAlchemy each statement cost more
# than the whole batch's work in SQLite (compiling the cache key, processing every bound
# datetime and JSON value, building result rows). Column values are stored as SQLAlchemy stores
# them (DATETIME as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC, JSON as json.dumps), so the ORM reads
# these rows like any other.

_SQLITE_LEDGER = (
    "SELECT id, provider_id, prospect_id, status, provider_status, error FROM messages"
    " WHERE provider_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_EVENT = (
    "INSERT INTO inbox_events (provider, event_id, kind, payload, prospect_id, created_at,"
    " processed_at, delivery, attempts, last_error)"
    " VALUES ('twilio', ?, 'sms_status', ?, ?, ?, ?, 'none', 0, '')"
    " ON CONFLICT (provider, event_id) DO NOTHING"
)
_SQLITE_MOVE = (
    "UPDATE messages SET status = ?, provider_status = ?, error = ?, updated_at = ? WHERE id = ?"
)


def write_batch_sqlite(conn: sqlite3.Connection, batch: Sequence[StatusCallback]) -> None:
    """write_batch on SQLite's own driver, in a transaction of its own (BEGIN IMMEDIATE: the
    write lock first, so what the batch reads is what it updates; busy: fails at once)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        sids = json.dumps(list({cb.sid for cb in batch}))
        # sid -> (id, prospect_id, status, provider_status, error)
        ledger = {r[1]: r for r in conn.execute(_SQLITE_LEDGER, (sids,))}
        now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
        states: dict[str, LedgerState] = {}
        changed: dict[str, LedgerState] = {}
        for cb in batch:
            row = ledger.get(cb.sid)
            stored = conn.execute(
                _SQLITE_EVENT,
                (cb.event_id, json.dumps(cb.form), row[2] if row else None, now, now),
            )
            # not stored: a provider's retry, or the same event twice in the batch: no effect
            if stored.rowcount != 1 or row is None:
                continue
            state = states.setdefault(cb.sid, LedgerState(row[3], row[4], row[5]))
            if advance(state, cb):
                changed[row[0]] = state
        if changed:
            conn.executemany(
                _SQLITE_MOVE,
                [(s.status, s.provider_status, s.error, now, mid) for mid, s in changed.items()],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _loop_thread_sqlite(async_url: str) -> sqlite3.Connection:
    database = make_url(async_url).database or ""
    # timeout 0: a lock held by another connection fails at once (the writer retries after an
    # asynchronous pause); used only from the loop's thread
    conn = sqlite3.connect(database, timeout=0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    # a checkpoint syncs to disk: the app's own connection does it, off the loop
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


class StatusWriter:
    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine
        self._sqlite: sqlite3.Connection | None = None
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
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

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
        if self._sqlite is None:
            self._sqlite = _loop_thread_sqlite(engine.url.render_as_string(False))
        waited = 0.0
        while True:
            try:
                write_batch_sqlite(self._sqlite, batch)
                return
            except sqlite3.OperationalError as err:
                locked = "locked" in str(err) or "busy" in str(err)
                if not locked or waited > LOCKED_GIVE_UP_SECONDS:
                    raise
            # another connection is writing: let it finish, without holding up the loop
            await asyncio.sleep(LOCKED_RETRY_SECONDS)
            waited += LOCKED_RETRY_SECONDS
