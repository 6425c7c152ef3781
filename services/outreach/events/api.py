"""Event subscriptions: ops subscribe URLs to events (docs/guides/event-subscriptions.md); the
other services report their events here (POST /internal/events, idempotent on the event id)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.outreach import models
from services.outreach.events import service
from services.outreach.notifications.webhook_targets import check_webhook_url
from shared.auth import require_api_key
from shared.db import Session
from shared.events import EVENT_TYPES
from shared.idempotency import IdempotentSealed
from shared.json_schema import HTTP_URL, Documented
from shared.paging import AFTER, Linked
from shared.requests import InternalModel, WriteModel

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["event subscriptions"])


# the OpenAPI states what check_events and check_webhook_url hold these to (their 422s say which)
EventType = Annotated[
    str, StringConstraints(max_length=40), Documented({"enum": list(EVENT_TYPES)})
]
EventTypes = Annotated[list[EventType], Documented({"minItems": 1})]
Url = Annotated[str, Documented(HTTP_URL)]


class SubscriptionIn(WriteModel):
    url: Url = Field(max_length=2000, description="where events are POSTed")
    events: EventTypes = Field(
        max_length=len(EVENT_TYPES), description=f"any of {', '.join(EVENT_TYPES)}"
    )
    description: str = Field("", max_length=300)


class SubscriptionPatch(WriteModel):
    url: Url | None = Field(None, max_length=2000)
    events: EventTypes | None = Field(None, max_length=len(EVENT_TYPES))
    description: str | None = Field(None, max_length=300)
    status: Literal["active", "disabled"] | None = Field(
        None, description="active re-enables it: its waiting deliveries go out at once"
    )


class Subscription(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    url: str
    events: list[str]
    description: str
    status: str
    disabled_reason: str
    previous_secret_until: datetime | None = Field(
        description="until when deliveries are signed with the previous secret too"
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionWithSecret(Subscription):
    secret: str = Field(description="shown only now: verify deliveries with it")


class Delivery(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    event_id: str = Field(description="the webhook-id header of every attempt")
    event_type: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    redeliveries: int


class EventIn(InternalModel):
    id: str = Field(max_length=40)
    type: str = Field(max_length=40)
    occurred_at: str = Field(max_length=40)
    data: dict[str, Any] = Field(default_factory=dict, max_length=50)


def _wake(request: Request) -> None:
    relay = getattr(request.app.state, "event_deliveries", None)
    if relay is not None:
        relay.wake()


@router.get("/event-types", response_model=list[str])
async def event_types() -> list[str]:
    return list(EVENT_TYPES)


# these answers hold a signing secret, shown once: a retry with the first request's
# Idempotency-Key gets the same secret (its answer kept sealed) instead of a second subscription
# or rotation
@router.post(
    "/event-subscriptions",
    status_code=201,
    response_model=SubscriptionWithSecret,
    dependencies=[IdempotentSealed],
)
async def create_subscription(
    body: SubscriptionIn, session: Session, request: Request
) -> SubscriptionWithSecret:
    """Subscribe a URL; the answer carries its signing secret, shown only this once."""
    check_webhook_url(body.url, request.app.state.settings, "url")
    sub = await service.create(session, body.url, body.events, body.description)
    await session.commit()
    return SubscriptionWithSecret.model_validate(sub)


@router.get("/event-subscriptions", response_model=list[Subscription])
async def list_subscriptions(session: Session) -> list[models.EventSubscription]:
    return list(await service.list_all(session))


@router.get("/event-subscriptions/{subscription_id}", response_model=Subscription)
async def get_subscription(subscription_id: str, session: Session) -> models.EventSubscription:
    return await service.get(session, subscription_id)


@router.patch("/event-subscriptions/{subscription_id}", response_model=Subscription)
async def change_subscription(
    subscription_id: str, body: SubscriptionPatch, session: Session, request: Request
) -> models.EventSubscription:
    values = body.model_dump(exclude_none=True)
    if "url" in values:
        check_webhook_url(values["url"], request.app.state.settings, "url")
    sub = await service.change(session, subscription_id, values)
    await session.commit()
    _wake(request)
    return sub


@router.delete("/event-subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: str, session: Session) -> None:
    await service.remove(session, subscription_id)


@router.post(
    "/event-subscriptions/{subscription_id}/secret",
    response_model=SubscriptionWithSecret,
    dependencies=[IdempotentSealed],
)
async def rotate_secret(
    subscription_id: str, session: Session, request: Request
) -> SubscriptionWithSecret:
    """A new secret, shown only now; the previous one keeps signing beside it for
    CLOSEFLOW_EVENT_SECRET_OVERLAP_SECONDS. 409 too_many_retired_secrets (with Retry-After and
    `free_at`) while 10 retired secrets still sign: one more would drop the oldest early."""
    overlap = timedelta(seconds=request.app.state.settings.event_secret_overlap_seconds)
    sub = await service.rotate_secret(session, subscription_id, overlap)
    await session.commit()
    return SubscriptionWithSecret.model_validate(sub)


@router.get("/event-subscriptions/{subscription_id}/deliveries", response_model=list[Delivery])
async def list_deliveries(
    subscription_id: str,
    session: Session,
    link: Linked,
    status: Literal["pending", "delivered", "failed"] | None = None,
    event_type: str | None = Query(None, max_length=40),
    limit: int = Query(50, ge=1, le=500),
    before: str | None = Query(None, max_length=400, description=AFTER),
) -> list[models.EventDelivery]:
    """The delivery log, newest first; the Link header's `before` for the next (older) page."""
    log = await service.deliveries(
        session,
        subscription_id,
        status=status,
        event_type=event_type,
        limit=limit,
        before=before,
    )
    return link(log, field="before")


@router.post(
    "/event-subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver",
    response_model=Delivery,
)
async def redeliver(
    subscription_id: str, delivery_id: str, session: Session, request: Request
) -> models.EventDelivery:
    """Send it again now (same event, same webhook-id)."""
    row = await service.redeliver(session, subscription_id, delivery_id)
    await session.commit()
    _wake(request)
    return row


@router.post("/internal/events", status_code=202)
async def receive_event(body: EventIn, session: Session, request: Request) -> dict[str, bool]:
    """An event of another service (its outbox retries until 2xx); a repeat stores nothing."""
    stored = await service.emit(session, body.model_dump())
    await session.commit()
    if stored:
        _wake(request)
    return {"stored": stored}
