"""Referrals' part of a right-to-erasure request.

The person's data here is: referrals that name them (as the referred person: by prospect id,
email or phone), with their intake workflows (whose input holds the same data), and their name
on the referral asks sent to them as a client. Those referrals are deleted (with anything
pointing at them), their intakes' data keys shredded first (every copy of an intake's history,
backups included, unreadable: prospecting shreds only the key of the referral that made the
prospect, and a person referred again, or by someone else, has one intake per referral), the
name on the asks blanked and their links closed (they open nothing, so nobody introduces people
in the erased client's name): the asks themselves and the referrals the person made stay, as
they are other people's data and their attribution. The digests of their email and phone stay
(models.ErasedPerson): a client naming them again stores nothing of them. Called by
prospecting's outbox relay until it answers 2xx; a repeat finds nothing left to do.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from services.referrals.models import (
    AuditEntry,
    ErasedPerson,
    IdempotencyKey,
    Referral,
    ReferralAsk,
)
from services.referrals.service import new_token
from shared.audit import redact
from shared.auth import require_api_key
from shared.contracts.journey import referral_intake_id
from shared.db import Session, utcnow
from shared.erasure import (
    ErasureOrder,
    ErasureResult,
    delete_tree,
    forget_workflow,
    has_digest,
    keep_digests,
    one_order_at_a_time,
    shred_intake_keys,
)
from shared.errors import AppError
from shared.idempotency import forget_answers

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.post("/internal/erasures", tags=["erasure"])
async def erasure_order(order: ErasureOrder, request: Request, session: Session) -> ErasureResult:
    table = Referral.__table__
    pepper = request.app.state.settings.erasure_pepper.get_secret_value()
    by_digest = await _named_by_digest(session, pepper, order)
    naming = or_(
        table.c.prospect_id == order.prospect_id,
        table.c.email == order.email if order.email else false(),
        table.c.phone == order.phone if order.phone else false(),
        table.c.id.in_(by_digest) if by_digest else false(),
    )
    referral_ids = (await session.scalars(select(table.c.id).where(naming))).all()
    temporal = request.app.state.temporal
    await shred_intake_keys(temporal, referral_ids)
    try:
        for referral_id in referral_ids:
            await forget_workflow(temporal, referral_intake_id(referral_id))
    except RPCError as err:
        raise AppError(503, "temporal_unreachable", f"intake not stopped yet: {err}") from err
    await one_order_at_a_time(session)
    deleted = await delete_tree(session, table, naming)
    deleted["referral_asks (name blanked, link closed)"] = await _close_asks(
        session, order.prospect_id
    )
    deleted["audit_log (values redacted)"] = await redact(session, AuditEntry, order.prospect_id)
    deleted["idempotency_keys"] = await forget_answers(
        session, IdempotencyKey, (order.prospect_id, order.email, order.phone)
    )
    await keep_digests(session, ErasedPerson, order)  # so they are not referred back in
    await session.commit()
    return ErasureResult(service="referrals", erasure_id=order.erasure_id, deleted=deleted)


async def _named_by_digest(session: AsyncSession, pepper: str, order: ErasureOrder) -> list[str]:
    """The referrals whose address has a digest the order gives without the address itself: an
    order prospecting sends again as it keeps it, digests only, for a person erased before
    referrals kept digests (migration 0005), whom a client named afterwards. Each address is
    digested here: a keyed digest cannot be matched in SQL."""
    wanted = {
        (kind, value)
        for kind, value, plain in (
            ("email", order.email_digest, order.email),
            ("phone", order.phone_digest, order.phone),
        )
        if value and not plain
    }
    if not wanted:
        return []
    table = Referral.__table__
    rows = await session.execute(select(table.c.id, table.c.email, table.c.phone))
    return [row.id for row in rows.all() if has_digest(pepper, wanted, row.email, row.phone)]


async def _close_asks(session: AsyncSession, client_prospect_id: str) -> int:
    """The erased client's asks lose their name and close: a link still in their mailbox (or
    forwarded), or an integration holding an ask's id, takes no introductions in their name.
    Each gets a token nobody holds (the page answers "not valid"), counts as used, and is closed
    (`closed_at`: the API refuses it). How many were still open."""
    asks = await session.scalars(
        select(ReferralAsk).where(
            ReferralAsk.client_prospect_id == client_prospect_id, ReferralAsk.closed_at.is_(None)
        )
    )
    closed = 0
    for ask in asks.all():
        ask.client_name, ask.token = "", new_token()
        ask.used_at = ask.used_at or utcnow()
        ask.closed_at = utcnow()
        closed += 1
    await session.flush()
    return closed
