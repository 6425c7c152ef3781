"""The database's plan for a query: whether a table that grows for months is read through an
index or scanned whole (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Select, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession


async def _explain(connection: AsyncConnection, sql: str, parameters: Any = None) -> str:
    if connection.dialect.name == "sqlite":
        found = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)
        return "\n".join(str(row[-1]) for row in found)
    # tiny tables: scans and hash joins are cheapest, so make them the last resort
    for method in ("seqscan", "hashjoin", "mergejoin"):
        await connection.exec_driver_sql(f"SET enable_{method} = off")
    found = await connection.exec_driver_sql(f"EXPLAIN {sql}", parameters)
    return "\n".join(row[0] for row in found)


async def query_plan(engine: AsyncEngine, query: Select[Any]) -> str:
    sql = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    async with engine.connect() as connection:
        return await _explain(connection, str(sql))


async def plans_of(
    engine: AsyncEngine, run: Callable[[AsyncSession], Awaitable[object]]
) -> list[tuple[str, str]]:
    """(statement, plan) of every SELECT that `run` sends, as the code under test builds it."""
    sent: list[tuple[str, Any]] = []

    def capture(_c: Connection, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with AsyncSession(engine) as session:
            await run(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    async with engine.connect() as connection:
        return [(sql, await _explain(connection, sql, parameters)) for sql, parameters in sent]
