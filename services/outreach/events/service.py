"""Event subscriptions: use cases (take a session, never commit).

`emit` stores an event once (its id is derived from the fact: shared.events) and, in the same
transaction, queues one delivery per active subscription that names its type; the delivery
relay (services.outreach.events.delivery) posts them after the commit."""

from __future__ import annotations

import base64
import math
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from shared.db import new_id, utcnow
from shared.errors import AppError, invalid, not_found
from shared.events import EVENT_TYPES, OPTED_OUT, REPLY_RECEIVED, TASK_CREATED, event_body
from shared.paging import Page, page

ACTIVE, DISABLED = "active", "disabled"
# retired secrets signing at once at most (a signature each on every delivery)
MAX_RETIRED = 10
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 24 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def check_events(events: Sequence[str]) -> list[str]:
    if not events:
        raise invalid("events", f"name at least one of: {', '.join(EVENT_TYPES)}")
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise invalid("events", f"unknown {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return sorted(set(events))


# --- emitting -------------------------------------------------------------------------------------


async def emit(session: AsyncSession, body: dict[str, Any]) -> bool:
    """Store the event (a body made by shared.events.event_body) and queue its deliveries, in
    the caller's transaction. False when the event was there already (a repeat), or is about
    a prospect erased here (dropped)."""
    if body.get("type") not in EVENT_TYPES:
        raise invalid("type", f"unknown event type {body.get('type')!r}")
    try:
        occurred = datetime.fromisoformat(str(body["occurred_at"]))
    except (KeyError, ValueError):
        raise invalid("occurred_at", "an ISO-8601 time") from None
    if await _about_erased_prospect(session, body):
        return False
    now = utcnow()
    stored = cast(
        CursorResult[Any],
        await session.execute(
            _insert(session, models.WebhookEvent)
            .values(
                id=body["id"], type=body["type"], payload=body, occurred_at=occurred, created_at=now
            )
            .on_conflict_do_nothing(index_elements=["id"])
        ),
    )
    if stored.rowcount != 1:
        return False
    # a disabled one queues nothing: a subscription left disabled for months would otherwise
    # pile up deliveries without end, all sent in one burst when re-enabled
    s = models.EventSubscription
    subscriptions = (await session.scalars(select(s).where(s.status == ACTIVE))).all()
    for sub in subscriptions:
        if body["type"] in sub.events:
            session.add(
                models.EventDelivery(
                    id=new_id(),
                    subscription_id=sub.id,
                    event_id=body["id"],
                    event_type=body["type"],
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    await session.flush()
    return True


async def _about_erased_prospect(session: AsyncSession, body: dict[str, Any]) -> bool:
    """An event about a prospect erased here (reported after the erasure, e.g. by deals' outbox
    relaying late) would tell the subscribers about a person who is gone: it is dropped."""
    data = body.get("data")
    prospect_id = data.get("prospect_id") if isinstance(data, dict) else None
    if not isinstance(prospect_id, str):
        return False
    found = await session.get(models.ErasedProspect, prospect_id)
    return found is not None


async def emit_event(
    session: AsyncSession, event_type: str, fact: str, data: dict[str, Any]
) -> bool:
    """An outreach fact's event, in the fact's transaction."""
    return await emit(session, event_body(event_type, fact, data))


# --- subscriptions ------------------------------------------------------------------------------


async def create(
    session: AsyncSession, url: str, events: Sequence[str], description: str
) -> models.EventSubscription:
    sub = models.EventSubscription(
        id=new_id(),
        url=url,
        events=check_events(events),
        description=description,
        secret=new_secret(),
        status=ACTIVE,
        disabled_reason="",
    )
    session.add(sub)
    await session.flush()
    return sub


async def get(
    session: AsyncSession, subscription_id: str, *, lock: bool = False
) -> models.EventSubscription:
    sub = await session.get(models.EventSubscription, subscription_id, with_for_update=lock)
    if sub is None:
        raise not_found("event subscription", subscription_id)
    return sub


async def list_all(session: AsyncSession) -> Sequence[models.EventSubscription]:
    s = models.EventSubscription
    return (await session.scalars(select(s).order_by(s.created_at, s.id))).all()


async def change(
    session: AsyncSession, subscription_id: str, values: dict[str, Any]
) -> models.EventSubscription:
    """url, events, description, and status (active: re-enabled; the deliveries that were
    pending when it was disabled go out again at once, each with its attempts from zero; events
    of the time it was disabled were never queued for it)."""
    sub = await get(session, subscription_id, lock=True)
    if "events" in values:
        values["events"] = check_events(values["events"])
    status = values.pop("status", None)
    for name, value in values.items():
        setattr(sub, name, value)
    now = utcnow()
    if status is not None and status != sub.status:
        sub.status = status
        sub.disabled_reason = "" if status == ACTIVE else "disabled by ops"
        if status == ACTIVE:
            d = models.EventDelivery
            await session.execute(
                update(d)
                .where(d.subscription_id == sub.id, d.status == PENDING)
                .values(attempts=0, next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
    sub.updated_at = now
    await session.flush()
    return sub


async def remove(session: AsyncSession, subscription_id: str) -> None:
    sub = await get(session, subscription_id, lock=True)
    d = models.EventDelivery
    await session.execute(delete(d).where(d.subscription_id == sub.id))
    await session.execute(
        delete(models.EventSubscription).where(models.EventSubscription.id == sub.id)
    )


async def rotate_secret(
    session: AsyncSession, subscription_id: str, overlap: timedelta
) -> models.EventSubscription:
    """A new secret; the old one signs beside it for `overlap` (the receiver switches meanwhile),
    and so do the ones earlier rotations retired, each until its own overlap ends: ops who lost
    the secret shown once rotate again, and the receiver still has the first one."""
    sub = await get(session, subscription_id, lock=True)
    now = utcnow()
    retired = sub.retired_until(now)
    if overlap.total_seconds() > 0:
        if len(retired) >= MAX_RETIRED:
            # dropping the oldest would break a receiver still verifying with it, silently
            raise _no_free_slot(min(until for _, until in retired), now)
        retired.append((sub.secret, now + overlap))
    sub.retired_secrets = [
        {"secret": secret, "until": until.isoformat()} for secret, until in retired
    ]
    sub.secret = new_secret()
    sub.updated_at = now
    await session.flush()
    return sub


def _no_free_slot(free_at: datetime, now: datetime) -> AppError:
    return AppError(
        409,
        "too_many_retired_secrets",
        f"{MAX_RETIRED} retired secrets still sign beside the current one, each until its own "
        f"overlap ends; rotating again would drop one a receiver may still verify with. The "
        f"oldest retires at {free_at.isoformat()}: rotate after that",
        [{"field": "secret", "problem": "no free slot", "free_at": free_at.isoformat()}],
        retry_after=math.ceil((free_at - now).total_seconds()),
    )


def signing_secrets(sub: models.EventSubscription, now: datetime) -> list[str]:
    """The current secret, then the retired ones still signing, newest first."""
    return [sub.secret, *(secret for secret, _ in reversed(sub.retired_until(now)))]


# --- the delivery log ---------------------------------------------------------------------------


async def deliveries(
    session: AsyncSession,
    subscription_id: str,
    *,
    status: str | None,
    event_type: str | None,
    limit: int,
    before: str | None,
) -> Page[models.EventDelivery]:
    """Newest first, one page (shared.paging): `before` (the previous page's cursor) pages on,
    past a delivery the retention pruned meanwhile too."""
    await get(session, subscription_id)
    d = models.EventDelivery
    query = select(d).where(d.subscription_id == subscription_id)
    if status:
        query = query.where(d.status == status)
    if event_type:
        query = query.where(d.event_type == event_type)
    order = [d.created_at, d.id]
    return await page(
        session,
        query,
        order,
        after=before,
        limit=limit,
        what="delivery",
        descending=True,
        field="before",
    )


async def redeliver(
    session: AsyncSession, subscription_id: str, delivery_id: str
) -> models.EventDelivery:
    """Send it again now, whatever became of it: same event, same webhook-id, attempts from
    zero. Refused (409) while the subscription is disabled: it would only wait."""
    sub = await get(session, subscription_id)
    if sub.status != ACTIVE:
        raise AppError(
            409, "subscription_disabled", "re-enable the subscription first (PATCH status=active)"
        )
    row = await session.get(models.EventDelivery, delivery_id, with_for_update=True)
    if row is None or row.subscription_id != subscription_id:
        raise not_found("delivery", delivery_id)
    row.status = PENDING
    row.attempts = 0
    row.next_attempt_at = utcnow()
    row.redeliveries += 1
    await session.flush()
    return row


# --- outreach's own facts -----------------------------------------------------------------------


async def task_created(session: AsyncSession, task: models.RepTask) -> None:
    """In the transaction that inserts the task (its id set by the caller): the task's unique
    key is the fact, so a retried activity adds no second event."""
    data = {
        "task_id": task.id,
        "prospect_id": task.prospect_id,
        "rep_id": task.rep_id,
        "kind": task.kind,
        "due_at": task.due_at.isoformat() if task.due_at else None,
    }
    await emit_event(session, TASK_CREATED, task.key, data)


async def reply_received(
    session: AsyncSession, provider: str, event_id: str, prospect_id: str, channel: str
) -> None:
    """In the transaction that stores the reply (once per provider event)."""
    data = {"prospect_id": prospect_id, "channel": channel, "provider": provider}
    await emit_event(session, REPLY_RECEIVED, f"{provider}:{event_id}", data)


async def opted_out(session: AsyncSession, record: models.ConsentRecord, channel: str) -> None:
    """In the transaction that opts the person out (only when that changed their consent). An
    opt-out of an address no prospect has is no event: there is nobody to name."""
    if record.prospect_id is None:
        return
    at = getattr(record, f"{channel}_changed_at")
    reason = getattr(record, f"{channel}_reason") or ""
    data = {"prospect_id": record.prospect_id, "channel": channel, "reason": reason[:100]}
    await emit_event(session, OPTED_OUT, f"{record.id}:{channel}:{at.isoformat()}", data)
