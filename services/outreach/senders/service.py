"""Sender mailboxes and the email slot each send takes under the caps.

An email ledger row takes its slot once, before its first attempt: sender, From header,
recipient domain and time are written on the row in the transaction that marks it `sending`,
so a retried activity reuses them and is never counted twice. The caps count those rows. A row
that goes back to `pending` (deferred at its provider call: nothing reached the provider) gives
its slot back (`SLOT_RELEASED`) and claims afresh, under the caps of the moment, when it goes;
one suppressed right before its first call (an opt-out committed since its claim) gives it back
too.

Claims are serialised by updating the one `send_quota_locks` row first in the transaction: on
PostgreSQL the row lock is held until commit, on SQLite the write lock is. Two concurrent claims
therefore never both see the same count, whatever the number of workers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import formataddr

from sqlalchemy import ColumnElement, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from services.outreach.senders.send_policy import DAY, HOUR, CapState, Decision, SenderState, decide
from shared.errors import conflict, not_found
from shared.providers.email import address_domain, new_message_id

EMAIL_LOCK = "email"
# what a claimed row that never reached the provider writes to hold no slot (the caps count
# `claimed_at`); its From and domain are written again by its next claim
SLOT_RELEASED: dict[str, object] = {"claimed_at": None, "sender_id": None}


def release_slot(row: models.Message) -> None:
    """`row` went nowhere, for good (refused at its call): its slot counts no more."""
    for column, value in SLOT_RELEASED.items():
        setattr(row, column, value)


# --- use cases of the API (the caller commits) ----------------------------------------------


async def create_sender(session: AsyncSession, values: dict[str, object]) -> models.Sender:
    sender = models.Sender(**values)
    session.add(sender)
    await _flush_unique(session, str(values["from_address"]))
    return sender


async def update_sender(
    session: AsyncSession, sender_id: str, values: dict[str, object]
) -> models.Sender:
    sender = await get_sender(session, sender_id)
    for name, value in values.items():
        setattr(sender, name, value)
    sender.updated_at = datetime.now(UTC)
    await _flush_unique(session, str(values["from_address"]))
    return sender


async def get_sender(session: AsyncSession, sender_id: str) -> models.Sender:
    sender = await session.get(models.Sender, sender_id)
    if sender is None:
        raise not_found("sender", sender_id)
    return sender


async def list_senders(session: AsyncSession) -> list[models.Sender]:
    rows = await session.scalars(
        select(models.Sender).order_by(models.Sender.created_at, models.Sender.id)
    )
    return list(rows.all())


async def usage(session: AsyncSession, now: datetime) -> dict[str, tuple[int, int]]:
    """Sends per sender in the last hour and the last day."""
    m = models.Message
    rows = await session.execute(
        select(
            m.sender_id,
            func.sum(case((m.claimed_at > now - HOUR, 1), else_=0)),
            func.count(),
        )
        .where(m.sender_id.is_not(None), m.claimed_at > now - DAY)
        .group_by(m.sender_id)
    )
    return {sid: (int(hour or 0), int(day)) for sid, hour, day in rows.all() if sid}


async def _flush_unique(session: AsyncSession, from_address: str) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as err:
        raise conflict("sender_exists", f"a sender with address {from_address} exists") from err


# --- the slot of one email ------------------------------------------------------------------


def recipient_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


async def claim_email_slot(
    session: AsyncSession,
    row: models.Message,
    *,
    default_from: str,
    per_domain_hourly_cap: int,
    now: datetime | None = None,
) -> Decision:
    """Give `row` its sender and slot, or say until when it must wait. The caller commits
    (which also releases the lock); `now` defaults to the clock once the lock is held."""
    domain = recipient_domain(row.to_address)
    has_senders = await session.scalar(
        select(models.Sender.id).where(models.Sender.active.is_(True)).limit(1)
    )
    if has_senders is None and per_domain_hourly_cap <= 0:
        # today's behaviour, without a lock: the default From and no cap to count against
        _take(row, None, default_from, domain, now or datetime.now(UTC))
        return Decision()
    await _lock(session)
    now = now or datetime.now(UTC)
    senders = list(
        (
            await session.scalars(
                select(models.Sender)
                .where(models.Sender.active.is_(True))
                .order_by(models.Sender.created_at, models.Sender.id)
            )
        ).all()
    )
    states = [await _sender_state(session, s, now) for s in senders]
    domain_cap = await _cap_state(
        session, models.Message.to_domain == domain, per_domain_hourly_cap, HOUR, now
    )
    decision = decide(states, domain_cap, now)
    if decision.defer_until is not None:
        return decision
    sender = next((s for s in senders if s.id == decision.sender_id), None)
    if sender is None:
        _take(row, None, default_from, domain, now)
    else:
        sender.last_used_at = now
        _take(row, sender, formataddr((sender.display_name, sender.from_address)), domain, now)
    return decision


def _take(
    row: models.Message,
    sender: models.Sender | None,
    from_header: str,
    domain: str,
    now: datetime,
) -> None:
    row.sender_id = sender.id if sender else None
    row.from_address = from_header
    row.to_domain = domain
    row.claimed_at = now
    if sender is not None and row.status == "pending":
        # nothing has gone out yet (not even for an attempt deferred at its call, which gave
        # its slot back): the Message-ID may take the sender's own domain
        row.provider_id = new_message_id(address_domain(sender.from_address))


async def _lock(session: AsyncSession) -> None:
    bump = (
        update(models.SendQuotaLock)
        .where(models.SendQuotaLock.name == EMAIL_LOCK)
        .values(claims=models.SendQuotaLock.claims + 1)
    )
    result = await session.execute(bump)
    if getattr(result, "rowcount", 1) == 0:
        # a database created without the migration's seed row: add it, then lock it
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(models.SendQuotaLock).values(name=EMAIL_LOCK, claims=0)
                )
        except IntegrityError:
            pass
        await session.execute(bump)


async def _sender_state(session: AsyncSession, sender: models.Sender, now: datetime) -> SenderState:
    where = models.Message.sender_id == sender.id
    return SenderState(
        sender_id=sender.id,
        hourly=await _cap_state(session, where, sender.hourly_cap, HOUR, now),
        daily=await _cap_state(session, where, sender.daily_cap, DAY, now),
        last_used_at=sender.last_used_at,
        created_at=sender.created_at,
    )


async def _cap_state(
    session: AsyncSession, where: ColumnElement[bool], cap: int, period: timedelta, now: datetime
) -> CapState:
    if cap <= 0:
        return CapState(cap, period)
    m = models.Message
    recent = (where, m.claimed_at > now - period)
    count = int(await session.scalar(select(func.count()).select_from(m).where(*recent)) or 0)
    if count < cap:
        return CapState(cap, period, count)
    latest = await session.scalar(
        select(m.claimed_at).where(*recent).order_by(m.claimed_at.desc()).offset(cap - 1).limit(1)
    )
    return CapState(cap, period, count, latest)
