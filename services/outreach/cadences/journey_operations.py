"""One signal for many journeys (a cadence's or a rep's pause, resume or stop), in requests of
bounded length whatever the count.

The request stores one inbox row per journey (services.outreach.inbox: the durable outbox the
webhooks use) in its own transaction, then tells the first `inline_items` journeys itself and
leaves the rest to the inbox relay, which retries each until Temporal has it (a request id per
row: never twice). The rows are bulk: the relay tells a webhook's signal (a prospect's reply or
opt-out) before them, and keeps a share of each batch for them (shared.relay's lanes). Signalling every journey inside the request made thousands of Temporal calls
that outlived any proxy's timeout, and one that broke midway left the rest untold with nobody
knowing which. `GET /journey-operations/{id}` says how far an operation got.

The rows are the operation: their event ids are `journey-op:<operation id>:<prospect id>`, so
the status is one range read of the inbox's (provider, event_id) index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import inbox, models
from shared.db import new_id
from shared.errors import not_found

PROVIDER = "closeflow"
PREFIX = "journey-op"
# what a delivery that did not happen tells the caller (the codes signal_journey answers with)
SKIPPED = {inbox.NO_JOURNEY: "journey_not_running", inbox.FAILED: "signal_refused"}


class BulkResult(BaseModel):
    """A bulk operation as its request leaves it: the journeys it told itself (`signalled`,
    `skipped` with why), and how many the relay still has to tell (`pending`)."""

    operation_id: str | None  # None: no journey matched, nothing stored
    journeys: int
    signalled: list[str]
    skipped: dict[str, str]
    pending: int


class OperationStatus(BaseModel):
    operation_id: str
    operation: str
    journeys: int
    pending: int
    signalled: int
    no_journey: int
    failed: int
    done: bool


def _event_id(operation_id: str, prospect_id: str) -> str:
    return f"{PREFIX}:{operation_id}:{prospect_id}"


async def signal_journeys(
    request: Request,
    session: AsyncSession,
    operation: str,
    prospect_ids: Sequence[str],
    signal: str,
    payload: Any,
) -> BulkResult:
    """Store `signal` for each prospect's journey with what the session holds, commit, tell
    the first few; the relay tells the rest."""
    if not prospect_ids:
        await session.commit()
        return BulkResult(operation_id=None, journeys=0, signalled=[], skipped={}, pending=0)
    relay: inbox.InboxRelay = request.app.state.inbox
    operation_id = new_id()
    facts = {"operation_id": operation_id}
    now_count = relay.timing.inline_items
    told = []
    for pid in prospect_ids[:now_count]:  # leased to this request's own attempt below
        stored = await inbox.store_event(
            session,
            PROVIDER,
            _event_id(operation_id, pid),
            operation,
            facts,
            prospect_id=pid,
            signal=inbox.JourneySignal(pid, signal, payload),
            bulk=True,  # a failed attempt leaves it to the relay, after a webhook's rows
        )
        if stored is not None and stored.outbound is not None:
            told.append(stored.outbound)
    later = [
        (_event_id(operation_id, pid), inbox.JourneySignal(pid, signal, payload))
        for pid in prospect_ids[now_count:]
    ]
    await inbox.store_for_relay(session, PROVIDER, later, operation, facts)
    await session.commit()
    if later:
        relay.wake()
    await relay.deliver_now(told)
    return await _first_answer(session, operation_id, [t.id for t in told], len(prospect_ids))


async def _first_answer(
    session: AsyncSession, operation_id: str, told: Sequence[int], journeys: int
) -> BulkResult:
    e = models.InboxEvent
    rows = (await session.execute(select(e.prospect_id, e.delivery).where(e.id.in_(told)))).all()
    signalled = sorted(pid for pid, delivery in rows if pid and delivery == inbox.DELIVERED)
    skipped = {pid: SKIPPED[d] for pid, d in rows if pid and d in SKIPPED}
    return BulkResult(
        operation_id=operation_id,
        journeys=journeys,
        signalled=signalled,
        skipped=skipped,
        pending=journeys - len(signalled) - len(skipped),
    )


async def operation_status(session: AsyncSession, operation_id: str) -> OperationStatus:
    e = models.InboxEvent
    first = _event_id(operation_id, "")
    counts = (
        await session.execute(
            select(e.kind, e.delivery, func.count())
            .where(
                e.provider == PROVIDER,
                e.event_id >= first,
                e.event_id < first[:-1] + ";",  # the character after ":": past every row
            )
            .group_by(e.kind, e.delivery)
        )
    ).all()
    if not counts:
        raise not_found("journey_operation", operation_id)
    by_delivery: dict[str, int] = {}
    for _, delivery, count in counts:
        by_delivery[delivery] = by_delivery.get(delivery, 0) + count
    pending = by_delivery.get(inbox.PENDING, 0)
    return OperationStatus(
        operation_id=operation_id,
        operation=counts[0][0],
        journeys=sum(by_delivery.values()),
        pending=pending,
        signalled=by_delivery.get(inbox.DELIVERED, 0),
        no_journey=by_delivery.get(inbox.NO_JOURNEY, 0),
        failed=by_delivery.get(inbox.FAILED, 0),
        done=pending == 0,
    )
