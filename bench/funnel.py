"""Funnel query time at a million stage changes, on SQLite and PostgreSQL, against a baseline.

    make bench-funnel          (BENCH_FUNNEL_N=1000000 changes by default)
    python -m bench.funnel --changes 200000 --postgres postgresql+asyncpg://...

1. A fresh prospecting database per backend (SQLite in a temp folder; on PostgreSQL a new
   database on the server of --postgres or CLOSEFLOW_TEST_POSTGRES_URL, dropped afterwards;
   without either, PostgreSQL is skipped and says so), migrated to the heads.
2. Seeds (not timed) journeys over the last 365 days (10 reps, 4 cadences, cold and referral)
   until it has N stage changes: the prospects, every change in stage_history with its
   denormalised columns, and the aggregates built from them by `funnel.accumulate`, i.e. the same
   `funnel.cells()` that the write path (`funnel.count`, called by record_stage) upserts one
   change at a time. Bulk, because a million activities would take hours; same rows.
3. Checks one answer against a brute-force GROUP BY over stage_history (entered per stage in the
   last 90 days), so the timed queries read real numbers.
4. Timed, through the app's HTTP stack in-process (httpx ASGI transport: routing, auth, SQL,
   JSON): each funnel query QUERIES times, interleaved with the baseline, a `SELECT 1` round trip
   on the same engine. Prints p50/p95 per query and, last per backend,
   `ratio=<slowest funnel p50 / SELECT 1 p50>`. The machines are shared and noisy: the ratio of
   two measurements side by side means more than either number.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client

from services.prospecting import funnel
from services.prospecting.app import create_app
from services.prospecting.models import FunnelCount, FunnelDuration, Prospect, Rep, StageHistory
from shared.auth import API_KEY_HEADER
from shared.migrations import upgrade
from shared.settings import Settings

API_KEY = "bench-key"
QUERIES = int(os.environ.get("BENCH_FUNNEL_QUERIES", "50"))
REPS, CADENCES = 10, [f"cadence-{i}" for i in range(4)]
DAYS = 365
CHUNK = 20_000


# --- seeding --------------------------------------------------------------------------------


def journey(rng: random.Random) -> list[tuple[str, str]]:
    """(to_stage, cause) after creation, shaped like ProspectJourney's."""
    steps = [("contacting", "enrolled in cadence")]
    if rng.random() < 0.45:
        return [*steps, ("nurture", "no response after the last cadence step")]
    steps.append(("qualifying", rng.choice(["replied by email", "replied by sms"])))
    if rng.random() < 0.3:
        return [*steps, ("disqualified", f"not qualified: {rng.choice(['budget', 'authority'])}")]
    steps.append(("presenting", "qualified"))
    if rng.random() < 0.5:
        steps.append(("objections", f"objection: {rng.choice(['price', 'timing', 'trust'])}"))
    if rng.random() < 0.45:
        return [*steps, ("lost", f"closed lost: {rng.choice(['price', 'timing', 'competitor'])}")]
    steps.append(("won", "closed won"))
    if rng.random() < 0.7:
        steps.append(("referrals", "referral request sent"))
    return steps


