"""Events other systems follow (issue 14): what happened, once per fact, on its way to outreach.

Outreach keeps the event subscriptions and delivers every event to the subscribed URLs
(services/outreach/events). An event is born in the transaction of the fact it reports, in the
service that owns the fact:
  * outreach's own (reply received, opted out, task created): written straight into outreach's
    event table (services.outreach.events.service.emit);
  * prospecting's (stage changed): a row of prospecting's outbox, posted to outreach's
    POST /internal/events by its relay;
  * deals' (meeting booked, deal won, deal lost): a row of deals' `event_outbox` (the columns of
    `EventOutboxColumns`), posted there by `EventForwarder`, a user of the one relay.
Each event has an id derived from the fact (`event_id`), so a retried post, a retried activity
or a repeated request finds the event already there and nothing is delivered twice; the id is
the `webhook-id` of every delivery of it, redeliveries included.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import JSON, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import UTCDateTime, new_id, utcnow
from shared.peers import peer_client
from shared.relay import LeasedTable, Outcome, Relay, RelayTiming, done, give_up, retry

log = logging.getLogger(__name__)

STAGE_CHANGED = "prospect.stage_changed"
REPLY_RECEIVED = "prospect.replied"
OPTED_OUT = "prospect.opted_out"
MEETING_BOOKED = "meeting.booked"
DEAL_WON = "deal.won"
DEAL_LOST = "deal.lost"
TASK_CREATED = "task.created"
EVENT_TYPES: tuple[str, ...] = (
    STAGE_CHANGED,
    REPLY_RECEIVED,
    OPTED_OUT,
    MEETING_BOOKED,
    DEAL_WON,
    DEAL_LOST,
    TASK_CREATED,
)
EVENTS_PATH = "/internal/events"
PENDING, DONE, FAILED = "pending", "done", "failed"


def event_id(event_type: str, fact: str) -> str:
    """The id of the event reporting `fact` (a key unique to it, e.g. a stage change's key): the
    same fact always gets the same id, whoever reports it how often."""
    digest = hashlib.sha256(f"{event_type}\n{fact}".encode()).hexdigest()[:26]
    return f"msg_{digest}"


def event_body(
    event_type: str, fact: str, data: dict[str, Any], at: datetime | None = None
) -> dict[str, Any]:
    """What POST /internal/events takes. `data` names things by id only: a delivery log is kept
    for weeks at the subscriber's end too, so no contact details travel in events."""
    return {
        "id": event_id(event_type, fact),
        "type": event_type,
        "occurred_at": (at or utcnow()).isoformat(),
        "data": data,
    }


class EventOutboxColumns:
    """The columns of a service's event outbox (a declarative mixin: the service's model adds
    its table name and base)."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


async def add_event(
    session: AsyncSession,
    model: type[EventOutboxColumns],
    event_type: str,
    fact: str,
    data: dict[str, Any],
) -> None:
    """Queue the event in the fact's transaction; a fact reported again adds nothing."""
    body = event_body(event_type, fact, data)
    found = await session.scalar(select(model.id).where(model.event_id == body["id"]))
    if found is None:
        session.add(model(event_id=body["id"], body=body))  # type: ignore[call-arg]


@dataclass(frozen=True)
class ForwarderTiming(RelayTiming):
    batch: int = 50
    concurrency: int = 10
    retention: timedelta | None = timedelta(days=7)
    request_timeout: float = 10.0


class EventForwarder(Relay[Any]):
    """Posts a service's queued events to outreach (idempotent there on the event id)."""

    timing: ForwarderTiming

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        model: type[EventOutboxColumns],
        outreach_url: str,
        service_key: str,
        timing: ForwarderTiming | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        timing = timing or ForwarderTiming()
        table: LeasedTable[Any] = LeasedTable.of(
            model,
            pending=lambda: model.status == PENDING,
            order_by=(model.next_attempt_at, model.created_at),
            finished=lambda: model.status == DONE,
        )
        super().__init__("event forwarder", sessions, table, self._post, timing)
        self._url = outreach_url.rstrip("/") + EVENTS_PATH
        self._http = peer_client(service_key, timeout=timing.request_timeout, transport=transport)

    async def stop(self) -> None:
        await super().stop()
        await self._http.aclose()

    async def _post(self, row: EventOutboxColumns) -> Outcome:
        try:
            response = await self._http.post(self._url, json=dict(row.body))
        except httpx.HTTPError as err:
            return retry(f"event {row.event_id}: outreach unreachable: {err!r}")
        if response.is_success:
            return done(status=DONE, done_at=utcnow())
        error = f"event {row.event_id}: outreach answered {response.status_code}: "
        error += response.text[:500]
        if response.status_code in (400, 422):
            return give_up(error, status=FAILED)
        return retry(error)
