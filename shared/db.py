"""Engines and request-scoped sessions. SQLite in development, PostgreSQL in production."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import DateTime, Select, Table, TypeDecorator, event, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

from shared.sqlite_driver import one_trip_dbapi


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


async def hold_lock(session: AsyncSession, name: str, *, shared: bool = False) -> None:
    """Serialise the transactions that take the lock `name` until each ends: on PostgreSQL a
    transaction-level advisory lock (released at commit or rollback); SQLite has one writer at a
    time already and nothing finer to take. `shared`: holders of the shared lock do not wait on
    each other, only on (and block) the exclusive one."""
    if session.get_bind().dialect.name == "postgresql":
        take = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
        await session.execute(select(take(func.hashtextextended(name, 0))))


Row = TypeVar("Row")


async def insert_or_winner(
    session: AsyncSession, row: Row, winner: Callable[[], Awaitable[Row | None]]
) -> tuple[Row, bool]:
    """Insert `row`, or, when a concurrent transaction inserted its unique key first, the row
    `winner` finds: both looked, found none and inserted; the unique index picks one, and the
    other takes that row instead of a 500. The insert is a savepoint, so losing keeps the rest
    of the transaction. True when `row` was inserted."""
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        found = await winner()
        if found is None:
            raise  # another constraint: not a race this settles
        return found, False
    return row, True


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite stores naive text and forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Each service subclasses this with its own metadata (its own database)."""

    __abstract__ = True

    if TYPE_CHECKING:
        # every model here maps one Table (none a join or a select), so its table has .c,
        # .insert() and the rest without a cast at each use
        __table__: ClassVar[Table]


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


WAL_SWITCH_TRIES = 10


def _wal(cursor: Any) -> None:
    """The file in WAL mode. The mode is kept in the file: a connection to a database already in
    it only asks. Switching takes a lock that SQLite may refuse at once, without its busy
    timeout, while another connection holds one (a test's first statement on a new database
    failed so, "database is locked"): tried again for a moment. This blocks the loop's thread,
    only ever on a new SQLite database, which production does not use."""
    for attempt in range(WAL_SWITCH_TRIES):
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == WAL_SWITCH_TRIES - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


def sqlite_pragmas(cursor: Any) -> None:
    """What every SQLite connection of closeflow's runs with: the engines' and the status
    writer's own (services/outreach/webhooks/sms_status.py)."""
    _wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")


def new_engine(url: str, **options: Any) -> AsyncEngine:
    """Every engine closeflow opens: a database error's text leaves out the statement's bound
    values (addresses, phone numbers, names), which would otherwise reach the logs with it."""
    return create_async_engine(url, hide_parameters=True, **options)


def create_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        # One connection: SQLite has one writer anyway, and a single pooled connection keeps
        # the tail latency bounded under concurrent async writes (measured: docs/architecture.md,
        # "Measured limits").
        engine = new_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"timeout": 30},
            module=one_trip_dbapi(),
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            sqlite_pragmas(cur)
            cur.close()

        return engine
    return new_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def probe_engine(url: str) -> AsyncEngine:
    """The readiness check's engine: a connection of its own for each check, no pool. Under load
    requests hold every pooled connection, and a check waiting for one of them would call the
    database away while it answers (every busy replica taken out of the Service at once)."""
    return new_engine(url, poolclass=NullPool)


# SQLSTATE classes of a server that is unreachable or cannot take the work now: connection
# exceptions, insufficient resources (too many connections), operator intervention (shutting
# down, starting up)
_AWAY_SQLSTATES = ("08", "53", "57P")


def database_away(err: BaseException) -> bool:
    """Whether `err` says the database could not be reached or dropped the connection (a
    restart, a failover), as opposed to refusing the statement: worth trying again shortly."""
    if isinstance(err, DBAPIError):
        if err.connection_invalidated:
            return True
        err = err.orig if isinstance(err.orig, BaseException) else err
    if isinstance(err, OSError):
        return True  # connection refused or reset: nothing is listening (yet)
    sqlstate = str(getattr(err, "sqlstate", "") or "")
    return sqlstate.startswith(_AWAY_SQLSTATES) or isinstance(err, asyncpg.InterfaceError)


# SQLSTATEs of a transaction PostgreSQL aborted for another's sake (a deadlock, a serialization
# failure): nothing was wrong with it, and the same transaction again normally succeeds
_CONFLICT_SQLSTATES = ("40P01", "40001")


def transaction_conflict(err: BaseException) -> bool:
    """Whether `err` is PostgreSQL aborting the transaction for another's sake (a deadlock
    detected, a serialization failure): worth running the whole transaction again."""
    orig = err.orig if isinstance(err, DBAPIError) else err
    if isinstance(orig, BaseException):
        # asyncpg's error sits under SQLAlchemy's adapted one: its sqlstate is on either
        orig = getattr(orig, "__cause__", None) or orig
    sqlstate = str(getattr(orig, "sqlstate", "") or getattr(err, "sqlstate", "") or "")
    return sqlstate in _CONFLICT_SQLSTATES


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


Sessions = Callable[[], AsyncSession]  # an async_sessionmaker, or request_sessions(request)


def request_sessions(request: Request) -> Sessions:
    """New sessions that act for `request` (its key holder's changes), for a route that writes
    in transactions of its own, e.g. an import committing batch by batch."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions

    def session_for_request() -> AsyncSession:
        session = factory()
        # e.g. the audit log's (shared.audit): who this request's changes are by
        for hook in getattr(request.app.state, "session_hooks", ()):
            hook(session, request)
        return session

    return session_for_request


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request owns the transaction: commit on success, roll back on any error."""
    async with request_sessions(request)() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


T = TypeVar("T")


async def read_value(request: Request, query: Select[T]) -> T | None:
    """The one value a query finds, read in a session of its own: for what runs before the
    route has its session (the access resolvers, each then only its query)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with factory() as session:
        value: T | None = await session.scalar(query)
        return value


# scope="function": commit before the response is sent. With the default ("request") FastAPI
# runs the commit after sending, so a client could act on a 201 before the row was visible (the
# ops dashboard test recorded a stage for a just-created prospect and got "does not exist").
Session = Annotated[AsyncSession, Depends(request_session, scope="function")]
