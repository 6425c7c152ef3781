"""The funnel and the bottleneck against a brute force over the raw stage changes.

SQLite and PostgreSQL; journeys recorded through the real write path (the API creates the
prospects, the record_stage activity records the changes). No timing assertions: the speed is
bench/funnel.py's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from services.prospecting import funnel, funnel_queue, service
from services.prospecting.activities import ProspectingActivities
from services.prospecting.app import create_app
from services.prospecting.models import FunnelCount, FunnelPending, StageHistory
from shared.contracts.journey import StageChange
from shared.migrations import alembic_config, upgrade
from shared.settings import Settings
from tests.support.funnel import Truth, assert_matches, brute_force, record_journeys
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import AUTH, make_settings

TODAY = datetime.now(UTC).date()
START = datetime.combine(TODAY - timedelta(days=150), datetime.min.time(), tzinfo=UTC)


class Api:
    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http
        self.acts = ProspectingActivities(app.state.sessions)

    async def funnel(self, **params: Any) -> dict[str, Any]:
        resp = await self.http.get("/funnel", params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()


PROSPECTS = 40  # the brute-force journeys: every filter and grouping still has rows


@pytest.fixture
async def settings(database_urls: dict[str, str], tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "prospecting")
    return settings


@pytest.fixture
async def api(settings: Settings, temporal_local: WorkflowEnvironment) -> AsyncIterator[Api]:
    app = create_app(settings, temporal_client=temporal_local.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=transport, base_url="http://test", headers=AUTH
        ) as http:
            yield Api(app, http)


async def _reps(api: Api, n: int) -> list[str]:
    ids = []
    for i in range(n):
        resp = await api.http.post("/reps", json={"name": f"R{i}", "email": f"r{i}@example.com"})
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    return ids


@pytest.fixture
async def journeys(api: Api) -> Truth:
    await _reps(api, 3)
    return await record_journeys(
        api.http, api.acts, prospects=PROSPECTS, start=START, days=120, cadences=["cad-a", "cad-b"]
    )


def _only(body: dict[str, Any]) -> dict[str, Any]:
    assert len(body["groups"]) == 1
    return body["groups"][0]


async def test_funnel_numbers_equal_a_brute_force_over_the_raw_changes(
    api: Api, journeys: Truth
) -> None:
    reps = sorted({c.rep_id for c in journeys.changes})
    tomorrow = TODAY + timedelta(days=1)
    windows = [
        (START.date(), tomorrow),  # whole months in the middle, days at both ends
        (START.date() + timedelta(days=17), START.date() + timedelta(days=95)),
        (date(START.year, START.month, 1), date(TODAY.year, TODAY.month, 1)),  # months only
        (START.date() + timedelta(days=40), START.date() + timedelta(days=52)),
        (START.date() + timedelta(days=3), START.date() + timedelta(days=47)),
    ]
    for start, end in windows:
        span = {"from": start.isoformat(), "to": end.isoformat()}
        body = await api.funnel(**span)
        assert (body["from"], body["to"]) == (span["from"], span["to"])
        assert_matches(_only(body), brute_force(journeys, start, end)[None])
        for filters in (
            {"cadence_id": "cad-a"},
            {"rep_id": reps[0]},
            {"source": "referral"},
            {"cadence_id": "cad-b", "rep_id": reps[1], "source": "cold"},
        ):
            expected = brute_force(journeys, start, end, **filters).get(None)
            group = _only(await api.funnel(**span, **filters))
            if expected is None:  # nothing matches: all zero
                assert all(s["entered"] == s["left"] == 0 for s in group["stages"])
            else:
                assert_matches(group, expected)
        for group_by in ("cadence", "rep", "source", "month"):
            body = await api.funnel(**span, group_by=group_by)
            expected = brute_force(journeys, start, end, group_by=group_by)
            assert [g["key"] for g in body["groups"]] == sorted(expected, key=str)
            for g in body["groups"]:
                assert_matches(g, expected[g["key"]])
    # the default window: the last 30 days up to today included
    default = await api.funnel()
    # the default range ends tomorrow, the service's (this process collected its tests maybe
    # before midnight, UTC)
    assert default["to"] == (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    start = tomorrow - timedelta(days=30)
    assert_matches(_only(default), brute_force(journeys, start, tomorrow)[None])

    # on the same journeys (recording them is most of the time here): the cadence is passed on
    # and prospect creation counts
    async with api.app.state.sessions() as session:
        rows = (await session.execute(select(StageHistory))).scalars().all()
    by_key = {r.key: r for r in rows}
    journey_rows = [r for r in rows if r.from_stage is not None]
    assert journey_rows and all(r.cadence_id in ("cad-a", "cad-b") for r in journey_rows)
    created = [r for r in rows if r.from_stage is None]
    assert len(created) == PROSPECTS and all(r.cadence_id == "" for r in created)
    assert all(r.seconds_in_stage is None for r in created)
    assert len(by_key) == len(journeys.changes)
    body = await api.funnel(**{"from": TODAY.isoformat(), "to": tomorrow.isoformat()})
    assert _only(body)["stages"][0]["entered"] >= PROSPECTS  # every prospect entered today


async def test_a_repeated_change_is_counted_once(api: Api) -> None:
    await _reps(api, 1)
    resp = await api.http.post("/prospects", json={"first_name": "A", "email": "a@example.com"})
    pid = resp.json()["id"]
    at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    change = StageChange("j:1", pid, "prospecting", "contacting", "enrolled", at.isoformat(), "cad")
    for _ in range(3):  # retried activity
        await api.acts.record_stage(change)
    group = _only(await api.funnel(**{"from": "2026-03-01", "to": "2026-03-31"}))
    contacting = group["stages"][1]
    assert contacting["entered"] == 1
    assert group["stages"][0]["left"] == 1
    async with api.app.state.sessions() as session:
        total = await session.scalar(
            select(func.sum(FunnelCount.n)).where(
                FunnelCount.grain == "d", FunnelCount.to_stage == "contacting"
            )
        )
    assert total == 8  # 1 change x 8 combinations of cadence/rep/source or "*"


async def test_bottleneck_is_the_stage_furthest_below_its_trailing_benchmark(api: Api) -> None:
    """Four 30-day windows of steady conversion, then a window where qualifying and presenting
    both convert worse, qualifying the furthest below its benchmark: the bottleneck, with the
    numbers. Eight journeys a window keep every rate exact."""
    await _reps(api, 1)
    end = date(2026, 6, 30)
    windows = [end - timedelta(days=30 * (5 - i)) for i in range(5)]  # starts, oldest first
    n = 0

    async def journey(day: date, qualified: bool, won: bool) -> None:
        nonlocal n
        n += 1
        resp = await api.http.post(
            "/prospects", json={"first_name": "B", "email": f"b{n}@example.com"}
        )
        pid = resp.json()["id"]
        at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)
        path = [("contacting", "enrolled"), ("qualifying", "replied by email")]
        path += (
            [("presenting", "qualified")] if qualified else [("disqualified", "not qualified: x")]
        )
        if qualified:
            path += [("won", "closed won: ok")] if won else [("lost", "closed lost: price")]
        previous = "prospecting"
        for i, (stage, cause) in enumerate(path):
            step_at = at + timedelta(hours=i)
            await api.acts.record_stage(
                StageChange(f"{pid}:{i}", pid, previous, stage, cause, step_at.isoformat())
            )
            previous = stage

    for w, start in enumerate(windows):
        current = w == 4
        for i in range(8):
            qualified = i < (3 if current else 6)  # 75% before, 37.5% now
            won = i < (1 if current else 4)  # presenting: 4/6 = 67% before, 1/3 = 33% now
            await journey(start + timedelta(days=i), qualified, won)

    params = {"from": windows[4].isoformat(), "to": end.isoformat(), "periods": 4, "min_left": 3}
    resp = await api.http.get("/funnel/bottleneck", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["benchmark_window"] == {
        "from": windows[0].isoformat(),
        "to": windows[4].isoformat(),
        "periods": 4,
    }
    assert body["stage"] == "qualifying"
    b = body["bottleneck"]
    assert (b["current"], b["benchmark"], b["gap"]) == (0.375, 0.75, 0.375)
    assert b["counts"] == {
        "current": {"left": 8, "advanced": 3, "dropped": 5},
        "benchmark": {"left": 32, "advanced": 24, "dropped": 8},
    }
    presenting = next(s for s in body["stages"] if s["stage"] == "presenting")
    assert (presenting["current"], presenting["benchmark"]) == (0.3333, 0.6667)
    assert presenting["eligible"] and presenting["gap"] == 0.3333  # below, but less so
    # min_left: with too few prospects no stage is compared
    few = await api.http.get("/funnel/bottleneck", params={**params, "min_left": 500})
    assert few.json()["stage"] is None
    # the same window as its own benchmark: nothing below it
    same = await api.http.get(
        "/funnel/bottleneck",
        params={"from": windows[0].isoformat(), "to": windows[4].isoformat(), "min_left": 3},
    )
    assert same.json()["stage"] is None or same.json()["bottleneck"]["gap"] > 0


async def test_bad_input_says_what_is_wrong(api: Api) -> None:
    resp = await api.http.get("/funnel", params={"from": "2026-05-02", "to": "2026-05-01"})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["field"] == "from"
    resp = await api.http.get("/funnel", params={"group_by": "planet"})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["field"] == "group_by"
    resp = await api.http.get("/funnel", params={"from": "yesterday"})
    assert resp.status_code == 422
    resp = await api.http.get("/funnel/bottleneck", params={"periods": 0})
    assert resp.status_code == 422
    for path in ("/funnel", "/funnel/bottleneck"):
        assert (await api.http.get(path, headers={"X-API-Key": ""})).status_code == 401


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/funnel?to=0001-01-10", "to"),  # from defaults to 30 days before: year 0
        ("/funnel?from=9999-12-01&to=9999-12-31", "from"),  # December 9999's next month
        ("/funnel/bottleneck?from=0001-01-01&to=0001-02-01", "from"),  # its benchmark before
        ("/funnel?from=1899-12-31", "from"),
        ("/ui/dashboard?to=0001-01-10", "to"),
        ("/exports/funnel.csv?from=9999-12-01&to=9999-12-31", "from"),
    ],
)
async def test_a_window_at_the_calendar_edge_is_a_422_naming_the_parameter(
    api: Api, url: str, field: str
) -> None:
    resp = await api.http.get(url)
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json()["error"]["details"]
    assert detail == {"field": field, "problem": "must be between 1900-01-01 and 9000-01-01"}


def test_buckets_are_nine_percent_wide_and_percentiles_use_the_nearest_rank() -> None:
    assert funnel.bucket_of(0.2) == 0
    assert funnel.bucket_of(1) == 1
    assert funnel.bucket_of(2) == 9
    for seconds in (1.5, 59, 3600, 86400 * 3.3, 86400 * 200):
        b = funnel.bucket_of(seconds)
        assert funnel.bucket_of(funnel.bucket_middle(b)) == b
        assert abs(funnel.bucket_middle(b) / seconds - 1) < 0.045
    assert funnel.percentile_bucket({3: 1, 5: 1, 9: 2}, 0.5) == 5  # 2nd of 4
    assert funnel.percentile_bucket({3: 1, 5: 1, 9: 2}, 0.9) == 9
    assert funnel.percentile_bucket({}, 0.5) is None


@pytest.mark.empty_databases
async def test_migration_backfills_existing_changes(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    """Rows recorded before 0004 get rep and source from their prospect, the time since the
    previous change, and the aggregates the write path would have built."""
    old = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, old, "prospecting", "0001")
    engine = create_async_engine(old.database_url("prospecting"))
    t0 = datetime(2026, 2, 27, 9, tzinfo=UTC)
    path = [
        (None, "prospecting", "created", 0),
        ("prospecting", "contacting", "enrolled", 3600),
        ("contacting", "qualifying", "replied by email", 3600 + 86400 * 2),
        ("qualifying", "presenting", "qualified", 3600 + 86400 * 4),
        ("presenting", "lost", "closed lost: price", 3600 + 86400 * 40),
    ]
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO reps (id, name, email, created_at) VALUES ('r1', 'R', 'r@x', :t)"),
            {"t": t0},
        )
        await conn.execute(
            text(
                "INSERT INTO prospects (id, first_name, last_name, company, title, timezone, "
                "source, rep_id, stage, created_at, updated_at) VALUES "
                "('p1', 'A', '', '', '', '', 'referral', 'r1', 'lost', :t, :t)"
            ),
            {"t": t0},
        )
        for i, (f, t, cause, offset) in enumerate(path):
            await conn.execute(
                text(
                    "INSERT INTO stage_history (id, key, prospect_id, from_stage, to_stage, "
                    "cause, at, recorded_at) VALUES (:id, :key, 'p1', :f, :t, :c, :at, :at)"
                ),
                {
                    "id": f"h{i}",
                    "key": f"k{i}",
                    "f": f,
                    "t": t,
                    "c": cause,
                    "at": t0 + timedelta(seconds=offset),
                },
            )
    await asyncio.to_thread(upgrade, old, "prospecting", "0004")
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT rep_id, source, cadence_id, seconds_in_stage FROM stage_history ORDER BY id"
            )
        )
        assert [tuple(r) for r in rows] == [
            ("r1", "referral", "", None),
            ("r1", "referral", "", 3600.0),
            ("r1", "referral", "", 86400.0 * 2),
            ("r1", "referral", "", 86400.0 * 2),
            ("r1", "referral", "", 86400.0 * 36),
        ]
        counts = await conn.execute(
            text(
                "SELECT period, from_stage, to_stage, cause, n FROM funnel_counts "
                "WHERE grain = 'm' AND cadence_id = '*' AND rep_id = 'r1' AND source = '*' "
                "ORDER BY to_stage"
            )
        )
        assert [tuple(r) for r in counts] == [
            ("2026-02", "prospecting", "contacting", "", 1),
            ("2026-04", "presenting", "lost", "closed lost", 1),  # the cause's kind (0015)
            ("2026-03", "qualifying", "presenting", "", 1),
            ("2026-02", "", "prospecting", "", 1),
            ("2026-03", "contacting", "qualifying", "", 1),
        ]
    await engine.dispose()
    await asyncio.to_thread(upgrade, old, "prospecting")  # and on to every head


def test_a_window_reads_whole_months_then_blocks_then_days() -> None:
    spans = funnel._spans(funnel.Window(date(2026, 1, 5), date(2026, 4, 20)))
    assert spans == [
        ("d", "2026-01-05", "2026-01-09"),
        ("b", "2026-01-09", "2026-02-01"),
        ("m", "2026-02", "2026-04"),
        ("b", "2026-04-01", "2026-04-17"),
        ("d", "2026-04-17", "2026-04-20"),
    ]
    assert funnel._spans(funnel.Window(date(2026, 2, 25), date(2026, 3, 1))) == [
        ("b", "2026-02-25", "2026-03-01")
    ]
    assert funnel.block_start(date(2026, 1, 31)) == date(2026, 1, 25)


async def test_imported_and_created_prospects_enter_prospecting_by_rep_and_source(
    api: Api,
) -> None:
    reps = await _reps(api, 2)
    csv = "first_name,email\n" + "".join(f"I{i},i{i}@example.com\n" for i in range(5))
    resp = await api.http.post(
        "/imports", content=csv.encode(), headers={"Content-Type": "text/csv"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["created"] == 5
    made = await api.http.post(
        "/prospects", json={"first_name": "R", "email": "r@example.com", "source": "referral"}
    )
    assert made.status_code == 201, made.text
    body = await api.funnel(group_by="source")
    entered = {g["key"]: g["stages"][0]["entered"] for g in body["groups"]}
    assert entered == {"import": 5, "referral": 1}
    by_rep = await api.funnel(group_by="rep")
    per_rep = {g["key"]: g["stages"][0]["entered"] for g in by_rep["groups"]}
    assert set(per_rep) <= set(reps) and sum(per_rep.values()) == 6  # assignment decides who


# --- no row that every change writes (funnel_queue.py) --------------------------------------


async def _prospects(api: Api, n: int) -> list[str]:
    ids = []
    for i in range(n):
        resp = await api.http.post("/prospects", json={"first_name": "Q", "email": f"q{i}@x.com"})
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    return ids


def _enrolled(pid: str, at: datetime) -> StageChange:
    return StageChange(f"j:{pid}", pid, "prospecting", "contacting", "enrolled", at.isoformat())


@pytest.mark.parametrize(
    "database_urls", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_changes_recorded_at_once_never_wait_for_each_others_counters(api: Api) -> None:
    """Two changes of the same transition on the same day, the first not yet committed: the
    second commits without waiting for it (the counters of both are the same "all" rows), and
    both are counted once the first commits."""
    await _reps(api, 1)
    first, second = await _prospects(api, 2)
    at = datetime.now(UTC)
    sessions = api.app.state.sessions
    async with sessions() as open_one:
        assert await service.record_stage(open_one, _enrolled(first, at))
        async with sessions() as other:
            await other.execute(text("SET LOCAL lock_timeout = '3s'"))
            assert await service.record_stage(other, _enrolled(second, at))
            await other.commit()  # raised LockNotAvailable when the change upserted the counters
        await open_one.commit()
    day = {"from": at.date().isoformat(), "to": (at.date() + timedelta(days=1)).isoformat()}
    assert _only(await api.funnel(**day))["stages"][1]["entered"] == 2


async def test_queued_changes_are_counted_once_by_reads_racing_the_loop(api: Api) -> None:
    """Reads and the loop roll the queue up at the same time: every change lands in the
    counters once, and the queue ends empty."""
    await _reps(api, 1)
    pids = await _prospects(api, 30)
    loop = api.app.state.funnel_roll_up
    await loop.stop()  # the changes stay queued until the race below
    at = datetime(2026, 5, 6, 7, tzinfo=UTC)
    await asyncio.gather(*(api.acts.record_stage(_enrolled(p, at)) for p in pids))
    async with api.app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(FunnelPending)) >= len(pids)
    loop.start()
    await asyncio.gather(
        *(funnel_queue.roll_up_all(api.app.state.sessions, batch=7) for _ in range(4))
    )
    passes = loop.passes
    while loop.passes < passes + 2:  # and a whole pass of the loop after them
        await asyncio.sleep(0.05)
    async with api.app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(FunnelPending)) == 0
        counted = await session.scalar(
            select(func.sum(FunnelCount.n)).where(
                FunnelCount.grain == "d",
                FunnelCount.cadence_id == "*",
                FunnelCount.rep_id == "*",
                FunnelCount.source == "*",
                FunnelCount.to_stage == "contacting",
            )
        )
    assert counted == len(pids)
    group = _only(await api.funnel(**{"from": "2026-05-06", "to": "2026-05-07"}))
    assert group["stages"][1]["entered"] == len(pids)


async def test_the_loop_counts_changes_nobody_reads(api: Api) -> None:
    await _reps(api, 1)
    (pid,) = await _prospects(api, 1)
    await api.acts.record_stage(_enrolled(pid, datetime(2026, 5, 6, 7, tzinfo=UTC)))
    passes = api.app.state.funnel_roll_up.passes
    while api.app.state.funnel_roll_up.passes < passes + 2:
        await asyncio.sleep(0.05)
    async with api.app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(FunnelPending)) == 0
        total = await session.scalar(
            select(func.sum(FunnelCount.n)).where(
                FunnelCount.grain == "m", FunnelCount.to_stage == "contacting"
            )
        )
    assert total == 8  # 1 change x 8 combinations of cadence/rep/source or "*"


async def test_a_downgrade_counts_the_changes_still_queued(api: Api, settings: Settings) -> None:
    """An earlier release never reads the queue: undoing 0014 adds it to the counters first."""
    await _reps(api, 1)
    pids = await _prospects(api, 3)
    await api.app.state.funnel_roll_up.stop()
    at = datetime(2026, 5, 6, 7, tzinfo=UTC)
    for pid in pids:
        await api.acts.record_stage(_enrolled(pid, at))
    url = settings.database_url("prospecting")
    await asyncio.to_thread(command.downgrade, alembic_config("prospecting", url), "0004")
    async with api.app.state.sessions() as session:
        tables = await session.run_sync(lambda s: inspect(s.connection()).get_table_names())
        assert "funnel_pending" not in tables
        by_grain = dict(
            (
                await session.execute(
                    select(FunnelCount.grain, func.sum(FunnelCount.n))
                    .where(FunnelCount.to_stage == "contacting")
                    .group_by(FunnelCount.grain)
                )
            ).all()
        )
    assert by_grain == {"d": 8 * len(pids), "b": 8 * len(pids), "m": 8 * len(pids)}


async def test_drop_off_causes_keep_their_kind_not_words_that_can_name_the_person(
    api: Api,
) -> None:
    """The counters stay after an erasure as counts without a person, but a drop-off was
    counted by its whole cause: "closed lost: " and then the rep's own words."""
    await _reps(api, 1)
    pids = await _prospects(api, 3)
    at = datetime(2026, 5, 6, 7, tzinfo=UTC)
    causes = [
        "closed lost: q0@x.com (Quinn Q, +14155550123) went with a competitor",
        "closed lost: price",
        "Quinn Q asked us to stop",  # no kind before a colon: not kept either
    ]
    for pid, cause in zip(pids, causes, strict=True):
        await api.acts.record_stage(_enrolled(pid, at))
        later = (at + timedelta(hours=1)).isoformat()
        await api.acts.record_stage(
            StageChange(f"l:{pid}", pid, "contacting", "lost", cause, later)
        )
    resp = await api.http.post(f"/prospects/{pids[0]}/erasure")
    assert resp.status_code == 202, resp.text
    window = {"from": "2026-05-06", "to": "2026-05-07"}
    drop_off = _only(await api.funnel(**window))["stages"][1]["drop_off"]
    assert drop_off == [{"cause": "closed lost", "count": 2}, {"cause": "other", "count": 1}]
    export = (await api.http.get("/exports/funnel.csv", params=window)).text
    assert not any(word in export for word in ("q0@x.com", "Quinn", "4155550123", "price"))
    # the prospect's own history keeps the whole cause (it goes with them)
    stages = (await api.http.get(f"/prospects/{pids[1]}/stages")).json()
    assert "closed lost: price" in [s["cause"] for s in stages]


