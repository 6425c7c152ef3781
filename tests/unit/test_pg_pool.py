"""A PostgreSQL database handed back by a test (tests/support/pg_pool.py) is what a fresh copy of
the template would be: the migrations' rows, no other row, sequences from their start, no table
counted or analyzed (the planner chooses as on a copy); one whose
schema a test changed is dropped, and a client the test left behind cannot reach the next one."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support import databases
from tests.support.pg_pool import FINGERPRINT, TABLES, _dsn

pytestmark = pytest.mark.postgres


async def _contents(url: str) -> tuple[str, dict[str, list[tuple[object, ...]]], list[Any]]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = {}
        for (table,) in await conn.fetch(TABLES):
            found = await conn.fetch(f"SELECT * FROM {table}")
            rows[table] = sorted(tuple(map(str, r.values())) for r in found)
        sequences = list(
            await conn.fetch("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1")
        )
        # what the planner counts on: the tables' sizes as last counted, and their statistics
        counted = list(
            await conn.fetch(
                "SELECT c.relname, c.relpages, c.reltuples,"
                " (SELECT count(*) FROM pg_statistic s WHERE s.starelid = c.oid)"
                " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1"
            )
        )
        return await conn.fetchval(FINGERPRINT), rows, sequences + counted
    finally:
        await conn.close()


async def test_a_database_given_back_is_a_fresh_copy_again() -> None:
    fresh = await databases.migrated_pg()
    expected = {s: await _contents(url) for s, url in fresh.items()}
    url = fresh["outreach"]
    conn = await asyncpg.connect(_dsn(url))
    left_behind = await asyncpg.connect(_dsn(url))  # a client the test did not close
    try:
        # rows in a table the migrations fill and in one they leave empty, a used sequence
        await conn.execute("DELETE FROM send_quota_locks")
        await conn.execute(
            "INSERT INTO inbox_events (provider, event_id, kind, payload, created_at)"
            " SELECT 'p', 'e' || g, 'k', '{}', now() FROM generate_series(1, 500) g"
        )
        await conn.execute("ANALYZE inbox_events")
    finally:
        await conn.close()
    await databases.release_pg_databases(fresh)
    assert left_behind.is_closed() or await _refused(left_behind)

    again = await databases.migrated_pg()
    try:
        assert make_url(again["outreach"]).database != make_url(url).database
        assert {s: await _contents(u) for s, u in again.items()} == expected
    finally:
        await databases.release_pg_databases(again)


async def _refused(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return True
    return False


async def test_a_database_whose_schema_changed_is_dropped_not_given_again() -> None:
    fresh = await databases.migrated_pg()
    name = make_url(fresh["deals"]).database
    conn = await asyncpg.connect(_dsn(fresh["deals"]))
    try:
        await conn.execute("ALTER TABLE close_reasons ADD COLUMN note text")
    finally:
        await conn.close()
    await databases.release_pg_databases(fresh)
    admin = await asyncpg.connect(_dsn(databases.POSTGRES_URL))
    try:
        kept = [r["datname"] for r in await admin.fetch("SELECT datname FROM pg_database")]
    finally:
        await admin.close()
    emptied = databases._pg_copies["deals"].emptied
    assert name not in kept
    assert not set(emptied) - set(kept)
    again = await databases.migrated_pg()
    try:
        assert await _contents(again["deals"]) == await _contents(
            make_url(databases.POSTGRES_URL)
            .set(database=databases._pg_templates["deals"])
            .render_as_string(hide_password=False)
        )
    finally:
        await databases.release_pg_databases(again)
