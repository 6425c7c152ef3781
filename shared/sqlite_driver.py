"""SQLAlchemy's aiosqlite driver, each statement in one trip to the connection's thread.

aiosqlite runs the sqlite3 connection in a thread of its own; SQLAlchemy's adapter asks that
thread for a cursor, then to execute, to fetch the rows and to close the cursor: four trips
(each a queue put, a thread woken, the GIL handed over and the event loop woken back) for a
statement SQLite itself runs in microseconds. Here the four are one function run in that thread.
Measured on this machine (docs/benchmarks.md, eighth pass): an ORM select by primary key cost
630 us of CPU through the stock adapter and 336 us through this one.

Everything else (the dialect, pooling, errors, when a transaction begins and ends) is
SQLAlchemy's aiosqlite dialect unchanged: only its cursor is replaced, through the DBAPI module
the engine is given (`create_async_engine(..., module=one_trip_dbapi())`), and a commit or
rollback with no transaction open makes no trip. It leans on internals of both libraries (the
adapter classes, aiosqlite's `_execute` and `_connection`), pinned in requirements.lock;
tests/unit/test_sqlite_driver.py fails if an upgrade changes them.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import await_only


class _Executed:
    """What a cursor tells after its statement ran: read by SQLAlchemy once the rows are in."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(
        self, description: Any = None, rowcount: int = -1, lastrowid: int | None = None
    ) -> None:
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid
        self.arraysize = 1


def _run(
    conn: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> tuple[_Executed, list[Any]]:
    """In the connection's thread: the statement, all its rows, and the cursor closed."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        # every row now: a RETURNING statement's rowcount is known once they are fetched
        rows = cursor.fetchall() if cursor.description else []
        return _Executed(cursor.description, cursor.rowcount, cursor.lastrowid), rows
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # no aiosqlite cursor: each statement opens and closes its own in the thread
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Executed()  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()

    async def _trip(self, operation: str, parameters: Any, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            executed, rows = await self._connection._execute(
                _run, self._connection._conn, operation, parameters, many
            )
        self._cursor = executed
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        await self._trip(operation, seq_of_parameters, many=True)

    async def _async_soft_close(self) -> None:
        return  # nothing open in the thread

    def close(self) -> None:
        self._rows.clear()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls: type[AsyncAdapt_aiosqlite_cursor] = OneTripCursor

    def _idle(self) -> bool:
        """No transaction open: sqlite3 sends nothing to SQLite for a commit or a rollback
        then, so the trip to the thread is not made either. The pool rolls back every
        connection it gets back, most of them after a commit (13 trips a journey in the
        services' activity worker). Read in this thread: sqlite3 allows it for this flag, and
        no statement is running: SQLAlchemy uses a connection for one thing at a time, and
        closes one whose statement a cancelled task left running rather than reuse it
        (tests/unit/test_sqlite_driver.py)."""
        conn = self._connection._connection
        return conn is not None and not conn.in_transaction

    def rollback(self) -> None:
        if not self._idle():
            super().rollback()

    def commit(self) -> None:
        if not self._idle():
            super().commit()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        connection = self.aiosqlite.connect(*arg, **kw)
        # as SQLAlchemy's does: the connection's thread must not keep the process alive
        connection._thread.daemon = True
        return OneTripConnection(self, await_only(connection))


def one_trip_dbapi() -> OneTripDBAPI:
    return OneTripDBAPI(aiosqlite, sqlite3)