@pytest.mark.empty_databases
async def test_migration_merges_recorded_causes_into_their_kinds(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    """Counters written before 0015 hold whole causes: each is added to its kind's row."""
    old = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, old, "prospecting", "0014")
    engine = create_async_engine(old.database_url("prospecting"))
    rows = [
        ("contacting", "lost", "closed lost: Quinn went elsewhere", 2),
        ("contacting", "lost", "closed lost: price", 3),
        ("contacting", "lost", "closed lost", 1),  # a kind's row already there: added to
        ("qualifying", "nurture", "qualification timeout: no verdict after 60 s", 4),
        ("contacting", "nurture", "no response after the last cadence step", 5),
        ("contacting", "nurture", "Quinn: stop", 6),
        ("prospecting", "contacting", "", 7),
    ]
    async with engine.begin() as conn:
        for from_stage, to_stage, cause, n in rows:
            await conn.execute(
                text(
                    "INSERT INTO funnel_counts (grain, cadence_id, rep_id, source, period, "
                    "from_stage, to_stage, cause, n) "
                    "VALUES ('m', '*', '*', '*', '2026-05', :f, :t, :c, :n)"
                ),
                {"f": from_stage, "t": to_stage, "c": cause, "n": n},
            )
    await asyncio.to_thread(upgrade, old, "prospecting")
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT from_stage, to_stage, cause, n FROM funnel_counts ORDER BY n")
        )
        assert sorted(tuple(r) for r in found) == sorted(
            [
                ("contacting", "lost", "closed lost", 6),
                ("qualifying", "nurture", "qualification timeout", 4),
                ("contacting", "nurture", "no response after the last cadence step", 5),
                ("contacting", "nurture", "other", 6),
                ("prospecting", "contacting", "", 7),
            ]
        )
    await engine.dispose()


async def test_an_erased_persons_queued_changes_are_counted_before_they_go(api: Api) -> None:
    """Erasure deletes the person's changes (and their queue rows with them); the counters,
    counts without a person, keep them, queued or not."""
    await _reps(api, 1)
    await api.app.state.funnel_roll_up.stop()  # the changes stay queued until the erasure
    (pid,) = await _prospects(api, 1)
    await api.acts.record_stage(_enrolled(pid, datetime(2026, 5, 6, 7, tzinfo=UTC)))
    resp = await api.http.post(f"/prospects/{pid}/erasure")
    assert resp.status_code == 202, resp.text
    async with api.app.state.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StageHistory)) == 0
    group = _only(await api.funnel(**{"from": "2026-05-06", "to": "2026-05-07"}))
    assert (group["stages"][0]["left"], group["stages"][1]["entered"]) == (1, 1)
    # the creation, made today by the service's clock (not TODAY: the tests may have been
    # collected before midnight, UTC), a day either side in case midnight came meanwhile
    now = datetime.now(UTC).date()
    around = {
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(),
    }
    assert _only(await api.funnel(**around))["stages"][0]["entered"] == 1
