"""Calls to other services that must happen even if they are down right now.

The use case writes an OutboxMessage in its own transaction (a rep move, an erasure order, an
auto-enrollment); after the commit the relay, running in the prospecting app, POSTs it to the
target service with the API key, and retries with the relay's backoff (shared.relay: 1 s
doubling to 5 min) until the service answers 2xx. Every target is idempotent, so a repeat after an answer that got lost does
nothing more. An answer 400/422 means the order itself is wrong: retrying cannot help, the row
becomes `failed` with the answer kept (visible in the erasure status, and in the log; of an
erasure order's answer only the status and error code). A finished erasure order, confirmed or
refused, keeps no plain email, phone or name: its digests stay.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.prospecting.models import Erasure, OutboxMessage
from shared.app import run_during_lifespan
from shared.db import utcnow
from shared.erasure import scrubbed_order
from shared.peers import peer_client
from shared.relay import LeasedTable, Outcome, Relay, RelayTiming, done, give_up, retry
from shared.settings import Settings

log = logging.getLogger(__name__)

PENDING, DONE, FAILED, SUPERSEDED = "pending", "done", "failed", "superseded"
TARGETS = ("outreach", "deals", "referrals")
EVENT = "event"  # a subscribers' event, relayed to outreach (services.prospecting.service)


@dataclass(frozen=True)
class OutboxTiming(RelayTiming):
    batch: int = 50
    concurrency: int = 50  # a batch is posted at once: each target answers quickly or times out
    retention: timedelta | None = timedelta(days=7)
    request_timeout: float = 10.0


def add(
    session: AsyncSession,
    *,
    kind: str,
    target: str,
    path: str,
    payload: dict[str, Any],
    subject_id: str,
) -> OutboxMessage:
    row = OutboxMessage(
        kind=kind,
        target=target,
        path=path,
        payload=payload,
        subject_id=subject_id,
    )  # pending and due now: the model's defaults
    session.add(row)
    return row


def service_urls(settings: Settings) -> dict[str, str]:
    return {
        "outreach": settings.outreach_url,
        "deals": settings.deals_url,
        "referrals": settings.referrals_url,
    }


def service_key(settings: Settings) -> str:
    """The key prospecting calls the other services with: the service token."""
    return settings.internal_api_key


# mypy checks the bound before it applies the Mapped descriptors (sees Mapped[int], not int)
class OutboxRelay(Relay[OutboxMessage]):  # type: ignore[type-var]
    """The outbox's user of the one relay (shared.relay): a row is a POST to a peer service."""

    timing: OutboxTiming

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        settings: Settings,
        timing: OutboxTiming | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        timing = timing or OutboxTiming()
        super().__init__(
            "outbox relay", sessions, TABLE, self._post, timing, on_recorded=_erasures_recorded
        )
        self._urls = service_urls(settings)
        self._http = peer_client(
            service_key(settings), timeout=timing.request_timeout, transport=transport
        )

    async def stop(self) -> None:
        await super().stop()
        await self._http.aclose()

    async def _post(self, row: OutboxMessage) -> Outcome:
        url = self._urls[row.target].rstrip("/") + row.path
        try:
            response = await self._http.post(url, json=dict(row.payload))
        except httpx.HTTPError as err:
            return retry(f"{row.kind} to {row.target}: {row.target} unreachable: {err!r}")
        if response.is_success:
            return done(status=DONE, done_at=utcnow(), **_scrubbed(row))
        error = f"{row.kind} to {row.target}: answered {response.status_code}: "
        error += _answer(row, response)
        if response.status_code in (400, 422):
            return give_up(error, status=FAILED, **_scrubbed(row))
        return retry(error)


_ERROR_CODE = re.compile(r"[a-z0-9_.-]{1,64}")  # an error code, not text that may quote


def _answer(row: OutboxMessage, response: httpx.Response) -> str:
    """What of a refusal is kept (last_error, the erasure's status) and logged. An answer may
    quote the request (a validation error echoing its input, a proxy's error page): for an
    erasure order, whose request holds the person's email, phone and name, only the error's
    code (the one error shape, shared.errors) is kept."""
    if row.kind != "erasure":
        return response.text[:500]
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        return code
    return "(no error code; the answer's text is not kept)"


def _scrubbed(row: OutboxMessage) -> dict[str, Any]:
    """A finished erasure order's row keeps no plain email, phone or name (migration 0013 did
    the same to the rows finished before); its ids and keyed digests stay with its status."""
    if row.kind != "erasure":
        return {}
    return {"payload": scrubbed_order(row.payload)}


async def _erasures_recorded(
    session: AsyncSession, results: Sequence[tuple[OutboxMessage, Outcome]]
) -> None:
    """An erasure is done when every service confirmed its part."""
    await session.flush()
    for erasure_id in {row.subject_id for row, outcome in results if row.kind == "erasure"}:
        await complete_erasure_if_confirmed(session, erasure_id)


# mypy checks the bound before it applies the Mapped descriptors (sees Mapped[int], not int)
TABLE: LeasedTable[OutboxMessage] = LeasedTable.of(  # type: ignore[type-var]
    OutboxMessage,
    pending=lambda: OutboxMessage.status == PENDING,
    order_by=(OutboxMessage.next_attempt_at, OutboxMessage.created_at),
    # delivered (or superseded) messages go; an erasure's stay, they are its status
    finished=lambda: (
        OutboxMessage.status.in_((DONE, SUPERSEDED)) & (OutboxMessage.kind != "erasure")
    ),
)


async def complete_erasure_if_confirmed(session: AsyncSession, erasure_id: str) -> None:
    statuses = (
        await session.scalars(
            select(OutboxMessage.status).where(
                OutboxMessage.kind == "erasure", OutboxMessage.subject_id == erasure_id
            )
        )
    ).all()
    erasure = await session.get(Erasure, erasure_id)
    if erasure is not None and erasure.status != DONE and all(s == DONE for s in statuses):
        erasure.status = DONE
        erasure.completed_at = utcnow()


def install_relay(
    app: FastAPI,
    settings: Settings,
    timing: OutboxTiming | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OutboxRelay:
    """app.state.outbox, its loop running while the app's lifespan does."""
    relay = OutboxRelay(lambda: app.state.sessions, settings, timing, transport)
    app.state.outbox = relay
    run_during_lifespan(app, relay)
    return relay
