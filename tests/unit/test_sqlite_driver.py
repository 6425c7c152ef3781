"""shared/sqlite_driver.py: a statement is one trip to aiosqlite's thread, a commit or rollback
with no transaction open is none, and what SQLAlchemy reads back (rows, row counts, errors,
transactions) is what the stock aiosqlite driver gives."""

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import String, insert, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import create_engine, session_factory


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(String)


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """Each function aiosqlite runs in its connection's thread, by name."""
    counted: collections.Counter[str] = collections.Counter()
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counted[getattr(fn, "__name__", repr(fn))] += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    yield counted


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(insert(Item), [{"id": str(i), "value": "a"} for i in range(3)])
    yield engine
    await engine.dispose()


async def test_a_select_is_one_trip_and_a_read_only_session_none_more(engine, trips) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        await session.scalar(select(Item).limit(1))  # the pool's connection, opened once
    trips.clear()
    async with sessions() as session:
        for i in range(3):
            item = await session.scalar(select(Item).where(Item.id == str(i)))
            assert item is not None and item.value == "a"
        await session.commit()
    assert trips == {"_run": 3}


async def test_a_write_is_committed_once_and_counts_its_rows(engine, trips) -> None:
    sessions = session_factory(engine)
    trips.clear()
    async with sessions() as session:
        moved = await session.execute(update(Item).where(Item.id.in_(["0", "1"])).values(value="b"))
        assert moved.rowcount == 2  # type: ignore[attr-defined]
        again = await session.execute(
            sqlite_insert(Item).values(id="0", value="c").on_conflict_do_nothing()
        )
        assert again.rowcount == 0  # type: ignore[attr-defined]
        added = await session.execute(
            text("INSERT INTO items (id, value) VALUES ('9', 'd') RETURNING id, value")
        )
        assert added.all() == [("9", "d")]
        await session.commit()
    assert trips == {"_run": 3, "commit": 1}
    async with sessions() as session:
        rows = (await session.execute(select(Item.id, Item.value).order_by(Item.id))).all()
    assert [tuple(r) for r in rows] == [("0", "b"), ("1", "b"), ("2", "a"), ("9", "d")]


async def test_a_session_closed_without_commit_still_rolls_its_write_back(engine, trips) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        await session.execute(update(Item).values(value="lost"))
    assert trips["rollback"] == 1
    async with sessions() as session:
        assert set((await session.scalars(select(Item.value))).all()) == {"a"}


async def test_errors_and_many_rows_come_back_as_from_the_stock_driver(engine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        with pytest.raises(IntegrityError):
            await session.execute(insert(Item).values(id="0", value="twice"))
        await session.rollback()
        await session.execute(insert(Item), [{"id": f"m{i}", "value": "m"} for i in range(50)])
        await session.commit()
    async with sessions() as session:
        assert len((await session.scalars(select(Item).where(Item.value == "m"))).all()) == 50


SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*) FROM c"
)


async def test_a_write_cancelled_before_it_ran_is_not_left_open_for_the_next_session(
    engine,
) -> None:
    """A statement whose waiter was cancelled still runs in the connection's thread. The driver
    skips a rollback when no transaction is open, which would be wrong for a connection given
    back while its write waits in that thread: SQLAlchemy closes a connection whose statement
    was cancelled instead of giving it back (seen: a close, then a new connection), so no later
    session finds the cancelled write."""
    sessions = session_factory(engine)  # one pooled connection: each session gets the same

    async def slow_read() -> None:
        async with sessions() as session:
            await session.execute(text(SLOW))

    async def write() -> None:
        async with sessions() as session:
            await session.execute(update(Item).values(value="cancelled"))

    reading = asyncio.create_task(slow_read())
    await asyncio.sleep(0.05)  # the read runs in the thread
    reading.cancel()
    writing = asyncio.create_task(write())
    await asyncio.sleep(0.01)  # the write waits behind the read, in the thread's queue
    writing.cancel()
    for task in (reading, writing):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    async with sessions() as session:
        values = set((await session.scalars(select(Item.value))).all())
        await session.commit()
    assert values == {"a"}
