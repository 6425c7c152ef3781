"""Delivering events to the subscribed URLs: the one relay (shared.relay) over
`event_deliveries`, the reps' webhooks' outbound rules (shared.outbound: every resolved address
checked and pinned, no redirects, errors shown as categories), Standard Webhooks signatures.

Each attempt POSTs the stored event as it was first serialised, with
  webhook-id         the event's id: the same on every attempt and every redelivery
  webhook-timestamp  the attempt's time (unix seconds)
  webhook-signature  "v1,<base64 HMAC-SHA256 of id.timestamp.body>" under the subscription's
                     secret (and, during a rotation's overlap, a second one under the old secret)
A 2xx is delivered; anything else is retried with the relay's backoff (settings
event_retry_base_seconds doubling up to event_retry_max_seconds) up to event_max_attempts. A
delivery that gives up disables its subscription (`disabled_reason` says which and why): an
endpoint that has failed for hours is broken, and its pending deliveries wait for ops to re-enable
it (they then go out again, in order); events that happen while it is disabled are not queued for
it at all (service.emit). A blocked address gives up at once.

Delivered and failed deliveries are pruned `event_retention_days` after they were queued, then
the events no delivery names any more (the relay's own prune, hourly, in batches); a pending
delivery and its event stay whatever their age."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from services.outreach import models
from services.outreach.events import service
from services.outreach.notifications.webhook_targets import check_webhook_url, webhook_policy
from shared.app import run_during_lifespan
from shared.db import utcnow
from shared.errors import AppError
from shared.outbound import BLOCKED, DeliveryRefused, PinnedClientOwner, post_checked
from shared.relay import (
    LeasedTable,
    Outcome,
    Relay,
    RelayTiming,
    Retained,
    done,
    give_up,
    retry,
)
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryTiming(RelayTiming):
    batch: int = 50
    concurrency: int = 10
    max_attempts: int = 24  # Settings.event_max_attempts
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryTiming:
        return cls(
            base_delay=settings.event_retry_base_seconds,
            max_delay=settings.event_retry_max_seconds,
            max_attempts=settings.event_max_attempts,
            timeout=settings.event_timeout_seconds,
            retention=timedelta(days=settings.event_retention_days),
        )


def signature(secrets: Sequence[str], msg_id: str, at: datetime, body: str) -> str:
    """The webhook-signature header: one `v1,<sig>` per secret, space-separated (the spec's
    way to carry several while a secret is being rotated)."""
    return " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)


def _active_subscriptions() -> Any:
    s = models.EventSubscription
    return select(s.id).where(s.status == service.ACTIVE)


# mypy checks the bound before it applies the Mapped descriptors (sees Mapped[int], not int)
TABLE: LeasedTable[models.EventDelivery] = LeasedTable.of(  # type: ignore[type-var]
    models.EventDelivery,
    # a disabled subscription's deliveries wait (not claimed) until it is re-enabled
    pending=lambda: (
        (models.EventDelivery.status == service.PENDING)
        & models.EventDelivery.subscription_id.in_(_active_subscriptions())
    ),
    order_by=(models.EventDelivery.next_attempt_at, models.EventDelivery.created_at),
    # what the retention prunes: a pending delivery stays, whatever its age
    finished=lambda: models.EventDelivery.status.in_((service.DELIVERED, service.FAILED)),
)


def _undelivered() -> ColumnElement[bool]:
    """An event no delivery names any more (pruned first): nothing can send it again."""
    d = models.EventDelivery
    return ~exists().where(d.event_id == models.WebhookEvent.id)


class EventDeliveries(PinnedClientOwner, Relay[models.EventDelivery]):  # type: ignore[type-var]
    timing: DeliveryTiming

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        settings: Settings,
        timing: DeliveryTiming | None = None,
    ) -> None:
        timing = timing or DeliveryTiming.from_settings(settings)
        events = Retained(
            models.WebhookEvent.id,
            models.WebhookEvent.created_at,
            timedelta(days=settings.event_retention_days),
            _undelivered,
        )
        super().__init__(
            "event deliveries",
            sessions,
            TABLE,
            self._deliver,
            timing,
            on_recorded=self._disable_given_up,
            also_prune=[events],
            longest_attempt=timing.timeout,  # one delivery's wait for the subscriber
        )
        self._settings = settings
        self.outbound = webhook_policy(settings)

    def start(self) -> None:
        self.open_client(self.timing.timeout)
        super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.close_client()

    async def _deliver(self, row: models.EventDelivery) -> Outcome:
        async with self._sessions()() as session:
            sub = await session.get(models.EventSubscription, row.subscription_id)
            event = await session.get(models.WebhookEvent, row.event_id)
        if sub is None or event is None:
            return done("the subscription is gone", status=service.FAILED)
        status: int | None = None
        try:
            try:  # the allowed hosts may have narrowed since the URL was saved
                check_webhook_url(sub.url, self._settings, "url")
            except AppError as err:
                log.warning("event delivery %s refused: %s", row.id, err.message)
                raise DeliveryRefused(BLOCKED, permanent=True) from err
            now = utcnow()
            body = json.dumps(event.payload, separators=(",", ":"))
            headers = {
                "Content-Type": "application/json",
                "webhook-id": event.id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature(
                    service.signing_secrets(sub, now), event.id, now, body
                ),
            }
            status = await post_checked(self.http, sub.url, body.encode(), headers)
        except DeliveryRefused as err:
            # a 4xx is retried too (the receiver may be mid-deploy): only a blocked address
            # cannot get better
            blocked = err.permanent and str(err) == BLOCKED
            if blocked or row.attempts + 1 >= self.timing.max_attempts:
                return give_up(str(err), status=service.FAILED, last_status=err.status)
            return retry(str(err), last_status=err.status)
        return done(status=service.DELIVERED, delivered_at=utcnow(), last_status=status)

    async def _disable_given_up(
        self, session: AsyncSession, results: Sequence[tuple[models.EventDelivery, Outcome]]
    ) -> None:
        """A delivery that gave up disables its subscription, in the recording transaction."""
        s = models.EventSubscription
        for row, outcome in results:
            if not outcome.gave_up:
                continue
            reason = (
                f"delivery {row.id} ({row.event_type}) gave up after {row.attempts + 1} "
                f"attempts: {outcome.error}"
            )
            await session.execute(
                update(s)
                .where(s.id == row.subscription_id, s.status == service.ACTIVE)
                .values(status=service.DISABLED, disabled_reason=reason[:500], updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )


def install_deliveries(app: FastAPI) -> EventDeliveries:
    """app.state.event_deliveries, its loop running while the app's lifespan does."""
    relay = EventDeliveries(lambda: app.state.sessions, app.state.settings)
    app.state.event_deliveries = relay
    run_during_lifespan(app, relay)
    return relay
