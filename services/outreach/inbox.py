"""Durable ingestion: provider events are stored first, then told to the journey, retried.

A webhook handler stores the event (unique on the provider's id) and, in the same transaction,
the journey signal it causes: the inbox row is the outbox. After the commit the handler tries
to deliver at once; whatever could not be delivered (Temporal unreachable, a crash right after
the commit) stays `pending` and the relay (shared.relay) running in the outreach app retries
it with backoff until Temporal has it. So an event acknowledged to a provider is never lost.

Never twice either: each signal carries a request id derived from the provider's event id, and
Temporal drops a signal whose request id the workflow has already seen, so a retry after an
ambiguous failure (the signal arrived, the row was not yet marked) has no second effect.

delivery: none (nothing to tell) | pending -> delivered | no_journey (no such running journey:
not retried) | failed (Temporal refused the request itself: retrying cannot help).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import ColumnElement, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.converter import WorkflowSerializationContext
from temporalio.service import RPCError, RPCStatusCode

from services.outreach import models
from services.outreach.consent.erasure import without_erased_addresses
from services.outreach.events import service as events
from services.outreach.person_events import SAID
from shared.app import run_during_lifespan
from shared.contracts.journey import journey_id
from shared.contracts.names import Sig
from shared.ids import IdFilter, fitted_key
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
from shared.requests import without_nul

log = logging.getLogger(__name__)

NONE, PENDING, DELIVERED, NO_JOURNEY, FAILED = (
    "none",
    "pending",
    "delivered",
    "no_journey",
    "failed",
)
# the outcome of an event that tells no journey anything (a delivery status, say)
RECORDED = "recorded"
# Signed-request tokens older than this are refused as stale anyway (Mailgun: at most 12 hours,
# shared.settings mailgun_max_age_seconds).
TOKEN_RETENTION = timedelta(days=1)
# what a rejected item keeps of its raw text: enough for a human to see what went wrong; the
# rest of a huge payload (or of an unreadable mail's first MiB) is only weight in the table
REJECTED_RAW_BYTES = 64 * 1024
BULK_ROWS = 1000  # rows per INSERT when many signals are stored at once


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
    timeout: float | None = None  # the webhook's own attempt is shorter: the provider waits


@dataclass(frozen=True)
class Stored:
    id: int
    outbound: Outbound | None  # the signal to deliver once the transaction is committed


@dataclass(frozen=True)
class InboxTiming(RelayTiming):
    base_delay: float = 0.5
    max_delay: float = 60.0
    # A row being delivered (inline or by the relay) is not picked by another one for this long.
    lease: float = 15.0
    signal_timeout: float = 5.0
    inline_timeout: float = 3.0  # the webhook's own attempt: the provider is waiting on it
    checkpoint_seconds: float = 5.0
    # signals a request stores for many journeys (a do-not-contact entry, a cadence's pause)
    # and tells itself while its caller waits; the relay tells the rest
    inline_items: int = 50


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
    prospect_id: IdFilter = None,
    signal: JourneySignal | None = None,
    bulk: bool = False,
) -> Stored | None:
    """Store a provider event once. None: seen before (its effects happened the first time).

    With a signal for a known prospect, `outbound` is what to deliver after the commit.
    `bulk`: one of many rows a single act stores (the relay tells the others first).
    """
    values = _event_values(provider, event_id, kind, payload, prospect_id, signal, utcnow())
    values["bulk"] = bulk
    stmt = (
        _insert(session, models.InboxEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(models.InboxEvent.id)
    )
    row_id = (await session.execute(stmt)).scalar_one_or_none()
    if row_id is None:
        return None
    if signal is not None and signal.name == Sig.REPLY_RECEIVED and values["prospect_id"]:
        channel = str(getattr(signal.payload, "channel", ""))
        await events.reply_received(
            session, provider, values["event_id"], values["prospect_id"], channel
        )
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


async def store_for_relay(
    session: AsyncSession,
    provider: str,
    events_and_signals: Sequence[tuple[str, JourneySignal]],
    kind: str,
    payload: dict[str, Any],
) -> None:
    """Store many signals (each its own event id) due for the relay at once: a few statements
    of many rows each, not one round trip per row. Event ids seen before are left as they are.
    The rows are bulk: the relay tells a webhook's signal before them."""
    now = utcnow()
    stmt = _insert(session, models.InboxEvent).on_conflict_do_nothing(
        index_elements=["provider", "event_id"]
    )
    # built one INSERT's rows at a time: a large payload (a cadence version for each of
    # thousands of journeys) is never held for every row at once
    for start in range(0, len(events_and_signals), BULK_ROWS):
        rows = [
            {
                **_event_values(provider, event_id, kind, payload, None, signal, now),
                "next_attempt_at": now,
                "bulk": True,
            }
            for event_id, signal in events_and_signals[start : start + BULK_ROWS]
        ]
        await session.execute(stmt, rows)


