"""Erasure orders a service takes at the same moment (PostgreSQL). The relay posts a batch of
outbox rows at once, so the orders of a referrer and of a person they referred (erased the
same day, say a company's contacts at its request) reach a service together: the referrer's
rewrites the referred person's introduction and task while the referred person's deletes them.
Neither may fail for the other's sake (a deadlock: a 500, the relay retrying, the erasure's
status showing the error meanwhile)."""

from __future__ import annotations

import asyncio
import warnings

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models as m
from shared.erasure import ErasureOrder
from tests.support.apps import Api, ServiceApp
from tests.support.fixtures import ON_POSTGRES
from tests.support.settings import SERVICE_AUTH

GRACE = "p-grace"


async def _waiting(
    session: AsyncSession, count: int, orders: list[asyncio.Task[httpx.Response]]
) -> None:
    """Until `count` transactions of this database wait on a lock another holds; at once an
    error if an order answered without waiting. The orders must succeed whatever the server
    shows, so a wait not seen within a minute (twice in CI on 2026-12-07, cause not found: the
    order's task was awaiting PostgreSQL, which showed no lock wait in this database) is told
    as a warning with what the server showed, and the test goes on without the interleaving."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(2400):
        found = await session.scalar(waiting)
        await session.rollback()  # each look a transaction of its own
        if found >= count:
            return
        for order in orders:
            if order.done():
                answer = order.result()
                raise AssertionError(f"an order ended before it waited: {answer.text}")
        await asyncio.sleep(0.025)
    shown = text(
        "SELECT datname, state, wait_event_type, wait_event, left(query, 120)"
        " FROM pg_stat_activity WHERE backend_type = 'client backend'"
    )
    rows = (await session.execute(shown)).all()
    await session.rollback()
    warnings.warn(
        f"{count} transactions never seen waiting; the server showed {rows}", stacklevel=2
    )


def _message(key: str, subject: str) -> m.Message:
    return m.Message(
        id=key, journey_id=f"journey-{GRACE}", touch_key=key, channel="email", kind="cadence",
        prospect_id=GRACE, to_address="grace@example.com", subject=subject, body=subject,
    )  # fmt: skip


@ON_POSTGRES
async def test_a_referrer_and_a_person_they_referred_erased_at_once_both_succeed(
    service_app: ServiceApp, api: Api
) -> None:
    outreach = await service_app("outreach")
    client = await api(outreach)
    async with outreach.state.sessions() as session:
        session.add(_message("m-first", "Your first step"))  # the first her erasure meets
        await session.commit()
        session.add(_message("m-intro", "Ada Lovelace suggested we talk"))
        session.add(
            m.RepTask(
                id="t-grace", key="grace-call", prospect_id=GRACE, journey_id=f"journey-{GRACE}",
                kind="call", title="Call Grace (Ada Lovelace introduced her)",
            )
        )  # fmt: skip
        session.add(
            m.TaskNotification(
                task_id="t-grace", reason="urgent", recipient_rep_id="rep-1", channel="email",
                target="rep@example.com", subject="Ada Lovelace's referral", text="",
            )
        )  # fmt: skip
        await session.commit()
    ada = ErasureOrder(
        erasure_id="e-ada", prospect_id="p-ada", name="Ada Lovelace",
        referred_prospect_ids=[GRACE],
    )  # fmt: skip
    grace = ErasureOrder(erasure_id="e-grace", prospect_id=GRACE)

    def post(order: ErasureOrder) -> asyncio.Task[httpx.Response]:
        body = order.model_dump(mode="json")
        return asyncio.create_task(
            client.post("/internal/erasures", json=body, headers=SERVICE_AUTH)
        )

    # The interleaving a busy relay meets by chance, made certain: a send still writing Grace's
    # first message holds it, so her order waits there, her task already deleted; Ada's comes.
    async with outreach.state.sessions() as holder:
        await holder.execute(
            select(m.Message.id).where(m.Message.id == "m-first").with_for_update()
        )
        async with outreach.state.sessions() as watcher:
            grace_erased = post(grace)
            await _waiting(watcher, 1, [grace_erased])
            ada_erased = post(ada)
            await _waiting(watcher, 2, [grace_erased, ada_erased])
        await holder.commit()
    # a deadlock's victim: a 500 from a deployed service, the exception itself through ASGI
    answers = await asyncio.gather(grace_erased, ada_erased, return_exceptions=True)
    failed = [a for a in answers if not isinstance(a, httpx.Response) or a.status_code != 200]
    assert not failed, failed
    async with outreach.state.sessions() as session:
        for model in (m.Message, m.RepTask, m.TaskNotification):
            assert await session.scalar(select(func.count()).select_from(model)) == 0, model
