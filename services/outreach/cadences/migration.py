"""Moving a cadence's running journeys to a newer version, in requests of bounded length.

The apply is a bulk journey operation (journey_operations.py): one inbox row per running
journey, the first few told by the request, the rest by the inbox relay, 202 with the operation.
Each journey decides whether it moves (workflows/journey/signals.py: one past contacting or
stopped stays); once it was told, its enrollment takes the version the journey then says it
runs (`follow_journey`, in the delivery's attempt): never before it was told, never a version it
refused. Reading and signalling every journey inside the request made tens of thousands of
Temporal calls for a large cadence, and one that broke midway left the rest unmoved with
nobody knowing which.

The dry run lists one page of those journeys (each read from Temporal: at most `limit` reads)
and counts them all from outreach's own rows (no Temporal read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from services.outreach import models
from services.outreach.inbox import Outbound
from shared.contracts.journey import CadenceSnapshot
from shared.contracts.names import Sig
from shared.contracts.plan import step_due, touch_groups
from shared.journeys import first_task_time, query_state, read_journey
from shared.paging import Page, page

OPERATION = "cadence_migration"
FANOUT = 20  # journeys of a dry run's page read at once
DEFAULT_LIMIT = 50  # a dry run's page: each of its journeys is two Temporal reads
MAX_LIMIT = 200


def candidates(cadence_id: str, below: int) -> Select[Any]:
    """The current runs of the cadence on a version older than `below` and not known to have
    ended (their journeys are the ones to move)."""
    e = models.Enrollment
    return select(e).where(
        e.cadence_id == cadence_id,
        e.cadence_version < below,
        e.current.is_(True),
        e.ended_at.is_(None),
    )


async def count(session: AsyncSession, cadence_id: str, below: int) -> int:
    query = candidates(cadence_id, below).with_only_columns(func.count())
    return int(await session.scalar(query) or 0)


async def prospects(session: AsyncSession, cadence_id: str, below: int) -> list[str]:
    query = candidates(cadence_id, below).with_only_columns(models.Enrollment.prospect_id)
    return list((await session.scalars(query.order_by(models.Enrollment.id))).all())


async def candidates_page(
    session: AsyncSession, cadence_id: str, below: int, after: str | None, limit: int
) -> Page[models.Enrollment]:
    return await page(
        session,
        candidates(cadence_id, below),
        [models.Enrollment.id],
        after=after,
        limit=limit,
        what="enrollment",
    )


async def plan(
    client: Client, target: CadenceSnapshot, rows: list[models.Enrollment]
) -> list[dict[str, Any]]:
    """Where each of `rows`' journeys stands and what it would get next on `target`; those
    past contacting, stopped or no longer running are left out (they would not move)."""
    groups = touch_groups(target.steps)
    sem = asyncio.Semaphore(FANOUT)
    items: list[dict[str, Any]] = []

    async def inspect(row: models.Enrollment) -> None:
        async with sem:
            # a journey that cannot be read fails the whole page (503): left out, it would
            # look as if it stayed on its old version
            read = await read_journey(client, row.journey_id, running_only=True)
            if read is None or read[1].stage != "contacting" or read[1].stopped:
                return  # past the cadence: a new version changes nothing for them
            described, state = read
            # the journey's clock when contacting began, not the run's start (its first task
            # may have waited for a worker)
            started = await first_task_time(client, described.id, described.run_id)
        nxt = groups[state.next_step] if state.next_step < len(groups) else []
        # the journey's own rule (workflows/journey/contact.py, _due): the new version's step on
        # the prospect's calendar, moved by the delay its late touches brought
        delay = timedelta(seconds=state.cadence_delay_seconds)
        holidays = target.send_window.holidays
        items.append(
            {
                "prospect_id": row.prospect_id,
                "from_version": state.cadence_version or row.cadence_version,
                "at_step": state.next_step,
                "next_touch": [
                    {"channel": s.channel, "subject": s.subject, "body": s.body} for s in nxt
                ],
                "next_due_at": (
                    step_due(started, nxt[0], state.timezone, holidays, delay).isoformat()
                    if nxt
                    else None
                ),
                "then": "nurture" if not nxt else "touch",
            }
        )

    await asyncio.gather(*(inspect(r) for r in rows))
    items.sort(key=lambda i: (i["at_step"], i["prospect_id"]))
    return items


def follower(app: FastAPI) -> Callable[[Outbound], Awaitable[None]]:
    """What follows a delivered migrate signal: the journey's enrollment takes the version the
    journey now says it runs (the same or an older one leaves it as it is)."""

    async def follow_journey(item: Outbound) -> None:
        client: Client = app.state.temporal
        state = await query_state(client.get_workflow_handle(item.workflow_id))
        moved = item.signal_payload or {}
        if state is None or not moved.get("cadence_id"):
            return  # ended meanwhile: its run's enrollment stays as it ran
        e = models.Enrollment
        async with app.state.sessions() as session:
            await session.execute(
                update(e)
                .where(
                    e.journey_id == item.workflow_id,
                    e.current.is_(True),
                    e.cadence_id == moved["cadence_id"],
                    e.cadence_version < state.cadence_version,
                )
                .values(cadence_version=state.cadence_version)
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    return follow_journey


def install(app: FastAPI) -> None:
    app.state.inbox.after_delivery[Sig.MIGRATE_CADENCE] = follower(app)
