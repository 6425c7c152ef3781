"""Two requests plan a run of the same prospect's journey at once (an integration's enrolment
and prospecting's automatic one, a follow-up and a hand enrolment): on PostgreSQL both read "no
run yet" and both insert the run; the unique key lets one row in. The request whose row lost
takes the other's run as a running one, never as its own: the same cadence is a repeat, another
cadence is 409 `already_enrolled`, so no start ever runs its cadence on the other's row."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from services.outreach.cadences import runs, schemas, service
from shared.contracts.journey import Contact
from shared.db import create_engine, session_factory
from shared.errors import AppError
from tests.support.eventually import eventually
from tests.support.fixtures import ON_POSTGRES
from tests.support.settings import make_settings

IDA = Contact("p-ida", "Ida", email="ida@example.com")
# a prospect without runs: plan_run asks Temporal nothing
NO_TEMPORAL: Client = None  # type: ignore[assignment]


def _cadence(name: str) -> schemas.CadenceIn:
    return schemas.CadenceIn(
        name=name,
        steps=[
            schemas.StepIn(channel="email", offset_seconds=0, subject="Hi", body="Hello"),
            schemas.StepIn(channel="sms", offset_seconds=0, body="Hello"),
        ],
    )


Seen = tuple[bool, str, int, str, str]  # created, the row's id, run and cadence, the snapshot's


def _seen(planned: runs.Planned) -> Seen:
    row = planned.row
    return (planned.created, row.id, row.run, row.cadence_id, planned.snapshot.cadence_id)


async def _race(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, first: str, second: str
) -> tuple[Seen, Seen | AppError]:
    """The first request plans its run and holds its transaction open; the second plans its own
    meanwhile (its insert waits on the first's row); then the first commits."""
    settings = make_settings(tmp_path)
    async with sessions() as a, sessions() as b, sessions() as watch:
        won = _seen(
            await runs.plan_run(a, NO_TEMPORAL, settings, IDA, runs.NewRun(IDA.prospect_id, first))
        )

        async def plan_second() -> Seen | AppError:
            try:
                new = runs.NewRun(IDA.prospect_id, second)
                return _seen(await runs.plan_run(b, NO_TEMPORAL, settings, IDA, new))
            except AppError as err:
                return err

        # the second's own backend: pg_locks lists every database's waits, other tests' too
        waiter = await b.scalar(text("SELECT pg_backend_pid()"))
        racing = asyncio.create_task(plan_second())

        async def waiting_on_the_row() -> bool:
            query = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = :pid")
            waits = await watch.scalar(query, {"pid": waiter})
            return bool(waits) or None  # type: ignore[return-value]

        await eventually(waiting_on_the_row, "the second insert waiting on the first's row")
        await a.commit()
        lost = await racing
        await b.rollback()
    return won, lost


@pytest.fixture
async def sessions(
    database_urls: dict[str, str],
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_urls["outreach"])
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def _cadences(sessions: async_sessionmaker[AsyncSession], *names: str) -> list[str]:
    async with sessions() as s:
        ids = [(await service.create_cadence(s, _cadence(name))).id for name in names]
        await s.commit()
    return ids


@ON_POSTGRES
async def test_a_run_planned_for_another_cadence_meanwhile_is_refused(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    x, y = await _cadences(sessions, "X", "Y")
    won, lost = await _race(sessions, tmp_path, x, y)
    assert won[0] and won[3] == x
    assert isinstance(lost, AppError), f"took the other's row as created: {lost}"
    assert (lost.status, lost.code) == (409, "already_enrolled") and x in str(lost)
    async with sessions() as s:
        stored = await runs.all_runs(s, IDA.prospect_id)
        assert [(r.run, r.cadence_id) for r in stored] == [(1, x)]


@ON_POSTGRES
async def test_a_run_planned_for_the_same_cadence_meanwhile_is_that_run(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    (x,) = await _cadences(sessions, "X")
    won, lost = await _race(sessions, tmp_path, x, x)
    # the other request's run: a repeat, not a run this request created (a hand enrolment
    # that created its run cancels a pending follow-up; a repeat does not)
    assert lost == (False, won[1], 1, x, x)
