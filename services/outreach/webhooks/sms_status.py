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
write_batch_postgres on asyncpg's connection, with the batch as arrays (a handful of statements
whatever its size), several batches in flight, each writer keeping its connection from one batch
to the next.

The rules are the per-event ones: each callback is stored once, keyed by (MessageSid, status),
and a message's status only moves forward, whatever order the callbacks come in.

Each text's callback URL names its ledger row (`?message=<id>`, signed by Twilio with the rest of
the URL). A callback whose sid no ledger row has yet, naming a row still `sending` without a sid,
is that row's text: the writer records the sid and `submitted` (adopt). That is the row a send
attempt leaves when its worker dies between Twilio's answer and the ledger's record; its retry
then finds the text sent instead of looking for it in Twilio's message list, which may not show
it yet (a second text).

Twilio may call back before the send activity has recorded the sid its create call returned (the
activity's commit was slow: a loaded database, one restarting): the callback is stored, but no
ledger row has that sid yet. The activity applies such stored callbacks when it records the sid
(catch_up), and on PostgreSQL both sides take a lock per sid (lock_messages) so that each
callback is seen by one of them: make chaos lost a tenth of the delivered callbacks without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.outreach import models
from shared.db import sqlite_pragmas, utcnow

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
# PostgreSQL: batches in flight at once. A batch is five round trips, mostly waiting on the
# server; with one in flight the requests arriving meanwhile waited for it and the next. The
# per-sid advisory locks, taken in sorted order, already order writers that share a message
# (other replicas' too), so batches overlap safely. SQLite has one writer: one batch.
POSTGRES_WRITERS = 4
LOCKED_RETRY_SECONDS = 0.002
# PostgreSQL: how long an idle writer keeps its connection (and its task) for the next batch
LINGER_SECONDS = 1.0
# PostgreSQL out of reach (a restart): how long a batch keeps trying (Twilio waits 15 s for an answer)
RECONNECT_SECONDS = 10.0
RECONNECT_FIRST_PAUSE = 0.1
LOCKED_GIVE_UP_SECONDS = 30.0


# the callback URL's parameter naming the ledger row (a row id is 32 characters)
MESSAGE_PARAM = "message"
MAX_ROW_ID = 32


def callback_url(public_url: str, row_id: str, param: str = MESSAGE_PARAM) -> str:
    """The status callback URL of a text, naming its row under `param`: the ledger's by
    default, or another table's (notifications.text_status)."""
    return f"{public_url.rstrip('/')}/webhooks/twilio/status?{param}={row_id}"


def named_row(query: Iterable[tuple[str, str]], param: str = MESSAGE_PARAM) -> str:
    """The row a callback URL's (signed) query names under `param`, or ''."""
    named = [value for key, value in query if key == param]
    return named[-1] if named and len(named[-1]) <= MAX_ROW_ID else ""


@dataclass(frozen=True)
class StatusCallback:
    sid: str
    status: str
    form: dict[str, str]
    message_id: str = ""  # the ledger row its URL names ("": none, or a URL from before that)

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


# one statement for SQLAlchemy (:keys) and for asyncpg ($1)
_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock(hashtext(k))"
    " FROM (SELECT unnest(CAST({} AS text[])) AS k ORDER BY 1) AS sids"
)
_LOCK_SIDS = text(_LOCK_SQL.format(":keys"))


def _lock_keys(sids: Iterable[str]) -> list[str]:
    return sorted({f"twilio-sms:{sid}" for sid in sids})


