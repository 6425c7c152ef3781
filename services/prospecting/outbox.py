"""Calls to other services that must happen even if they are down right now.

The use case writes an OutboxMessage in its own transaction (a rep move, an erasure order, an
auto-enrolment); after the commit the relay, running in the prospecting app, POSTs it to the
target service with the API key, and retries with backoff (1 s doubling to 5 min) until the
service answers 2xx. Every target is idempotent, so a repeat after an answer that got lost does
nothing more. An answer 400/422 means the order itself is wrong: retrying cannot help, the row
becomes `failed` with the answer kept (visible in the erasure status, and in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.prospecting.models import Erasure, OutboxMessage
from shared.app import run_during_lifespan
from shared.auth import API_KEY_HEADER
from shared.db import utcnow
from shared.settings import Settings

log = logging.getLogger(__name__)

PENDING, DONE, FAILED, SUPERSEDED = "pending", "done", "failed", "superseded"
TARGETS = ("outreach", "deals", "referrals")
RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class OutboxTiming:
    poll_seconds: float = 1.0
    base_delay: float = 1.0
    max_delay: float = 300.0
    lease_seconds: float = 60.0  # a claimed row is not due for others while it is in flight
    request_timeout: float = 10.0
    batch: int = 50


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
        status=PENDING,
        attempts=0,
        last_error="",
        next_attempt_at=utcnow(),
    )
    session.add(row)
    return row


def service_urls(settings: Settings) -> dict[str, str]:
    return {
        "outreach": settings.outreach_url,
        "deals": settings.deals_url,
        "referrals": settings.referrals_url,
    }


def service_key(settings: Settings) -> str:
    """The key prospecting calls the other services with: an admin (else ops) key."""
    return settings.internal_api_key


class OutboxRelay:
    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        settings: Settings,
        timing: OutboxTiming | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._sessions = sessions
        self.timing = timing or OutboxTiming()
        self._urls = service_urls(settings)
        self._http = httpx.AsyncClient(
            headers={API_KEY_HEADER: service_key(settings)},
            timeout=self.timing.request_timeout,
            transport=transport,
        )
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._http.aclose()

    async def prune(self) -> int:
        """Delivered (or superseded) messages older than RETENTION go; an erasure's stay, they
        are its status."""
        o = OutboxMessage
        async with self._sessions()() as session:
            result = await session.execute(
                delete(o)
                .where(
                    o.status.in_((DONE, SUPERSEDED)),
                    o.kind != "erasure",
                    o.created_at < utcnow() - RETENTION,
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _run(self) -> None:
        last_prune = float("-inf")
        while True:
            now = asyncio.get_running_loop().time()
            if now - last_prune >= 3600:
                last_prune = now
                try:
                    await self.prune()
                except Exception:  # housekeeping only: delivery goes on
                    log.exception("outbox prune failed")
            try:
                handled = await self.run_once()
            except Exception:  # the database is briefly away, say: the next pass retries
                log.exception("outbox relay pass failed")
                handled = 0
            if handled >= self.timing.batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.timing.poll_seconds)
            self._wake.clear()

    async def run_once(self) -> int:
        now = utcnow()
        o = OutboxMessage
        async with self._sessions()() as session:
            due = (
                await session.scalars(
                    select(o.id)
                    .where(o.status == PENDING, o.next_attempt_at <= now)
                    .order_by(o.next_attempt_at, o.created_at)
                    .limit(self.timing.batch)
                )
            ).all()
            claimed: list[str] = []
            for message_id in due:
                result = await session.execute(
                    update(o)
                    .where(o.id == message_id, o.status == PENDING, o.next_attempt_at <= now)
                    .values(next_attempt_at=now + timedelta(seconds=self.timing.lease_seconds))
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    claimed.append(message_id)
            await session.commit()
            rows = (
                (await session.scalars(select(o).where(o.id.in_(claimed)))).all() if claimed else []
            )
            items = [(r.id, r.target, r.path, dict(r.payload), r.attempts) for r in rows]
        results = await asyncio.gather(*(self._post(*item) for item in items))
        await self._record(results)
        return len(items)

    async def _post(
        self, message_id: str, target: str, path: str, payload: dict[str, Any], attempts: int
    ) -> tuple[str, int, str, str]:
        url = self._urls[target].rstrip("/") + path
        try:
            response = await self._http.post(url, json=payload)
        except httpx.HTTPError as err:
            return message_id, attempts, PENDING, f"{target} unreachable: {err!r}"[:1000]
        if response.is_success:
            return message_id, attempts, DONE, ""
        error = f"{target} answered {response.status_code}: {response.text[:500]}"
        if response.status_code in (400, 422):
            return message_id, attempts, FAILED, error
        return message_id, attempts, PENDING, error

    async def _record(self, results: list[tuple[str, int, str, str]]) -> None:
        if not results:
            return
        now = utcnow()
        erasures: set[str] = set()
        async with self._sessions()() as session:
            for message_id, attempts, outcome, error in results:
                row = await session.get(OutboxMessage, message_id)
                if row is None or row.status != PENDING:
                    continue
                row.attempts = attempts + 1
                row.last_error = error
                if outcome == PENDING:
                    delay = min(self.timing.base_delay * 2**attempts, self.timing.max_delay)
                    row.next_attempt_at = now + timedelta(seconds=delay)
                    log.warning(
                        "outbox %s to %s: retry in %.0fs: %s", row.kind, row.target, delay, error
                    )
                    continue
                row.status = outcome
                row.next_attempt_at = None
                if outcome == DONE:
                    row.done_at = now
                    if row.kind == "erasure":
                        row.payload = {}  # the order carried the plain email and phone
                else:
                    log.error("outbox %s to %s refused: %s", row.kind, row.target, error)
                if row.kind == "erasure":
                    erasures.add(row.subject_id)
            await session.flush()
            for erasure_id in erasures:
                await complete_erasure_if_confirmed(session, erasure_id)
            await session.commit()


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
