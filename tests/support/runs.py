"""Journey runs on a running stack (come back, issue 10): ending a run, reading the runs; and
runs as outreach records them, for activities called as a run calls them."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from services.outreach import models
from shared.contracts.journey import journey_id
from shared.db import create_engine, is_sqlite, session_factory
from tests.support.eventually import eventually
from tests.support.scenarios import Driver, fast_cadence


async def cadence(d: Driver, **overrides: Any) -> dict[str, Any]:
    """A fast cadence that may take prospects back at once (no minimum gap), unless told."""
    body = fast_cadence(**{"reenroll_min_gap_days": 0, **overrides})
    return await d.ok("POST", f"{d.u.outreach}/cadences", json=body)


async def patient_cadence(d: Driver, **overrides: Any) -> dict[str, Any]:
    """A fast cadence whose qualification waits two hours: a prospect a test drives through
    qualifying does not time out meanwhile."""
    return await cadence(
        d, qualification_reminder_seconds=3600, qualification_timeout_seconds=7200, **overrides
    )


async def rep_left_after_the_journey(d: Driver, rep_id: str) -> dict[str, Any]:
    """The rep is deactivated once the prospect's journey is over, and Ben, an active rep, is
    there to take them when they come back (returned). A journey that is over is not handed
    over at the deactivation."""
    ben = await d.ok(
        "POST", f"{d.u.prospecting}/reps", json={"name": "Ben Active", "email": "ben@example.org"}
    )
    gone = await d.ok("PATCH", f"{d.u.prospecting}/reps/{rep_id}", json={"active": False})
    assert gone["moved"] == {}
    return ben


async def runs_of(d: Driver, prospect_id: str) -> list[dict[str, Any]]:
    return await d.ok("GET", f"{d.u.outreach}/prospects/{prospect_id}/journeys")


async def wait_run(d: Driver, prospect_id: str, run: int, **expected: Any) -> list[dict[str, Any]]:
    """The runs, once run `run` has the expected fields (e.g. outcome="nurture")."""

    seen: list[dict[str, Any]] = []

    async def probe() -> list[dict[str, Any]] | None:
        runs = await runs_of(d, prospect_id)
        seen[:] = runs
        found = next((r for r in runs if r["run"] == run), None)
        if found is None or any(found.get(k) != v for k, v in expected.items()):
            return None
        return runs

    try:
        return await eventually(probe, f"run {run} of {prospect_id} with {expected}", 40)
    except AssertionError as err:
        raise AssertionError(f"{err}; the runs: {seen}") from None


async def stop_to_nurture(d: Driver, prospect_id: str, run: int) -> list[dict[str, Any]]:
    """Stop the running journey: it goes to nurture, and the run records that it ended so."""
    await d.ok(
        "POST", f"{d.u.outreach}/journeys/{prospect_id}/stop", json={"reason": "test: no fit yet"}
    )
    return await wait_run(d, prospect_id, run, outcome="nurture", status="ended")


async def first_run_nurtured(
    d: Driver, prospect: dict[str, Any], cadence_id: str
) -> list[dict[str, Any]]:
    """`prospect` enrolled on `cadence_id`, touched once, then stopped: run 1 ended nurtured."""
    await d.enroll(prospect["id"], cadence_id)
    await d.wait_mails(prospect["email"], 1)
    return await stop_to_nurture(d, prospect["id"], 1)


async def handed_over(d: Driver, prospect_id: str, gone_rep_id: str) -> str:
    """The prospect came back to an active rep (returned), the rep `gone_rep_id` having been
    deactivated: prospecting says so, and so does the journey outreach holds."""
    prospect = await d.ok("GET", f"{d.u.prospecting}/prospects/{prospect_id}")
    rep = prospect["rep"]
    assert rep["id"] != gone_rep_id, rep
    assert "deactivated" in prospect["assignment_note"], prospect["assignment_note"]
    journey = await d.ok("GET", f"{d.u.outreach}/journeys/{prospect_id}")
    assert journey["rep_id"] == rep["id"]
    return str(rep["id"])


async def rita_s(d: Driver, prospect: dict[str, Any], rita: dict[str, Any]) -> None:
    """The prospect is Rita's, whatever the rotation gave them (the stack's other tests' reps
    share it)."""
    url = f"{d.u.prospecting}/prospects/{prospect['id']}"
    await d.ok("PATCH", url, json={"rep_id": rita["id"]})


async def inbox_events(d: Driver, prospect_id: str) -> list[dict[str, Any]]:
    return await d.ok("GET", f"{d.u.outreach}/inbox-events", params={"prospect_id": prospect_id})


async def win(d: Driver, prospect: dict[str, Any], cadence_id: str) -> dict[str, Any]:
    """Enroll `prospect`, who replies, is qualified and signs; returns the deal."""
    return await decide(d, prospect, cadence_id, "won")


async def decide(
    d: Driver, prospect: dict[str, Any], cadence_id: str, outcome: str
) -> dict[str, Any]:
    """Enroll `prospect`, who replies and is qualified; the deal is closed `outcome`."""
    await d.enroll(prospect["id"], cadence_id)
    await d.reply_to_first_mail(prospect, "Interested")
    await d.wait_stage(prospect["id"], "qualifying")
    deal = await d.deal_of(prospect["id"])
    answers = {"budget": True, "authority": "decision_maker", "need": "Reports", "timeline": 3}
    await d.ok("POST", f"{d.u.deals}/deals/{deal['id']}/qualification", json={"answers": answers})
    await d.wait_stage(prospect["id"], "presenting")
    close = {"outcome": outcome, "reason": "decided", "value": 900, "currency": "EUR"}
    if outcome == "lost":
        close = {"outcome": "lost", "reason": "went with a rival"}
    await d.ok("POST", f"{d.u.deals}/deals/{deal['id']}/close", json=close)
    return deal


def as_run(workflow_id: str, run_id: str) -> ActivityEnvironment:
    """An activity context as run `run_id` of workflow `workflow_id` calls its activities in:
    an attempt started now with a minute to run (the default's started in 1970, out of time)."""
    now = datetime.now(UTC)
    activities = ActivityEnvironment()
    activities.info = dataclasses.replace(
        ActivityEnvironment.default_info(),
        workflow_id=workflow_id,
        workflow_run_id=run_id,
        scheduled_time=now,
        current_attempt_scheduled_time=now,
        started_time=now,
        start_to_close_timeout=timedelta(minutes=1),
        schedule_to_close_timeout=None,
    )
    return activities


async def add_enrollment(session: AsyncSession, prospect_id: str, **fields: Any) -> None:
    """An enrollment row as outreach records a run of the prospect's journey (`fields`: its
    run, run id, outcome, addresses ...), on the first cadence there is (one made if none)."""
    cadence = await session.scalar(select(models.Cadence).limit(1))
    if cadence is None:
        cadence = models.Cadence(name="runs")
        session.add(cadence)
        await session.flush()
    session.add(
        models.Enrollment(
            prospect_id=prospect_id,
            cadence_id=cadence.id,
            cadence_version=1,
            journey_id=journey_id(prospect_id),
            **fields,
        )
    )


async def lost_then_running(
    sessions: async_sessionmaker[AsyncSession], prospect_id: str, ended: str = ""
) -> tuple[str, str]:
    """The prospect's run 1, ended lost, and run 2, running, as outreach records them (their
    enrollment rows): their Temporal run ids (run 1's is `ended` when given)."""
    ended, running = ended or uuid.uuid4().hex, uuid.uuid4().hex
    async with sessions() as s:
        lost = {"outcome": "lost", "ended_at": datetime.now(UTC), "current": False}
        await add_enrollment(s, prospect_id, run=1, run_id=ended, **lost)
        await add_enrollment(s, prospect_id, run=2, run_id=running)
        await s.commit()
    return ended, running


T = TypeVar("T")

# a run's end as its writers record it: its outcome (record_run_end), or a later run started
# (plan_run)
LOST = {"outcome": "lost"}
REPLACED = {"current": False}


async def while_its_end_is_recorded(
    database_url: str, prospect_id: str, run_id: str, end: dict[str, Any], work: Awaitable[T]
) -> T:
    """`work` (an activity as run `run_id` calls it) done while another connection records that
    run's `end` (LOST, REPLACED): written before the work starts, committed once the work is
    done or waits for it. The work, ordered against the end, either commits before it or sees
    it: here it starts after the write, so it must see it. On PostgreSQL the end commits once
    a backend waits on its lock (or the work is done); SQLite's one writer orders them whenever
    it commits."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as s:
            e = models.Enrollment
            where = (e.prospect_id == prospect_id, e.run_id == run_id)
            await s.execute(update(e).where(*where).values(**end))
            pending = asyncio.ensure_future(work)
            if not is_sqlite(database_url):
                ender = (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                async with engine.connect() as watch:

                    async def waiting_or_done() -> bool:
                        return pending.done() or await _blocked_by(watch, ender)

                    await eventually(waiting_or_done, "the work waiting on the end's lock")
            await s.commit()
        return await pending
    finally:
        await engine.dispose()


async def _blocked_by(conn: AsyncConnection, pid: int) -> bool:
    """Whether a backend waits on a lock `pid` holds (each look a transaction of its own: the
    activity view is read once per transaction)."""
    waiting = await conn.scalar(
        text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
        {"pid": pid},
    )
    await conn.rollback()
    return bool(waiting)