def lock_messages(conn: Connection, sids: Iterable[str]) -> None:
    """PostgreSQL: a lock per message sid, held to the end of the caller's transaction (in
    sorted order: two writers never wait on each other in a circle). SQLite has one writer.

    The writer takes its batch's before it looks for their ledger rows, the send activity its
    text's before it reads the callbacks stored for it: a callback's transaction then either
    commits before the activity reads, or finds the sid in the ledger."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_SIDS, {"keys": _lock_keys(sids)})


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


def fold(
    batch: Sequence[StatusCallback],
    stored: Callable[[StatusCallback], bool],
    ledger: dict[str, tuple[str, str, str, str]],
) -> dict[str, LedgerState]:
    """Each message's new callbacks, folded in arrival order from its stored state: the
    ledger rows that moved, by id. `stored(cb)` says whether the callback was stored by this
    batch (not a provider's retry, nor the same event twice); `ledger` maps a sid to its row
    (id, status, provider_status, error)."""
    states: dict[str, LedgerState] = {}
    changed: dict[str, LedgerState] = {}
    for cb in batch:
        row = ledger.get(cb.sid)
        if row is None or not stored(cb):
            continue
        state = states.setdefault(cb.sid, LedgerState(row[1], row[2], row[3]))
        if advance(state, cb):
            changed[row[0]] = state
    return changed


# --- PostgreSQL: asyncpg's own statements ---------------------------------------------------------
# The batch as three statements on asyncpg's connection, each taking the whole batch as arrays:
# through SQLAlchemy the same work cost about a millisecond of CPU per statement (compiling the
# cache key, processing parameters, the greenlet hand-offs), which made the server CPU-bound at a
# quarter of the bare endpoint's rate.

_PG_LOCK = _LOCK_SQL.format("$1")
# The ledger rows (locked: other replicas' writers wait) and the events stored, in one round trip:
# rows with a provider_id are the ledger's, the others name an event this batch stored. On
# conflict: a provider's retry, or a concurrent writer (another replica) stored it first; its
# effect is its own.
_PG_STORE = (
    "WITH ledger AS ("
    " SELECT provider_id, id, status, provider_status, error, prospect_id FROM messages"
    " WHERE provider_id = ANY($1::text[]) FOR UPDATE"
    "), stored AS ("
    " INSERT INTO inbox_events (provider, event_id, kind, payload, prospect_id, created_at,"
    " processed_at, delivery, attempts, last_error, outcome, outcome_detail)"
    " SELECT 'twilio', t.e, 'sms_status', t.p::json,"
    " (SELECT l.prospect_id FROM ledger l WHERE l.provider_id = t.sid LIMIT 1),"
    " $5::timestamptz, $5::timestamptz, 'none', 0, '', 'recorded', 'sms_status'"
    " FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(e, p, sid, n)"
    " ORDER BY t.n"
    " ON CONFLICT (provider, event_id) DO NOTHING RETURNING event_id"
    ")"
    " SELECT provider_id, id, status, provider_status, error FROM ledger"
    " UNION ALL SELECT NULL, event_id, NULL, NULL, NULL FROM stored"
)
_PG_MOVE = (
    "UPDATE messages SET status = m.s, provider_status = m.ps, error = m.e,"
    " updated_at = $5::timestamptz"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS m(id, s, ps, e)"
    " WHERE messages.id = m.id"
)


# A row still `sending` without a sid, named by a callback whose sid the ledger lacks: its text.
_PG_ADOPT = (
    "UPDATE messages SET provider_id = a.sid, status = 'submitted', sending_until = NULL,"
    " sent_at = $3::timestamptz, updated_at = $3::timestamptz"
    " FROM unnest($1::text[], $2::text[]) AS a(id, sid)"
    " WHERE messages.id = a.id AND messages.channel = 'sms' AND messages.status = 'sending'"
    " AND coalesce(messages.provider_id, '') = ''"
    " RETURNING messages.provider_id, messages.id, messages.status, messages.provider_status,"
    " messages.error, messages.prospect_id"
)
# the adopted texts' events, stored by this batch before it knew their row: their prospect
_PG_EVENT_PROSPECT = (
    "UPDATE inbox_events SET prospect_id = x.p"
    " FROM unnest($1::text[], $2::text[]) AS x(e, p)"
    " WHERE inbox_events.provider = 'twilio' AND inbox_events.event_id = x.e"
    " AND inbox_events.prospect_id IS NULL"
)


def _orphans(batch: Iterable[StatusCallback], known: Container[str]) -> dict[str, str]:
    """sid -> the row its URL names, for the callbacks whose sid is not `known` to the ledger."""
    return {cb.sid: cb.message_id for cb in batch if cb.message_id and cb.sid not in known}


async def write_batch_postgres(conn: Any, batch: Sequence[StatusCallback]) -> None:
    """Store the callbacks and move the ledger in one transaction, on an asyncpg connection.
    The per-sid locks come first (lock_messages' keys, in sorted order), so the send
    activity's catch_up and other writers see each callback exactly once."""
    sids = list({cb.sid for cb in batch})
    unique: dict[str, StatusCallback] = {}
    for cb in batch:
        unique.setdefault(cb.event_id, cb)  # the same event twice: its first arrival
    now = utcnow()
    async with conn.transaction():
        await conn.execute(_PG_LOCK, _lock_keys(sids))
        rows = await conn.fetch(
            _PG_STORE,
            sids,
            list(unique),
            [json.dumps(cb.form) for cb in unique.values()],
            [cb.sid for cb in unique.values()],
            now,
        )
        ledger = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows if r[0] is not None}
        orphans = _orphans(unique.values(), ledger)
        if orphans:  # rare: a callback before the send recorded its sid
            adopted = await conn.fetch(_PG_ADOPT, list(orphans.values()), list(orphans), now)
            ledger.update({r[0]: (r[1], r[2], r[3], r[4]) for r in adopted})
            prospects = {r[0]: r[5] for r in adopted}
            events = [cb for cb in unique.values() if cb.sid in prospects]
            if events:
                await conn.execute(
                    _PG_EVENT_PROSPECT,
                    [cb.event_id for cb in events],
                    [prospects[cb.sid] for cb in events],
                )
        inserted = {r[1] for r in rows if r[0] is None}
        first = {id(cb) for cb in unique.values() if cb.event_id in inserted}
        changed = fold(batch, lambda cb: id(cb) in first, ledger)
        if changed:
            await conn.execute(
                _PG_MOVE,
                list(changed),
                [s.status for s in changed.values()],
                [s.provider_status for s in changed.values()],
                [s.error for s in changed.values()],
                now,
            )


# --- SQLite: the raw driver on the loop's thread -------------------------------------------------
# The same work as write_batch_postgres, in SQLite's SQL: through SQLAlchemy each statement cost more
# than the whole batch's work in SQLite (compiling the cache key, processing every bound
# datetime and JSON value, building result rows). Column values are stored as SQLAlchemy stores
# them (DATETIME as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC, JSON as json.dumps), so the ORM reads
# these rows like any other.

_SQLITE_LEDGER = (
    "SELECT provider_id, id, status, provider_status, error, prospect_id FROM messages"
    " WHERE provider_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_EVENT = (
    "INSERT INTO inbox_events (provider, event_id, kind, payload, prospect_id, created_at,"
    " processed_at, delivery, attempts, last_error, outcome, outcome_detail)"
    " VALUES ('twilio', ?, 'sms_status', ?, ?, ?, ?, 'none', 0, '', 'recorded', 'sms_status')"
    " ON CONFLICT (provider, event_id) DO NOTHING"
)
_SQLITE_MOVE = (
    "UPDATE messages SET status = ?, provider_status = ?, error = ?, updated_at = ? WHERE id = ?"
)
_SQLITE_ADOPT = (
    "UPDATE messages SET provider_id = ?, status = 'submitted', sending_until = NULL,"
    " sent_at = ?, updated_at = ?"
    " WHERE id = ? AND channel = 'sms' AND status = 'sending' AND coalesce(provider_id, '') = ''"
    " RETURNING provider_id, id, status, provider_status, error, prospect_id"
)


def write_batch_sqlite(conn: sqlite3.Connection, batch: Sequence[StatusCallback]) -> None:
    """The batch on SQLite's own driver, in a transaction of its own (BEGIN IMMEDIATE: the
    write lock first, so what the batch reads is what it updates; busy: fails at once)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        sids = json.dumps(list({cb.sid for cb in batch}))
        rows = conn.execute(_SQLITE_LEDGER, (sids,)).fetchall()
        now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
        for sid, message_id in _orphans(batch, {r[0] for r in rows}).items():
            rows += conn.execute(_SQLITE_ADOPT, (sid, now, now, message_id)).fetchall()
        ledger = {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
        prospects = {r[0]: r[5] for r in rows}
        stored: set[int] = set()
        for cb in batch:
            cursor = conn.execute(
                _SQLITE_EVENT,
                (cb.event_id, json.dumps(cb.form), prospects.get(cb.sid), now, now),
            )
            # not stored: a provider's retry, or the same event twice in the batch: no effect
            if cursor.rowcount == 1:
                stored.add(id(cb))
        changed = fold(batch, lambda cb: id(cb) in stored, ledger)
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
    sqlite_pragmas(conn.cursor())
    # a checkpoint syncs to disk: the app's own connection does it, off the loop
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


class StatusWriter:
    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine
        self._sqlite: sqlite3.Connection | None = None
        self._queue: list[tuple[StatusCallback, asyncio.Future[None]]] = []
        self._writers = 0
        self._idle = 0  # writers waiting for callbacks, their connection held
        self._arrived = asyncio.Event()
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def write(self, callback: StatusCallback) -> None:
        """Returns once the callback is committed (raises if its transaction failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((callback, done))
        self._arrived.set()
        if not self._idle and self._writers < self._most_writers():
            self._writers += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)  # a task nobody holds may be collected mid-batch
            task.add_done_callback(self._tasks.discard)
        await done

    def _sqlite_engine(self) -> bool:
        return self._engine().dialect.name == "sqlite"

    def _most_writers(self) -> int:
        return 1 if self._sqlite_engine() else POSTGRES_WRITERS

    async def close(self) -> None:
        """At shutdown, before the engine is disposed: writers finish the callbacks queued,
        those waiting for more stop and hand their connection back."""
        self._closing = True
        self._arrived.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def _drain(self) -> None:
        """Write batches while callbacks wait. On PostgreSQL the writer keeps its pooled
        connection until no callback came for LINGER_SECONDS: a checkout pings the server
        first, a round trip that the batches of a steady stream would each pay."""
        try:
            async with HeldConnection(self._engine) as held:
                sqlite = self._sqlite_engine()
                commit = self._commit_sqlite if sqlite else held.write
                linger = 0.0 if sqlite else LINGER_SECONDS
                while self._queue or await self._arrival_within(linger):
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    try:
                        await commit([cb for cb, _ in batch])
                    except Exception as err:
                        log.exception("storing %d Twilio status callbacks failed", len(batch))
                        _settle(batch, err)
                        continue
                    _settle(batch, None)
        finally:
            self._writers -= 1

    async def _arrival_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for a callback to queue; True when one is there."""
        if seconds <= 0 or self._closing:
            return bool(self._queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._idle += 1
        try:
            while not self._queue:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing:
                    return False
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            return True
        finally:
            self._idle -= 1

    async def _commit_sqlite(self, batch: Sequence[StatusCallback]) -> None:
        if self._sqlite is None:
            url = self._engine().url.render_as_string(False)
            self._sqlite = _loop_thread_sqlite(url)
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


class HeldConnection:
    """PostgreSQL: a pooled connection a writer keeps from batch to batch (checked out at its
    first batch, back to the pool when the writer stops)."""

    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> HeldConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def write(self, batch: Sequence[StatusCallback]) -> None:
        """write_batch_postgres on the held connection. When the server is out of reach (it
        dropped the connection, while held or mid-batch, or refuses new ones: a restart), the
        batch is tried again on a fresh connection, with backoff, for up to
        RECONNECT_SECONDS: a restart of a second or two would otherwise answer 5xx to the
        callbacks that came meanwhile, and Twilio sends a callback again only as the retry
        settings in its URL (connection overrides) ask.
        Trying again is safe because a batch is idempotent (an event already stored is not
        stored again, and moves nothing), even when the reply lost was the commit's."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RECONNECT_SECONDS
        pause = RECONNECT_FIRST_PAUSE
        while True:
            try:
                await self._write_once(batch)
                return
            except ServerOutOfReach as out:
                if loop.time() + pause > give_up:
                    raise out.error from None
                log.warning("the database is out of reach (%s): the status writer tries again", out)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _write_once(self, batch: Sequence[StatusCallback]) -> None:
        if self._conn is None:
            try:
                self._conn = await self._engine().connect()
            except Exception as err:
                raise ServerOutOfReach(err) from err
        driver: Any = (await self._conn.get_raw_connection()).driver_connection
        try:
            await write_batch_postgres(driver, batch)
        except Exception as err:
            # asyncpg's error is not SQLAlchemy's: the pool is told the connection may be
            # broken rather than handed it back
            await self._conn.invalidate()
            await self._conn.close()
            self._conn = None
            if driver.is_closed():
                raise ServerOutOfReach(err) from err
            raise
        except BaseException:
            await self._conn.invalidate()
            raise


class ServerOutOfReach(Exception):
    """The database dropped the writer's connection or refused a new one (`error`)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _settle(
    batch: Sequence[tuple[StatusCallback, asyncio.Future[None]]], err: BaseException | None
) -> None:
    for _, done in batch:
        if done.done():
            continue
        if err is None:
            done.set_result(None)
        else:
            done.set_exception(err)
