"""A prospect's journey runs: starting a new one when the last has ended (come back, issue 10).

Every run is the same workflow id, `journey-<prospect id>`, as a new Temporal run; each has
its enrollment row (run 1, 2, ...), the latest marked `current`. A prospect whose journey runs
cannot get a second one: the same cadence again is the running one (idempotent), another
cadence is 409 `already_enrolled`. A prospect whose journey ended may come back once the
minimum gap since that end has passed (`reenroll_min_gap_days`: the cadence's, else the
setting); follow-ups, late replies and referrals start their runs without that gap (ops chose
their delay; a reply is the prospect coming back by themselves, a referral through a client).

The row is committed before the start and the Temporal run id is stored after it, so a start
that failed (503) is retried by the same request again and reaches the same run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from services.outreach import models
from services.outreach.cadences import service
from services.outreach.cadences.enrollment import new_enrollment, started_for
from services.outreach.consent import erasure
from services.outreach.consent import service as consent
from shared.contracts.journey import CadenceSnapshot, Contact, Stage, prospect_of_journey
from shared.errors import AppError
from shared.settings import Settings

log = logging.getLogger(__name__)


class RunState(StrEnum):
    RUNNING = "running"
    ENDED = "ended"
    NOT_STARTED = "not_started"  # stored, but its start never reached Temporal (retry it)


# the origin of a referred journey's run (cadences/referred_runs.py)
REFERRAL = "referral"
# the origin of a follow-up cadence's run (cadences/follow_ups.py)
FOLLOW_UP = "follow_up"


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    ended_at: datetime | None = None
    outcome: str | None = None


async def run_status(client: Client, row: models.Enrollment) -> RunStatus:
    """Where the run of `row` is, asked of Temporal (a run that reported its outcome may still
    be returning: it is running until Temporal closed it); the outcome is the one it reported."""
    # A row without its Temporal id: a start that did not complete, or a referred run's row
    # made by its first touch in an earlier release. Its run reported an outcome if it ran.
    unknown = row.run_id is None and row.outcome is None
    if row.run_id is None and not row.current:
        # a later run started: the journey's latest run is that one's, not this one's
        if unknown:
            return RunStatus(RunState.NOT_STARTED)
        return RunStatus(RunState.ENDED, row.ended_at, row.outcome)
    handle = client.get_workflow_handle(row.journey_id, run_id=row.run_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise AppError(
                503, "temporal_unreachable", f"journey {row.journey_id}: {err.message}"
            ) from err
        # never started, or started so long ago that Temporal forgot it (retention)
        if unknown:
            return RunStatus(RunState.NOT_STARTED)
        return RunStatus(RunState.ENDED, row.ended_at, row.outcome)
    if described.status == WorkflowExecutionStatus.RUNNING:
        return RunStatus(RunState.RUNNING, None, row.outcome)
    if unknown and not await started_for(described, row):
        return RunStatus(RunState.NOT_STARTED)  # an earlier run's end: this one never started
    return RunStatus(RunState.ENDED, row.ended_at or described.close_time, row.outcome)


# calling_run_ended's answer for a run whose prospect was erased (the caller keeps nothing)
PROSPECT_ERASED = "its prospect was erased"


async def calling_run_ended(session: AsyncSession, *, hold: bool = True) -> str:
    """Why the journey run calling this activity may no longer reach the rep or the prospect
    ("" when it may): its end is recorded, or a later run started. A run's end cancels its
    background work, but an activity already under way (a meeting reminder, a last-chance task)
    still runs here. "" outside an activity and for a run outreach has no row for (another
    workflow, a start whose run id is not stored yet): those are not known to have ended;
    PROSPECT_ERASED for a run whose prospect was erased (the erasure deleted its row).

    With `hold`, the answer holds until the session's transaction ends: the run's row is held
    (see _hold_run), and every writer that ends a run updates that row (record_run_end; plan_run
    when a later run starts), so an end is committed either before this read, which then sees
    it, or after the caller's commit. What the caller writes on a "" (a task, a ledger claim)
    belongs in the same transaction; it must not call a provider while holding it. Without, a
    read that waits for nothing: an early look, to be asked again where it matters."""
    if not activity.in_activity():
        return ""
    info = activity.info()
    prospect_id = prospect_of_journey(info.workflow_id or "")
    if prospect_id is None:
        return ""
    e = models.Enrollment
    where = (e.prospect_id == prospect_id, e.run_id == info.workflow_run_id)
    row = await (_hold_run(session, *where) if hold else session.scalar(select(e).where(*where)))
    if row is None and await session.get(models.ErasedProspect, prospect_id) is not None:
        # the erasure deleted the row (after the held one's commit, or before this read: it
        # deletes enrollments first) and was committed: nothing of theirs is written again
        return PROSPECT_ERASED
    if row is None or (row.outcome is None and row.current):
        return ""
    how = row.outcome or "a later run started"
    return f"its journey run (run {row.run}) had ended ({how})"


async def _hold_run(session: AsyncSession, *where: ColumnElement[bool]) -> models.Enrollment | None:
    """The enrollment row, held until the transaction ends against a writer ending its run.
    PostgreSQL: FOR SHARE (activities of one run do not wait on each other). SQLite has no row
    locks and runs a read before any write outside a transaction: a write first (changing
    nothing) takes its one write lock, so the read and the caller's writes are one
    transaction no other connection writes in."""
    e = models.Enrollment
    # populate_existing: a row this session loaded earlier is read again, not taken as it was
    query = select(e).where(*where).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(
            update(e).where(*where).values(run=e.run).execution_options(synchronize_session=False)
        )
        return await session.scalar(query)
    return await session.scalar(query.with_for_update(read=True))


@dataclass(frozen=True)
class Refusal:
    rule: str  # "do_not_contact" or "opted_out": what a workflow's history may keep
    detail: str  # the entry or the opt-outs, addresses included: for outreach's own rows


async def refusal(
    session: AsyncSession, prospect_id: str, email: str | None, phone: str | None
) -> Refusal | None:
    """Why this person may not be brought back by a run nobody asked for by hand (a
    follow-up, a referral; None when they may): the do-not-contact list, or an opt-out of every
    channel we can reach them on."""
    entry = await consent.dnc_for_contact(session, email, phone)
    if entry is not None:
        return Refusal("do_not_contact", consent.dnc_reason(entry))
    reasons = [
        await consent.blocked(session, channel, address, prospect_id)
        for channel, address in (("email", email), ("sms", phone))
        if address
    ]
    if reasons and all(reasons):
        return Refusal("opted_out", "; ".join(r for r in reasons if r))
    return None


def stored_not_started(row: models.Enrollment, origin: str) -> bool:
    """A run of `origin` stored by an earlier attempt that did not see its start through (no
    Temporal id stored, no outcome reported): that attempt's retry starts it."""
    return row.origin == origin and row.run_id is None and row.outcome is None


