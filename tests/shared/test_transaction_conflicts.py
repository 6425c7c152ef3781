"""What a transaction PostgreSQL aborted for another's sake looks like through SQLAlchemy, read
by shared.db.transaction_conflict: a route that may meet a deadlock (an erasure rewriting the
outbox rows a relay is recording) runs its transaction again on exactly these."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import create_engine, transaction_conflict
from tests.support.fixtures import ON_POSTGRES


@ON_POSTGRES
async def test_a_real_deadlock_is_a_conflict_and_a_refused_statement_is_not(
    database_urls: dict[str, str],
) -> None:
    engine = create_engine(database_urls["prospecting"])
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE pair (id int PRIMARY KEY, n int)"))
            await conn.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
        both_hold_one = asyncio.Barrier(2)

        async def update(first: int, then: int) -> BaseException | None:
            conn: AsyncConnection
            async with engine.connect() as conn:
                try:
                    async with conn.begin():
                        await conn.execute(text(f"UPDATE pair SET n = 1 WHERE id = {first}"))
                        await both_hold_one.wait()
                        await conn.execute(text(f"UPDATE pair SET n = 1 WHERE id = {then}"))
                except DBAPIError as err:
                    return err
            return None

        outcomes = await asyncio.gather(update(1, 2), update(2, 1))
        [victim] = [o for o in outcomes if o is not None]  # PostgreSQL aborts one of the two
        assert transaction_conflict(victim), victim

        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as refused:
                await conn.execute(text("INSERT INTO pair VALUES (1, 0)"))  # a duplicate key
        assert not transaction_conflict(refused.value)
    finally:
        await engine.dispose()