def _event_values(
    provider: str,
    event_id: str,
    kind: str,
    payload: dict[str, Any],
    prospect_id: str | None,
    signal: JourneySignal | None,
    now: datetime,
) -> dict[str, Any]:
    """An inbox row's columns: with a signal for a known prospect, pending and leased to the
    storing request's own attempt (the relay takes over if that one fails)."""
    values: dict[str, Any] = {
        "provider": provider,
        "event_id": fitted_key(event_id, 200),
        "kind": kind,
        "payload": payload,
        "prospect_id": prospect_id,
        "created_at": now,
        "processed_at": now,
        "delivery": NONE,
        "attempts": 0,
        "last_error": "",
        "outcome": RECORDED,  # nothing to tell a journey (a delivery status, say)
        "outcome_detail": kind,
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
            values["outcome"] = "unknown_sender"
            values["outcome_detail"] = f"{kind}: no prospect matches this event"
        else:
            values["prospect_id"] = target
            values["workflow_id"] = journey_id(target)
            values["delivery"] = PENDING
            values["outcome"], values["outcome_detail"] = "", ""
            # leased to this request's own attempt; the relay takes over if that one fails
            values["next_attempt_at"] = now + timedelta(seconds=InboxTiming.lease)
    return values


async def reject(session: AsyncSession, provider: str, raw: str, reason: str, pepper: str) -> None:
    """Keep an authenticated item nobody could understand, with the reason, for a human (a NUL
    in it, which PostgreSQL text cannot hold, replaced; an erased person's address redacted); of
    a long one only its start, the reason saying how long it was."""
    raw = await without_erased_addresses(session, pepper, without_nul(raw))
    reason = await without_erased_addresses(session, pepper, without_nul(reason[:2000]))
    encoded = raw.encode()
    if len(encoded) > REJECTED_RAW_BYTES:
        raw = encoded[:REJECTED_RAW_BYTES].decode("utf-8", "ignore")
        reason = f"{reason[:1900]} (cut: the first {REJECTED_RAW_BYTES} of {len(encoded)} bytes)"
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
        # the journey's context: an encrypting codec picks the prospect's key (shreddable)
        converter = client.data_converter.with_context(
            WorkflowSerializationContext(namespace=client.namespace, workflow_id=item.workflow_id)
        )
        req.input.payloads.extend(await converter.encode([item.signal_payload]))
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


async def _load(session: AsyncSession, ids: Sequence[Any]) -> list[Outbound]:
    e = models.InboxEvent
    rows = await session.scalars(select(e).where(e.id.in_(ids)).order_by(*ORDER))
    return [_outbound(r) for r in rows.all()]


def _outbound(r: models.InboxEvent) -> Outbound:
    # only an event with a journey to signal is stored pending (store), so both are set
    assert r.workflow_id is not None and r.signal_name is not None
    return Outbound(
        r.id, r.provider, r.event_id, r.workflow_id, r.signal_name, r.signal_payload, r.attempts
    )


# a webhook's rows before bulk rows (false first), each lane in due order: ix_inbox_events_due_lane
ORDER = (models.InboxEvent.bulk, models.InboxEvent.next_attempt_at, models.InboxEvent.id)
# A stored event is what makes a provider's late retry a no-op, so events stay at least as long
# as any provider retries one (Settings.webhook_event_retention_days)
TABLE: LeasedTable[Outbound] = LeasedTable.of(
    models.InboxEvent,
    pending=lambda: models.InboxEvent.delivery == PENDING,
    order_by=ORDER,
    load=_load,
    bulk=models.InboxEvent.bulk,
)


class InboxRelay(Relay[Outbound]):
    """Delivers stored signals: at once for the webhook that stored them, and as a user of the
    one relay (shared.relay) whatever is still pending (started and stopped with the app)."""

    timing: InboxTiming

    def __init__(
        self,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        client: Callable[[], Client],
        timing: InboxTiming | None = None,
        late: Callable[[Outbound], Awaitable[dict[str, Any]]] | None = None,
        keep_rejected: timedelta | None = None,
        keep_reports: timedelta | None = None,
    ) -> None:
        """keep_rejected: how long rejected items are kept; keep_reports: events that are
        only reports (`reports`; None: each for ever)."""
        r, t, e = models.RejectedItem, models.WebhookToken, models.InboxEvent
        pruned = [Retained(t.id, t.created_at, TOKEN_RETENTION)]
        pruned += [Retained(r.id, r.created_at, keep_rejected)] if keep_rejected else []
        pruned += [Retained(e.id, e.created_at, keep_reports, reports)] if keep_reports else []
        super().__init__(
            "inbox relay",
            sessions,
            TABLE,
            self._signal,
            timing or InboxTiming(),
            before_pass=self.maintain,
            also_prune=pruned,
        )
        self._client = client
        # what an event becomes when its journey is not running (services.outreach.late_replies)
        self.late = late
        # by signal name: what follows a delivery, in its attempt (a failure retries the whole
        # attempt: the signal again, which Temporal drops by its request id, then this again)
        self.after_delivery: dict[str, Callable[[Outbound], Awaitable[None]]] = {}
        self._last_checkpoint = float("-inf")

    # the webhook's own attempt, right after its commit (the row is leased to it)
    async def deliver_now(self, items: Sequence[Outbound]) -> None:
        if items:
            await self.handle([replace(i, timeout=self.timing.inline_timeout) for i in items])

    async def _signal(self, item: Outbound) -> Outcome:
        try:
            await send_signal(self._client(), item, item.timeout or self.timing.signal_timeout)
        except Exception as err:
            outcome, error = _classify(err), f"{type(err).__name__}: {err}"
            if outcome == PENDING:
                return retry(f"{item.signal_name} to {item.workflow_id}: {error}")
            if outcome == NO_JOURNEY:
                # never a silent end: a late reply becomes a task (and maybe a new run)
                after = (
                    await self.late(item)
                    if self.late is not None
                    else {"outcome": "journey_ended", "outcome_detail": error}
                )
                return done(error, delivery=outcome, **after)
            return give_up(error, delivery=outcome, outcome="failed", outcome_detail=error)
        follow = self.after_delivery.get(item.signal_name)
        if follow is not None:
            try:
                await follow(item)
            except Exception as err:
                told = f"{item.signal_name} to {item.workflow_id} told, not followed"
                return retry(f"{told}: {type(err).__name__}: {err}")
        return done(delivery=DELIVERED, delivered_at=utcnow(), outcome="delivered")

    async def maintain(self, *, force: bool = False) -> None:
        """On SQLite the write-ahead log is checkpointed here, on its own clock, off the event
        loop (the status-callback writer's connection never checkpoints: that syncs to disk).
        Expired webhook tokens go with the relay's prune (`also_prune`)."""
        now = asyncio.get_running_loop().time()
        if not force and now - self._last_checkpoint < self.timing.checkpoint_seconds:
            return
        self._last_checkpoint = now
        async with self._sessions()() as session:
            if session.get_bind().dialect.name == "sqlite":
                await session.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))


def reports() -> ColumnElement[bool]:
    """The events the retention deletes once old: a provider's report on a send (delivered,
    opened, a text's status callbacks: the ledger row keeps their outcome) and what nobody
    could be matched to. Kept: what the prospect's timeline shows, every event that told a
    prospect's journey something (a reply, a task's outcome), and what is still to tell."""
    e = models.InboxEvent
    return (
        (e.delivery != PENDING)
        & e.kind.not_in(list(SAID))
        & (e.signal_name.is_(None) | e.prospect_id.is_(None))
    )


def install_relay(app: FastAPI, timing: InboxTiming | None = None) -> InboxRelay:
    """app.state.inbox, its loop running while the app's lifespan does (inside it: the engine
    and the Temporal client exist when it starts and still exist when it stops)."""
    settings = app.state.settings
    relay = InboxRelay(
        lambda: app.state.sessions,
        lambda: app.state.temporal,
        timing,
        keep_rejected=timedelta(days=settings.rejected_item_retention_days),
        keep_reports=timedelta(days=settings.webhook_event_retention_days),
    )
    app.state.inbox = relay
    run_during_lifespan(app, relay)
    return relay
