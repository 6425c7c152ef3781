"""Durable ingestion: provider events are stored first, then told to the journey, retried.

A webhook handler stores the event (unique on the provider's id) and, in the same transaction,
the journey signal it causes: the inbox row is the outbox. After the commit the handler tries
to deliver at once; whatever could not be delivered (Temporal unreachable, a crash right after
the commit) stays `pending` and the relay loop running in the outreach app retries it with
backoff until Temporal has it. So an event acknowledged to a provider is never lost.

Never twice either: each signal carries a request id derived from the provider's event id, and
Temporal drops a signal whose request id the workflow has already seen, so a retry after an
ambiguous failure (the signal arrived, the row was not yet marked) has no second effect.

delivery: none (nothing to tell) | pending -> delivered | no_journey (no such running journey:
not retried) | failed (Temporal refused the request itself: retrying cannot help).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from services.outreach import models
from shared.app import run_during_lifespan
from shared.contracts.journey import journey_id

log = logging.getLogger(__name__)

NONE, PENDING, DELIVERED, NO_JOURNEY, FAILED = (
    "none",
    "pending",
    "delivered",
    "no_journey",
    "failed",
)
# Signed-request tokens older than this are refused as stale anyway (Mailgun: 15 minutes).
TOKEN_RETENTION = timedelta(days=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JourneySignal:
    """What an event tells a prospect's journey: a signal name and its contract dataclass."""

    prospect_id: str | None
    name: str
    payload: Any = None


@dataclass(frozen=True)
class Outbound:
    """A stored signal waiting to be delivered (what a delivery attempt needs of the row)."""

    id: int
    provider: str
    event_id: str
    workflow_id: str
    signal_name: str
    signal_payload: dict[str, Any] | None
    attempts: int


@dataclass(frozen=True)
class Stored:
    id: int
    outbound: Outbound | None  # the signal to deliver once the transaction is committed


@dataclass
class RelayTiming:
    poll_seconds: float = 1.0
    base_delay: float = 0.5  # first retry; doubles per attempt up to max_delay
    max_delay: float = 60.0
    # A row being delivered (inline or by a loop) is not picked by another loop for this long.
    lease: float = 15.0
    signal_timeout: float = 5.0
    inline_timeout: float = 3.0  # the webhook's own attempt: the provider is waiting on it
    batch: int = 100
    concurrency: int = 10
    checkpoint_seconds: float = 5.0


