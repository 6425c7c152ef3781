"""The one durable relay: rows written in a use case's transaction, handled after its commit,
retried until they are done.

A user supplies its table (a `LeasedTable`: which rows are due, how a claimed row becomes an
item) and a handler (what to do with one item, and what came of it: an `Outcome`). The relay
does the rest, the same way for every table:

- Claim: due rows are leased by moving their `next_attempt_at` forward by `timing.lease`, in one
  transaction (on PostgreSQL the candidates are read `FOR UPDATE SKIP LOCKED`, so replicas never
  wait on each other; on SQLite the UPDATE re-checks that the row is still due, so of two
  replicas that saw the same row due only one takes it). A process that dies with rows claimed
  leaves them due again when the lease runs out: no row is lost, none is handled by two
  replicas at once.
- Lanes: a table may mark rows as bulk (`LeasedTable.bulk`: a boolean column), e.g. the one row
  per journey of a cadence's pause. A claim takes the other rows first (a prospect's reply is
  never held behind ten thousand of them), yet keeps `timing.bulk_share` of its batch for the
  bulk rows while any are due (they still drain during a storm of the others). A table whose
  `order_by` puts the bulk column first (false before true) has a batch's others handled first
  too. Each lane is read through the table's due index, which leads with (the pending column,
  the bulk column) and goes on in `order_by`'s order.
- Backoff: after a failed attempt n (1, 2, ...) the row is due again after
  `min(max_delay, base_delay * 2**(n-1))`, shortened by up to `jitter` (a fraction) so that rows
  that failed together (the target was down) do not all come back in the same instant.
- Record: the outcome is written where the row is still pending (a row changed meanwhile, e.g.
  superseded, keeps its new state), `concurrency` items at a time, so at most that many rows are
  handled but not yet recorded when a process dies.
- Prune: rows the table calls finished and older than `timing.retention` are deleted, hourly,
  `timing.prune_batch` at a time (one short transaction each; a pass prunes one batch per
  table after its work and the next pass follows at once while a batch came back full, so a
  backlog of months never holds up the work). Rows of other tables that grow beside the relay's (`Retained`: the events
  its rows deliver, say) are pruned the same way.
- Lifespan: `start()` runs the loop, `stop()` lets the in-flight items finish and be recorded
  (up to `timing.stop_grace` seconds), hands the claimed rows it had not started back (due at
  once, for another replica), then returns.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, delete, false, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from shared.loops import RepeatingPass

log = logging.getLogger(__name__)
# a generator of the relay's own: a draw from the random module's shared one moves its state
# under whatever else in the process seeds it for repeatable runs (the fuzz tests run the
# services' relays in Hypothesis's process, which warns when that state moves during a draw)
_jitter = random.Random()


def utcnow() -> datetime:
    return datetime.now(UTC)


# a lease outlasts the longest attempt it covers by this much (clocks, the record's own time)
LEASE_MARGIN = 5.0


@dataclass(frozen=True)
class RelayTiming:
    """How a relay paces itself. Users subclass it for their own defaults and extra fields."""

    poll_seconds: float = 1.0  # how often the loop looks for due rows when nobody wakes it
    base_delay: float = 1.0  # the delay after the first failed attempt; doubles per attempt
    max_delay: float = 300.0  # the cap of the delay
    jitter: float = 0.2  # up to this fraction is taken off a delay, at random
    lease: float = 60.0  # a claimed row is not due for anyone else for this long
    batch: int = 100  # rows claimed per pass; a full batch means more are due: no pause
    bulk_share: float = 0.2  # of a batch kept for a table's bulk rows while others are due
    concurrency: int = 10  # items handled at once
    retention: timedelta | None = None  # finished rows older than this are pruned
    prune_seconds: float = 3600.0
    prune_batch: int = 1000  # rows deleted per transaction
    stop_grace: float = 30.0  # how long stop() waits for the items in flight

    def backoff(self, attempts: int) -> float:
        """Seconds until the next attempt, after `attempts` failed ones (1 or more)."""
        delay: float = min(self.max_delay, self.base_delay * 2 ** max(attempts - 1, 0))
        return delay * (1 - self.jitter * _jitter.random())


class Item(Protocol):
    """What the relay needs of a claimed row: its key and how often it was tried."""

    @property
    def id(self) -> Any: ...

    @property
    def attempts(self) -> int: ...


ItemT = TypeVar("ItemT", bound=Item)


@dataclass(frozen=True)
class Outcome:
    """What handling one item came to. Make one with `done`, `retry` or `give_up`."""

    values: Mapping[str, Any]  # the columns a finished row gets (status, done_at, ...)
    error: str = ""  # kept in the row's last error column
    retry: bool = False
    gave_up: bool = False  # logged as an error: someone should look


def done(note: str = "", **values: Any) -> Outcome:
    """Finished: the row gets these values (and `note` as its last error, e.g. why nothing
    was left to do)."""
    return Outcome(values, note[:2000])


def retry(error: str, **values: Any) -> Outcome:
    """The error may pass (the target is down, say): try again after the backoff (the row gets
    `values` meanwhile, e.g. the answer's status)."""
    return Outcome(values, error[:2000], retry=True)


def give_up(error: str, **values: Any) -> Outcome:
    """Retrying cannot help: the row is finished with these values, the error kept."""
    return Outcome(values, error[:2000], gave_up=True)


@dataclass(frozen=True)
class LeasedTable(Generic[ItemT]):
    """A table of work: its columns for the lease, the attempts and the last error, which rows
    are still to do, and how claimed rows are read as items."""

    id: InstrumentedAttribute[Any]
    next_attempt_at: InstrumentedAttribute[Any]  # when the row is due: backoff and lease
    attempts: InstrumentedAttribute[Any]
    last_error: InstrumentedAttribute[Any]
    pending: Callable[[], ColumnElement[bool]]  # not finished (due or not)
    load: Callable[[AsyncSession, Sequence[Any]], Awaitable[Sequence[ItemT]]]
    finished: Callable[[], ColumnElement[bool]] | None = None  # what prune may delete...
    created_at: InstrumentedAttribute[Any] | None = None  # ...once older than the retention
    order_by: Sequence[Any] = field(default_factory=tuple)
    # counted at each claim, given back with a hand-back: a handler told by it that an earlier
    # claim ended unrecorded (a crash) can ask whether that attempt's effect happened
    claims: InstrumentedAttribute[Any] | None = None
    # when a row became due, for the backlog gauges (shared/metrics.py): its creation, unless
    # the table holds rows scheduled for later (a follow-up due weeks after it is written)
    due_since: InstrumentedAttribute[Any] | None = None
    # a boolean column: true for rows claimed after the others (see the module's Lanes); the
    # due index leads with (pending's column, this one) so that each lane is a range of it
    bulk: InstrumentedAttribute[Any] | None = None

    @classmethod
    def of(
        cls,
        model: Any,
        *,
        pending: Callable[[], ColumnElement[bool]],
        order_by: Sequence[Any],
        load: Callable[[AsyncSession, Sequence[Any]], Awaitable[Sequence[ItemT]]] | None = None,
        finished: Callable[[], ColumnElement[bool]] | None = None,
        count_claims: bool = False,
        due_since: InstrumentedAttribute[Any] | None = None,
        bulk: InstrumentedAttribute[Any] | None = None,
    ) -> LeasedTable[ItemT]:
        """A table with the usual column names (id, next_attempt_at, attempts, last_error,
        created_at, and claims when `count_claims`); its items are its ORM rows unless `load`
        says otherwise."""

        async def rows(session: AsyncSession, ids: Sequence[Any]) -> Sequence[ItemT]:
            query = select(model).where(model.id.in_(ids)).order_by(*order_by)
            return (await session.scalars(query)).all()

        return cls(
            id=model.id,
            next_attempt_at=model.next_attempt_at,
            attempts=model.attempts,
            last_error=model.last_error,
            pending=pending,
            load=load or rows,
            finished=finished,
            created_at=model.created_at,
            order_by=order_by,
            claims=model.claims if count_claims else None,
            due_since=due_since,
            bulk=bulk,
        )

    def due(self, now: datetime) -> ColumnElement[bool]:
        return self.pending() & (self.next_attempt_at <= now)

    @property
    def model(self) -> Any:
        return self.id.class_


@dataclass(frozen=True)
class Retained:
    """Rows of another table that the relay's loop prunes beside its own: those created more
    than `retention` ago that `finished` allows (all of them when None)."""

    id: InstrumentedAttribute[Any]
    created_at: InstrumentedAttribute[Any]
    retention: timedelta
    finished: Callable[[], ColumnElement[bool]] | None = None

    def old(self) -> ColumnElement[bool]:
        old = self.created_at < utcnow() - self.retention
        return old if self.finished is None else old & self.finished()

    def candidates(self, limit: int) -> Select[tuple[Any]]:
        """The ids of one batch to prune (each table has an index on `created_at` for it)."""
        return select(self.id).where(self.old()).limit(limit)


class Relay(RepeatingPass, Generic[ItemT]):
    """Claims due rows of `table`, hands each to `handle`, records the outcome, retries."""

    cut_short = "items still in flight abandoned to their lease"

    def __init__(
        self,
        name: str,
        sessions: Callable[[], async_sessionmaker[AsyncSession]],
        table: LeasedTable[ItemT],
        handle: Callable[[ItemT], Awaitable[Outcome]],
        timing: RelayTiming,
        *,
        before_pass: Callable[[], Awaitable[object]] | None = None,
        on_recorded: Callable[[AsyncSession, Sequence[tuple[ItemT, Outcome]]], Awaitable[None]]
        | None = None,
        also_prune: Sequence[Retained] = (),
        longest_attempt: float = 0.0,
    ) -> None:
        """before_pass: more work of the same loop, run first on every pass (a sweep that
        queues rows, say). on_recorded: runs in the transaction that records outcomes.
        also_prune: other tables' rows pruned with the relay's own, in this order.
        longest_attempt: the longest one item's handling may take (its provider's timeouts):
        a lease never ends before it, whatever the timing says (another replica would claim
        the row while it is still being handled, and handle it twice)."""
        super().__init__(name)
        self._sessions = sessions
        self.table = table
        self._handle = handle
        self.timing = timing  # read on every pass: tests swap in faster timings
        self._before_pass = before_pass
        self._on_recorded = on_recorded
        self._also_prune = tuple(also_prune)
        self._last_prune = float("-inf")
        self.passes = 0  # passes completed (tests wait for a few more to see nothing new)
        self._leases: dict[Any, datetime] = {}  # a claimed row's id -> the lease it holds
        self._longest_attempt = longest_attempt

    # --- the loop (shared.loops) -----------------------------------------------------------

    def pause_seconds(self) -> float:
        return self.timing.poll_seconds

    def lease_seconds(self) -> float:
        """How long a claim (or a renewal) keeps a row from every other replica."""
        if not self._longest_attempt:
            return self.timing.lease
        return max(self.timing.lease, self._longest_attempt + LEASE_MARGIN)

    def stop_grace(self) -> float:
        return self.timing.stop_grace

    async def one_pass(self) -> bool:
        handled = 0
        try:
            handled = await self.run_once()
        finally:
            # after the work, not before: pruning never delays the first pass's claim
            more_to_prune = await self._prune_when_due()
        return handled >= self.timing.batch or more_to_prune  # more are due: no pause

    async def _prune_when_due(self) -> bool:
        """One batch per table, hourly; True while a batch came back full."""
        now = asyncio.get_running_loop().time()
        if not self.retained() or now - self._last_prune < self.timing.prune_seconds:
            return False
        self._last_prune = now
        more = await self._prune_quietly()
        if more:
            self._last_prune = float("-inf")  # the next batch on the next pass
        return more

    async def _prune_quietly(self) -> bool:
        try:
            return await self.prune_once()
        except Exception:  # housekeeping only: the work goes on
            log.exception("%s prune failed", self.name)
            return False

    # --- one pass ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One pass: the extra work, then claim the due rows and handle them. Returns how many
        rows were claimed."""
        if self._before_pass is not None:
            await self._before_pass()
        items = await self.take()
        await self.handle(items)
        self.passes += 1
        return len(items)

    async def take(self) -> list[ItemT]:
        """Claim up to a batch of due rows, in one transaction."""
        now = utcnow()
        async with self._sessions()() as session:
            locking = session.get_bind().dialect.name == "postgresql"

            async def due(lane: ColumnElement[bool] | None, limit: int) -> Sequence[Any]:
                query = self._due_query(now, lane, limit)
                if locking:
                    query = query.with_for_update(skip_locked=True)
                return (await session.scalars(query)).all()

            bulk, batch = self.table.bulk, self.timing.batch
            if bulk is None:
                ids = await due(None, batch)
            else:
                first = await due(bulk == false(), batch)
                # at least one row a batch, the others at least one too (a batch of 1 has no
                # room to share: its bulk rows wait for a pass with none of the others due)
                reserved = min(max(1, int(batch * self.timing.bulk_share)), batch - 1)
                rest = await due(bulk == true(), batch - min(len(first), batch - reserved))
                # the others' rows beyond the batch stay unclaimed (locked until the commit)
                ids = [*first[: batch - len(rest)], *rest]
            items = await self._claim_in(session, ids, now)
            await session.commit()
        return items

    async def due(self) -> list[Any]:
        """The ids of the rows due now (no claim: see `claim`)."""
        async with self._sessions()() as session:
            return list((await session.scalars(self._due_query(utcnow()))).all())

    async def claim(self, ids: Sequence[Any]) -> list[ItemT]:
        """Take the rows that are still due: a relay that saw them due a moment ago while
        another took them gets nothing (the condition is checked again under the row lock)."""
        async with self._sessions()() as session:
            items = await self._claim_in(session, ids, utcnow())
            await session.commit()
        return items

    def _due_query(
        self, now: datetime, lane: ColumnElement[bool] | None = None, limit: int | None = None
    ) -> Any:
        t = self.table
        where = t.due(now) if lane is None else t.due(now) & lane
        return (
            select(t.id)
            .where(where)
            .order_by(*t.order_by)
            .limit(self.timing.batch if limit is None else limit)
        )

    async def _claim_in(
        self, session: AsyncSession, ids: Sequence[Any], now: datetime
    ) -> list[ItemT]:
        if not ids:
            return []
        t = self.table
        lease = now + timedelta(seconds=self.lease_seconds())
        values: dict[Any, Any] = {t.next_attempt_at: lease}
        if t.claims is not None:
            values[t.claims] = t.claims + 1
        leased = (
            await session.scalars(
                update(t.model)
                .where(t.id.in_(ids), t.due(now))
                .values(values)
                .returning(t.id)
                .execution_options(synchronize_session=False)
            )
        ).all()
        self._leases.update(dict.fromkeys(leased, lease))
        return list(await t.load(session, leased)) if leased else []

    async def handle(self, items: Sequence[ItemT]) -> None:
        """Handle claimed (or, inline, freshly leased) items and record each outcome."""
        size = max(self.timing.concurrency, 1)
        try:
            for start in range(0, len(items), size):
                if self.stopping and start:
                    await self._release(items[start:])  # stopping: the rest go to another replica
                    return
                chunk = items[start : start + size]
                if start:
                    # the chunks before took their time: a lease may be over by now and its row
                    # claimed by another replica, which handles it; the others are kept
                    chunk = await self._keep_leases(chunk)
                outcomes = await asyncio.gather(*(self._attempt(item) for item in chunk))
                await self._record(list(zip(chunk, outcomes, strict=True)))
        finally:
            for item in items:
                self._leases.pop(item.id, None)

    async def _keep_leases(self, chunk: Sequence[ItemT]) -> list[ItemT]:
        """The items whose rows still hold this relay's lease, each renewed for a full lease
        (a row whose lease passed but nobody claimed is still this relay's). Items not claimed
        through this relay (handed in by their caller) are kept as they are."""
        t = self.table
        renewed = utcnow() + timedelta(seconds=self.lease_seconds())
        held: dict[datetime, list[Any]] = {}
        for item in chunk:
            if item.id in self._leases:
                held.setdefault(self._leases[item.id], []).append(item.id)
        kept: set[Any] = set()
        async with self._sessions()() as session:
            for lease, ids in held.items():
                kept.update(
                    (
                        await session.scalars(
                            update(t.model)
                            .where(t.id.in_(ids), t.next_attempt_at == lease, t.pending())
                            .values({t.next_attempt_at: renewed})
                            .returning(t.id)
                            .execution_options(synchronize_session=False)
                        )
                    ).all()
                )
            await session.commit()
        mine = []
        for item in chunk:
            if item.id not in self._leases:
                mine.append(item)
            elif item.id in kept:
                self._leases[item.id] = renewed
                mine.append(item)
            else:
                log.warning("%s: %s left to the replica that claimed it", self.name, item.id)
                del self._leases[item.id]
        return mine

    async def _attempt(self, item: ItemT) -> Outcome:
        try:
            return await self._handle(item)
        except Exception as err:  # a handler's own failure is one more failed attempt
            log.exception("%s: handling %s failed", self.name, item.id)
            return retry(f"{type(err).__name__}: {err}")

    async def _record(self, results: Sequence[tuple[ItemT, Outcome]]) -> None:
        now = utcnow()
        t = self.table
        async with self._sessions()() as session:
            for item, outcome in results:
                attempts = item.attempts + 1
                values: dict[Any, Any] = {t.attempts: attempts, t.last_error: outcome.error}
                if outcome.retry:
                    delay = self.timing.backoff(attempts)
                    values[t.next_attempt_at] = now + timedelta(seconds=delay)
                    values.update({getattr(t.model, k): v for k, v in outcome.values.items()})
                    log.warning(
                        "%s: %s attempt %d failed, retry in %.1fs: %s",
                        self.name,
                        item.id,
                        attempts,
                        delay,
                        outcome.error,
                    )
                else:
                    values[t.next_attempt_at] = None
                    values.update({getattr(t.model, k): v for k, v in outcome.values.items()})
                    if outcome.gave_up:
                        log.error("%s: %s gave up: %s", self.name, item.id, outcome.error)
                await session.execute(
                    update(t.model)
                    .where(t.id == item.id, t.pending())
                    .values(values)
                    .execution_options(synchronize_session=False)
                )
            if self._on_recorded is not None:
                await self._on_recorded(session, results)
            await session.commit()

    async def _release(self, items: Sequence[ItemT]) -> None:
        t = self.table
        values: dict[Any, Any] = {t.next_attempt_at: utcnow()}
        if t.claims is not None:
            values[t.claims] = t.claims - 1  # never started: not a claim that ended unrecorded
        async with self._sessions()() as session:
            await session.execute(
                update(t.model)
                .where(t.id.in_([i.id for i in items]), t.pending())
                .values(values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    # --- housekeeping -----------------------------------------------------------------------

    def retained(self) -> list[Retained]:
        """What the prune deletes: the table's own finished rows, then `also_prune`'s."""
        t = self.table
        own = []
        if t.finished is not None and t.created_at is not None and self.timing.retention:
            own = [Retained(t.id, t.created_at, self.timing.retention, t.finished)]
        return own + list(self._also_prune)

    async def prune_once(self) -> bool:
        """One batch of each table's old rows; True when a batch came back full (more to go)."""
        full = False
        for retained in self.retained():
            full = await self._prune_batch(retained) >= self.timing.prune_batch or full
        return full

    async def prune(self) -> int:
        """Delete every old row now, batch by batch; returns how many went."""
        pruned = 0
        for retained in self.retained():
            while (went := await self._prune_batch(retained)) >= self.timing.prune_batch:
                pruned += went
            pruned += went
        return pruned

    async def _prune_batch(self, retained: Retained) -> int:
        model = retained.id.class_
        async with self._sessions()() as session:
            ids = (await session.scalars(retained.candidates(self.timing.prune_batch))).all()
            if ids:
                await session.execute(
                    delete(model)
                    # checked again: a row made pending meanwhile (a redelivery) stays
                    .where(retained.id.in_(ids), retained.old())
                    .execution_options(synchronize_session=False)
                )
                await session.commit()
        return len(ids)