async def current_run(session: AsyncSession, prospect_id: str) -> models.Enrollment | None:
    return await service.find_enrollment(session, prospect_id)


async def all_runs(session: AsyncSession, prospect_id: str) -> list[models.Enrollment]:
    e = models.Enrollment
    rows = await session.scalars(select(e).where(e.prospect_id == prospect_id).order_by(e.run))
    return list(rows.all())


def min_gap(settings: Settings, definition_gap: int | None) -> timedelta:
    days = settings.reenroll_min_gap_days if definition_gap is None else definition_gap
    return timedelta(days=days)


@dataclass(frozen=True)
class NewRun:
    """What a run is started for: the cadence, where it starts, and why."""

    prospect_id: str
    cadence_id: str
    origin: str = "enrollment"  # enrollment | follow_up | late_reply | deal_reopened | referral
    start_stage: str = Stage.CONTACTING
    start_cause: str = ""
    deal_id: str | None = None
    hold_to_gap: bool = True  # False: a follow-up or a late reply (no minimum gap)


@dataclass
class Planned:
    row: models.Enrollment
    snapshot: CadenceSnapshot
    contact: Contact
    created: bool  # False: the existing run (a repeat, or a start to retry)


async def plan_run(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    contact: Contact,
    new: NewRun,
) -> Planned:
    """The run to start for `new` (the caller commits, then calls start_run): the running one
    for a repeat, a new row when the last run ended; 409 when that cannot be."""
    existing = await current_run(session, new.prospect_id)
    if existing is not None:
        status = await run_status(client, existing)
        # a run that reported its outcome is over, even while it returns (the new run's start
        # waits for it to close)
        if status.state != RunState.ENDED and existing.outcome is None:
            if existing.cadence_id != new.cadence_id:
                raise _already_enrolled(new.prospect_id, existing, status.state)
            snapshot = await service.cadence_snapshot(
                session, existing.cadence_id, existing.cadence_version
            )
            return Planned(existing, snapshot, contact, created=False)
        if existing.ended_at is None:
            # the journey ended before it could say how (or before runs were recorded)
            existing.ended_at = status.ended_at
    snapshot = await service.cadence_snapshot(session, new.cadence_id)
    if existing is not None and new.hold_to_gap:
        definition = await service.get_cadence(session, new.cadence_id)
        gap = min_gap(settings, definition.reenroll_min_gap_days)
        ended = existing.ended_at or datetime.now(UTC)
        possible = ended + gap
        if datetime.now(UTC) < possible:
            raise AppError(
                409,
                "reenroll_too_soon",
                f"prospect {new.prospect_id}'s journey ended at {ended.isoformat()}; they may "
                f"be enrolled again from {possible.isoformat()} (minimum gap {gap.days} days)",
                [{"possible_from": possible.isoformat(), "ended_at": ended.isoformat()}],
            )
    pepper = settings.erasure_pepper.get_secret_value()
    await erasure.refuse_erased_contact(session, pepper, contact)  # 409 erased_person
    row = new_enrollment(contact, new.cadence_id, snapshot.version)
    row.run = existing.run + 1 if existing is not None else 1
    row.origin = new.origin
    row.start_stage = new.start_stage
    if existing is not None:
        # the ended run's row too, under its lock: an activity of that run holding it
        # (calling_run_ended) commits first, or waits and sees a later run started
        await session.execute(
            update(models.Enrollment)
            .where(models.Enrollment.prospect_id == new.prospect_id)
            .values(current=False)
            .execution_options(synchronize_session=False)
        )
    stored = await service.add_enrollment(session, row)
    if stored is not row:
        # a concurrent request stored this run first: its run is the one that goes on
        return await _concurrent_run(session, new, stored, contact)
    return Planned(row, snapshot, contact, created=True)


async def _concurrent_run(
    session: AsyncSession, new: NewRun, stored: models.Enrollment, contact: Contact
) -> Planned:
    """The run another request stored while this one planned the same: as a running run, the
    same cadence is a repeat and another is 409, never this request's cadence on its row."""
    if stored.cadence_id != new.cadence_id:
        raise _already_enrolled(new.prospect_id, stored, "just started")
    snapshot = await service.cadence_snapshot(session, stored.cadence_id, stored.cadence_version)
    return Planned(stored, snapshot, contact, created=False)


def _already_enrolled(prospect_id: str, run: models.Enrollment, state: str) -> AppError:
    return AppError(
        409,
        "already_enrolled",
        f"prospect {prospect_id} is on cadence {run.cadence_id} already (run {run.run}, {state})",
        [{"cadence_id": run.cadence_id, "run": run.run}],
    )


async def remember_start(session: AsyncSession, row_id: str, run_id: str | None) -> None:
    if run_id is not None:
        await session.execute(
            update(models.Enrollment)
            .where(models.Enrollment.id == row_id, models.Enrollment.run_id.is_(None))
            .values(run_id=run_id)
        )