# --- storing --------------------------------------------------------------------------------


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def store_event(
    session: AsyncSession,
    provider: str,
    event_id: str,
    kind: str,
    payload: dict[str, Any],
    *,
    prospect_id: str | None = None,
    signal: JourneySignal | None = None,
) -> Stored | None:
    """Store a provider event once. None: seen before (its effects happened the first time).

    With a signal for a known prospect, `outbound` is what to deliver after the commit.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "provider": provider,
        "event_id": event_id[:200],
        "kind": kind,
        "payload": payload,
        "prospect_id": prospect_id,
        "created_at": now,
        "processed_at": now,
        "delivery": NONE,
        "attempts": 0,
        "last_error": "",
    }
    if signal is not None:
        target = signal.prospect_id or prospect_id
        values["signal_name"] = signal.name
        values["signal_payload"] = (
            dataclasses.asdict(signal.payload) if signal.payload is not None else None
        )
        if target is None:
            values["delivery"] = NO_JOURNEY
            values["last_error"] = "no prospect matches this event"
        else:
            values["prospect_id"] = target
            values["workflow_id"] = journey_id(target)
            values["delivery"] = PENDING
            # leased to this request's own attempt; the relay takes over if that one fails
            values["next_attempt_at"] = now + timedelta(seconds=RelayTiming.lease)
    stmt = (
        _insert(session, models.InboxEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(models.InboxEvent.id)
    )
    row_id = (await session.execute(stmt)).scalar_one_or_none()
    if row_id is None:
        return None
    if signal is None or values["delivery"] != PENDING:
        return Stored(row_id, None)
    outbound = Outbound(
        row_id,
        provider,
        values["event_id"],
        values["workflow_id"],
        signal.name,
        values["signal_payload"],
        0,
    )
    return Stored(row_id, outbound)


async def reject(session: AsyncSession, provider: str, raw: str, reason: str) -> None:
    """Keep an authenticated item nobody could understand, with the reason, for a human."""
    session.add(models.RejectedItem(provider=provider, raw=raw, reason=reason[:2000]))
    await session.flush()


async def claim_token(session: AsyncSession, provider: str, token: str, body_sha256: str) -> str:
    """'new' the first time; 'same' when the token comes back with the same body (a retry);
    'other' when it comes back with another body (a replay of a captured signature)."""
    stmt = (
        _insert(session, models.WebhookToken)
        .values(provider=provider, token=token[:200], body_sha256=body_sha256, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["provider", "token"])
        .returning(models.WebhookToken.id)
    )
    if (await session.execute(stmt)).scalar_one_or_none() is not None:
        return "new"
    seen = await session.scalar(
        select(models.WebhookToken.body_sha256).where(
            models.WebhookToken.provider == provider, models.WebhookToken.token == token[:200]
        )
    )
    return "same" if seen == body_sha256 else "other"


# --- delivering -----------------------------------------------------------------------------


def request_id(provider: str, event_id: str) -> str:
    """Stable per provider event: Temporal drops a second signal carrying the same one."""
    return "closeflow-inbox-" + hashlib.sha256(f"{provider}\0{event_id}".encode()).hexdigest()[:32]


async def send_signal(client: Client, item: Outbound, timeout: float) -> None:
    req = SignalWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=item.workflow_id),
        signal_name=item.signal_name,
        identity=client.identity,
        request_id=request_id(item.provider, item.event_id),
    )
    if item.signal_payload is not None:
        req.input.payloads.extend(await client.data_converter.encode([item.signal_payload]))
    # no client-side retries: the relay's backoff is the retry, and the provider is waiting
    await client.workflow_service.signal_workflow_execution(
        req, retry=False, timeout=timedelta(seconds=timeout)
    )


def _classify(err: BaseException) -> str:
    if isinstance(err, RPCError):
        if err.status == RPCStatusCode.NOT_FOUND and "namespace" not in err.message.lower():
            return NO_JOURNEY  # never started, or already finished: nothing left to tell
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            return FAILED
    return PENDING  # unreachable, timed out, overloaded, not connected yet: try again later


class InboxRelay:
    """Delivers stored signals: at once for the webhook that stored them, and in a loop for
    whatever is still pending (started and stopped with the outreach app)."""

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        client: Callable[[], Client],
        timing: RelayTiming | None = None,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self.timing = timing or RelayTiming()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_prune = self._last_checkpoint = float("-inf")
        self._last_failure = ""

    # the webhook's own attempt, right after its commit
    async def deliver_now(self, items: Sequence[Outbound]) -> None:
        if items:
            await self._deliver(items, self.timing.inline_timeout)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                handled = await self.run_once()
                await self.maintain()
            except Exception as err:  # the database is briefly away, say: the next pass retries
                # once per distinct failure, not every pass (the statement's time varies)
                failure = f"{type(err).__name__}: {getattr(err, 'orig', err)}"
                if failure != self._last_failure:
                    log.exception("inbox relay pass failed")
                self._last_failure = failure
                handled = 0
            else:
                self._last_failure = ""
            if handled >= self.timing.batch:
                continue  # more are due: no pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.timing.poll_seconds)
            self._wake.clear()

    async def run_once(self) -> int:
        """Claim the due pending rows (a lease, so other replicas skip them), deliver them."""
        items = await self.claim(await self.due())
        await self._deliver(items, self.timing.signal_timeout)
        return len(items)

    @staticmethod
    def _is_due(now: datetime) -> Any:
        e = models.InboxEvent
        return (e.delivery == PENDING) & (e.next_attempt_at <= now)

    async def due(self) -> list[int]:
        e = models.InboxEvent
        async with self._sessions()() as session:
            query = (
                select(e.id)
                .where(self._is_due(utcnow()))
                .order_by(e.next_attempt_at, e.id)
                .limit(self.timing.batch)
            )
            return list((await session.scalars(query)).all())

    async def claim(self, ids: Sequence[int]) -> list[Outbound]:
        """Take the rows that are still due: a relay that saw them due a moment ago while
        another took them gets nothing (the condition is checked again under the row lock)."""
        if not ids:
            return []
        now = utcnow()
        e = models.InboxEvent
        async with self._sessions()() as session:
            claimed = (
                await session.execute(
                    update(e)
                    .where(e.id.in_(ids), self._is_due(now))
                    .values(next_attempt_at=now + timedelta(seconds=self.timing.lease))
                    .returning(
                        e.id,
                        e.provider,
                        e.event_id,
                        e.workflow_id,
                        e.signal_name,
                        e.signal_payload,
                        e.attempts,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            await session.commit()
        return [Outbound(*row) for row in claimed]

    async def _deliver(self, items: Sequence[Outbound], timeout: float) -> None:
        client = self._client()
        limit = asyncio.Semaphore(self.timing.concurrency)

        async def one(item: Outbound) -> tuple[Outbound, str, str]:
            async with limit:
                try:
                    await send_signal(client, item, timeout)
                except Exception as err:
                    return item, _classify(err), f"{type(err).__name__}: {err}"[:1000]
                return item, DELIVERED, ""

        results = await asyncio.gather(*(one(i) for i in items))
        await self._record(results)

    async def _record(self, results: Sequence[tuple[Outbound, str, str]]) -> None:
        now = utcnow()
        e = models.InboxEvent
        async with self._sessions()() as session:
            for item, outcome, error in results:
                attempts = item.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_error": error}
                if outcome == PENDING:
                    delay = min(self.timing.base_delay * 2 ** (attempts - 1), self.timing.max_delay)
                    values["next_attempt_at"] = now + timedelta(seconds=delay)
                    log.warning(
                        "inbox event %s (%s) not delivered to %s, attempt %d, retry in %.1fs: %s",
                        item.id,
                        item.signal_name,
                        item.workflow_id,
                        attempts,
                        delay,
                        error,
                    )
                else:
                    values.update(delivery=outcome, next_attempt_at=None)
                    if outcome == DELIVERED:
                        values["delivered_at"] = now
                    elif outcome == FAILED:
                        log.error("inbox event %s refused by Temporal: %s", item.id, error)
                await session.execute(
                    update(e)
                    .where(e.id == item.id, e.delivery == PENDING)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            await session.commit()

    async def maintain(self, *, force: bool = False) -> None:
        """Housekeeping, on its own clock: expired webhook tokens go, and on SQLite the
        write-ahead log is checkpointed here, off the event loop (the status-callback writer's
        connection never checkpoints: that syncs to disk)."""
        now = asyncio.get_running_loop().time()
        async with self._sessions()() as session:
            if session.get_bind().dialect.name == "sqlite" and (
                force or now - self._last_checkpoint >= self.timing.checkpoint_seconds
            ):
                self._last_checkpoint = now
                await session.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
            if force or now - self._last_prune >= 3600:
                self._last_prune = now
                await session.execute(
                    delete(models.WebhookToken).where(
                        models.WebhookToken.created_at < utcnow() - TOKEN_RETENTION
                    )
                )
                await session.commit()


def install_relay(app: FastAPI, timing: RelayTiming | None = None) -> InboxRelay:
    """app.state.inbox, its loop running while the app's lifespan does (inside it: the engine
    and the Temporal client exist when it starts and still exist when it stops)."""
    relay = InboxRelay(lambda: app.state.sessions, lambda: app.state.temporal, timing)
    app.state.inbox = relay
    run_during_lifespan(app, relay)
    return relay