def generate(
    n: int, rep_ids: list[str], now: datetime, seed: int = 1
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Chunks of (prospects, their stage changes) until n changes exist."""
    rng = random.Random(seed)
    made = 0
    prospects: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    i = 0
    while made < n:
        i += 1
        pid = uuid.uuid4().hex
        source = "referral" if rng.random() < 0.25 else "cold"
        rep = rep_ids[i % len(rep_ids)]
        cadence = rng.choice(CADENCES)
        at = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
        prospects.append(
            {
                "id": pid,
                "first_name": f"P{i}",
                "email": f"p{i}@bench.example.com",
                "source": source,
                "rep_id": rep,
                "created_at": at,
                "updated_at": at,
            }
        )
        path = [("prospecting", "created"), *journey(rng)]
        previous_stage: str | None = None
        previous_at: datetime | None = None
        for k, (stage, cause) in enumerate(path):
            if k:
                at = at + timedelta(seconds=rng.lognormvariate(12, 1.2))  # ~2 days, long tail
            if at > now or made >= n:
                break
            changes.append(
                {
                    "id": uuid.uuid4().hex,
                    "key": f"journey-{pid}:{k}",
                    "prospect_id": pid,
                    "from_stage": previous_stage,
                    "to_stage": stage,
                    "cause": cause,
                    "at": at,
                    "recorded_at": at,
                    "cadence_id": cadence if k else "",
                    "rep_id": rep,
                    "source": source,
                    "seconds_in_stage": (
                        (at - previous_at).total_seconds() if previous_at else None
                    ),
                }
            )
            made += 1
            previous_stage, previous_at = stage, at
        if len(changes) >= CHUNK or made >= n:
            yield prospects, changes
            prospects, changes = [], []


async def copy_or_insert(engine: AsyncEngine, model: Any, rows: list[dict[str, Any]]) -> None:
    """COPY on PostgreSQL (asyncpg) for the big tables of plain columns, else executemany."""
    if not rows:
        return
    table = model.__table__
    copy = engine.dialect.name == "postgresql" and model is not Prospect  # JSON columns: insert
    async with engine.begin() as conn:
        if copy:
            columns = [c.name for c in table.columns]
            full = [{**{c.name: _default(c) for c in table.columns}, **r} for r in rows]
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                table.name, records=[tuple(r[c] for c in columns) for r in full], columns=columns
            )
        else:
            await conn.execute(insert(table), rows)


async def insert_histograms(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    """The wide histogram rows as tuples (dicts of 208 keys would take gigabytes)."""
    table = FunnelDuration.__table__
    columns = [c.name for c in table.columns]
    placeholders = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"
    for start in range(0, len(rows), CHUNK):
        records = [tuple(r.get(c, 0) for c in columns) for r in rows[start : start + CHUNK]]
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                raw = await conn.get_raw_connection()
                await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                    table.name, records=records, columns=columns
                )
            else:
                await conn.exec_driver_sql(sql, records)


def _default(column: Any) -> Any:
    default = column.default
    if default is None:
        return None
    if default.is_callable:
        try:
            return default.arg(None)
        except TypeError:
            return default.arg()
    return default.arg


async def seed(engine: AsyncEngine, n: int) -> tuple[int, float]:
    started = time.perf_counter()
    now = datetime.now(UTC)
    rep_ids = [uuid.uuid4().hex for _ in range(REPS)]
    await copy_or_insert(
        engine,
        Rep,
        [
            {"id": r, "name": f"Rep {i}", "email": f"rep{i}@bench.example.com", "created_at": now}
            for i, r in enumerate(rep_ids)
        ],
    )
    counts: Counter[funnel.CountKey] = Counter()
    durations: Counter[funnel.DurationKey] = Counter()
    total = 0
    for prospects, changes in generate(n, rep_ids, now):
        await copy_or_insert(engine, Prospect, prospects)
        await copy_or_insert(engine, StageHistory, changes)
        funnel.accumulate(changes, counts, durations)
        total += len(changes)
        print(f"  seeded {total} changes", end="\r", file=sys.stderr, flush=True)
    rows = funnel.count_rows(counts)
    for start in range(0, len(rows), CHUNK):
        await copy_or_insert(engine, FunnelCount, rows[start : start + CHUNK])
    await insert_histograms(engine, funnel.duration_rows(durations))
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for table in ("stage_history", "funnel_counts", "funnel_durations", "prospects"):
                await conn.execute(text(f"ANALYZE {table}"))
        else:
            await conn.execute(text("ANALYZE"))
    print(file=sys.stderr)
    return total, time.perf_counter() - started


# --- measuring ------------------------------------------------------------------------------


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p * (len(ordered) - 1))))]


async def timed(job: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await job()
    return (time.perf_counter() - started) * 1000


async def check(http: httpx.AsyncClient, engine: AsyncEngine) -> None:
    """The API's entered counts for the last 90 days equal a GROUP BY over the raw rows."""
    end = datetime.now(UTC).date() + timedelta(days=1)
    start = end - timedelta(days=90)
    body = (await http.get("/funnel", params={"from": str(start), "to": str(end)})).json()
    api = {s["stage"]: s["entered"] for s in body["groups"][0]["stages"]}
    lo = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    hi = datetime.combine(end, datetime.min.time(), tzinfo=UTC)
    async with engine.connect() as conn:
        sh = StageHistory.__table__
        rows = await conn.execute(
            select(sh.c.to_stage, func.count())
            .where(sh.c.at >= lo, sh.c.at < hi)
            .group_by(sh.c.to_stage)
        )
        raw = {stage: n for stage, n in rows}
    expected = {s: raw.get(s, 0) for s in api}
    if api != expected:
        raise SystemExit(f"funnel differs from the raw rows: {api} != {expected}")
    print(f"  check: entered per stage over 90 days equals the raw rows ({sum(api.values())})")


async def bench_backend(label: str, url: str, n: int) -> None:
    print(f"== {label}")
    settings = Settings(
        environment="test",
        api_keys=API_KEY,
        prospecting_database_url=url,
        data_dir=Path(tempfile.gettempdir()),
    )
    await asyncio.to_thread(upgrade, settings, "prospecting")
    engine = create_async_engine(url)
    total, seconds = await seed(engine, n)
    print(f"  seeded {total} stage changes in {seconds:.0f}s (bulk; aggregates via funnel.cells)")
    async with engine.connect() as conn:
        agg = await conn.scalar(select(func.count()).select_from(FunnelCount.__table__))
        dur = await conn.scalar(select(func.count()).select_from(FunnelDuration.__table__))
    print(f"  aggregate rows: funnel_counts={agg} funnel_durations={dur}")
    # no Temporal server is needed for these routes: a lazy client never connects
    client = await Client.connect("127.0.0.1:1", lazy=True)
    app = create_app(settings, temporal_client=client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={API_KEY_HEADER: API_KEY}
        ) as http:
            await check(http, app.state.engine)
            today = datetime.now(UTC).date()
            year = {"from": str(today - timedelta(days=364)), "to": str(today + timedelta(1))}
            queries: dict[str, tuple[str, dict[str, Any]]] = {
                "funnel, last 30 days": ("/funnel", {}),
                "funnel, 365 days": ("/funnel", year),
                "funnel, 365 days by rep": ("/funnel", {**year, "group_by": "rep"}),
                "funnel, 365 days by month": ("/funnel", {**year, "group_by": "month"}),
                "funnel, 365 days, 1 cadence, referral": (
                    "/funnel",
                    {**year, "cadence_id": CADENCES[1], "source": "referral"},
                ),
                "bottleneck, 30 days vs 4 before": ("/funnel/bottleneck", {}),
            }

            async def select_one() -> None:
                async with app.state.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))

            def call(path: str, params: dict[str, Any]) -> Callable[[], Awaitable[object]]:
                async def go() -> None:
                    resp = await http.get(path, params=params)
                    resp.raise_for_status()

                return go

            # As `closeflow serve` does before serving: what is loaded by now is left out of
            # later garbage collections. Without it, full collections over the seeding's
            # leftovers paused requests for up to ~240 ms (measured with gc.callbacks).
            gc.collect()
            gc.freeze()
            samples: dict[str, list[float]] = {name: [] for name in queries}
            baseline: list[float] = []
            for path, params in queries.values():  # warm-up
                await call(path, params)()
            await select_one()
            for _ in range(QUERIES):
                for name, (path, params) in queries.items():
                    baseline.append(await timed(select_one))
                    samples[name].append(await timed(call(path, params)))
    await engine.dispose()
    base50 = statistics.median(baseline)
    print(
        f"  baseline SELECT 1 round trip: p50={base50:.2f}ms p95={percentile(baseline, 0.95):.2f}ms"
    )
    worst = 0.0
    for name, values in samples.items():
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        worst = max(worst, p50)
        print(f"  {name:<40} p50={p50:7.2f}ms p95={p95:7.2f}ms  ({p50 / base50:.0f}x SELECT 1)")
    print(f"  ratio={worst / base50:.1f}")


async def pg_database(base_url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"cf_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))

    async def drop() -> None:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    return make_url(base_url).set(database=name).render_as_string(hide_password=False), drop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--changes", type=int, default=int(os.environ.get("BENCH_FUNNEL_N", "1000000"))
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("CLOSEFLOW_TEST_POSTGRES_URL", ""),
        help="postgresql+asyncpg:// URL of a server where a database may be created",
    )
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    print(f"{args.changes} stage changes, {QUERIES} runs of each query")
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as tmp:
            await bench_backend("sqlite", f"sqlite+aiosqlite:///{tmp}/prospecting.db", args.changes)
    if args.only != "sqlite":
        if not args.postgres:
            print("== postgres: skipped (set CLOSEFLOW_TEST_POSTGRES_URL or pass --postgres)")
            return
        url, drop = await pg_database(args.postgres)
        try:
            await bench_backend("postgres", url, args.changes)
        finally:
            await drop()


if __name__ == "__main__":
    asyncio.run(main())
