"""Free-text search at a million prospects: trigram GIN index against a full scan (PostgreSQL).

    .venv/bin/python -m bench.search --postgres postgresql+asyncpg://postgres@127.0.0.1:55432/postgres
        [--rows 1000000] [--repeat 5]
    .venv/bin/python -m bench.search --sqlite [--rows 1000000]

Creates a fresh database on that server, migrates prospecting (revision 0003 builds the
`pg_trgm` GIN index on the search expression), seeds ROWS prospects and then times
`service.list_prospects(q=...)` -- the code path of GET /prospects?q= (first page, 50 rows,
newest first as the API sorts by default) -- for a few kinds of query text, with the index and
then without it (dropped inside a transaction that is rolled back: the same data, the same
plan otherwise). Prints the median of REPEAT runs per query and the plan's top node. The
database is dropped at the end.

SQLite has no trigram index: there the same expression is a scan of every row (numbers in
docs/benchmarks.md, Prospect search).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from services.prospecting import service
from services.prospecting.models import Prospect
from shared.db import create_engine, session_factory
from shared.migrations import upgrade
from shared.settings import Settings

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Linus",
    "Ken",
    "Niklaus",
]
SYLLABLES = ["ka", "lo", "mi", "ren", "tor", "vel", "sun", "dra", "pel", "qui", "zan", "bor"]
BATCH = 5000
QUERIES = {
    "one person (email)": "person{probe}@",
    "rare word (~0.1%)": "lovelace",
    "no match": "zzqqxx",
    "common word (every row)": "company",
    "short (2 letters)": "ka",
}


def _word(rnd: random.Random) -> str:
    return "".join(rnd.choice(SYLLABLES) for _ in range(3)).capitalize()


async def seed(sessions: object, rows: int) -> None:
    rnd = random.Random(11)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    done = 0
    while done < rows:
        batch = []
        for i in range(done, min(done + BATCH, rows)):
            last = "Lovelace" if i % 1000 == 0 else _word(rnd)
            at = start + timedelta(seconds=i)
            batch.append(
                {
                    "id": uuid.uuid4().hex,
                    "first_name": FIRST[i % len(FIRST)],
                    "last_name": last,
                    "email": f"person{i}@example{i % 997}.com",
                    "company": f"Company {_word(rnd)} {i % 20000}",
                    "title": "CTO",
                    "source": "import",
                    "stage": "prospecting",
                    "created_at": at,
                    "updated_at": at,
                }
            )
        async with sessions() as session:  # type: ignore[operator]
            await session.execute(insert(Prospect), batch)
            await session.commit()
        done += len(batch)
        if done % 100_000 == 0:
            print(f"  seeded {done:,}", flush=True)


async def _time(session: AsyncSession, q: str, repeat: int) -> tuple[float, int]:
    times = []
    found = 0
    for _ in range(repeat):
        began = time.perf_counter()
        items, _cursor = await service.list_prospects(
            session, limit=50, cursor=None, stage=None, q=q, sort="-created_at"
        )
        times.append(time.perf_counter() - began)
        found = len(items)
    return statistics.median(times) * 1000, found


async def _plan(session: AsyncSession, q: str) -> str:
    query = (
        "EXPLAIN SELECT id FROM prospects WHERE lower(first_name || ' ' || last_name || ' ' || "
        "coalesce(email, '') || ' ' || company) LIKE :p ORDER BY created_at DESC, id DESC LIMIT 51"
    )
    rows = (await session.execute(text(query), {"p": f"%{q}%"})).scalars().all()
    nodes = [r.strip().split("  (")[0].lstrip("-> ") for r in rows if "Scan" in r]
    return " / ".join(nodes)


async def measure(url: str, rows: int, repeat: int) -> dict[str, dict[str, tuple[float, int, str]]]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    probe = rows // 2 + 7
    results: dict[str, dict[str, tuple[float, int, str]]] = {"index": {}, "scan": {}}
    try:
        async with sessions() as session:
            await session.execute(text("ANALYZE prospects"))
            await session.commit()
            for name, pattern in QUERIES.items():
                q = pattern.format(probe=probe)
                await _time(session, q, 1)  # warm the cache
                ms, found = await _time(session, q, repeat)
                results["index"][name] = (ms, found, await _plan(session, q))
            await session.commit()
            # The same queries without the index, in a transaction rolled back afterwards.
            await session.execute(text("DROP INDEX ix_prospects_search_trgm"))
            for name, pattern in QUERIES.items():
                q = pattern.format(probe=probe)
                ms, found = await _time(session, q, repeat)
                results["scan"][name] = (ms, found, await _plan(session, q))
            await session.rollback()
    finally:
        await engine.dispose()
    return results


async def main(postgres: str, rows: int, repeat: int) -> None:
    name = f"cf_bench_search_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(postgres, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
    try:
        settings = Settings(prospecting_database_url=url)
        await asyncio.to_thread(upgrade, settings, "prospecting")
        began = time.perf_counter()
        engine = create_engine(url)
        await seed(session_factory(engine), rows)
        await engine.dispose()
        print(
            f"seeded {rows:,} prospects in {time.perf_counter() - began:.0f} s (index kept up to date)"
        )
        results = await measure(url, rows, repeat)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    print(f"\nGET /prospects?q=... first page of 50, median of {repeat}, {rows:,} prospects:")
    print(f"{'query':28} {'rows':>5} {'trigram index':>14} {'full scan':>10}  plan with index")
    for query in QUERIES:
        ms, found, plan = results["index"][query]
        scan_ms = results["scan"][query][0]
        print(f"{query:28} {found:>5} {ms:>11.1f} ms {scan_ms:>7.1f} ms  {plan}")


async def main_sqlite(rows: int, repeat: int) -> None:
    """The same queries on SQLite, which has no trigram index: every one reads the table
    (unless 50 matches turn up early in the newest rows)."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'prospecting.db'}"
        settings = Settings(prospecting_database_url=url)
        await asyncio.to_thread(upgrade, settings, "prospecting")
        engine = create_engine(url)
        began = time.perf_counter()
        await seed(session_factory(engine), rows)
        print(f"seeded {rows:,} prospects in {time.perf_counter() - began:.0f} s")
        print(f"\nSQLite, GET /prospects?q=... first page of 50, median of {repeat}:")
        async with session_factory(engine)() as session:
            for name, pattern in QUERIES.items():
                q = pattern.format(probe=rows // 2 + 7)
                ms, found = await _time(session, q, repeat)
                print(f"{name:28} {found:>5} {ms:>9.1f} ms")
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--postgres", help="server URL (a database is created, then dropped)")
    where.add_argument("--sqlite", action="store_true", help="a temporary SQLite file instead")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.sqlite:
        asyncio.run(main_sqlite(args.rows, args.repeat))
    else:
        asyncio.run(main(args.postgres, args.rows, args.repeat))
