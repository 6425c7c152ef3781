"""Right to erasure: delete the person everywhere, keep only digests that keep them away.

POST /prospects/{id}/erasure deletes prospecting's rows of the person in the request's
transaction and, in the same transaction, writes one erasure order per other service to the
outbox (services.prospecting.outbox): outreach (messages, tasks, consent, enrollment; it stops
and deletes the journey and keeps the digests as its suppression entry), deals and referrals.
The relay retries each order until its service confirms; the erasure is `done` when all have.
Each service's endpoint is idempotent, so a repeated order erases nothing more.

Their other calls in the outbox (stage-change events, rep moves: waiting, refused or delivered)
go, and they leave the auto-enrolment calls of batches (an import's, an ICP change's); the
stage-change events of the people they referred lose their name, as their stage history does.

The prospect's payload data key (shared/codec.py, in this database) is shredded in the same
transaction: their workflow histories become unreadable wherever they are.

What stays here: the erasure row (prospect id, the HMAC digests of the email and phone, the
status). New prospects, imported rows and referrals with an erased email or phone are refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import auto_enroll, funnel_queue, outbox
from services.prospecting.models import (
    AuditEntry,
    Erasure,
    IdempotencyKey,
    OutboxMessage,
    Prospect,
    StageHistory,
)
from shared import codec
from shared.audit import redact
from shared.erasure import (
    REFERRED_BY,
    ErasureOrder,
    delete_tree,
    digest,
    event_without_referrer,
    order_parts,
    unnamed_referral_cause,
)
from shared.errors import AppError, conflict, not_found
from shared.idempotency import forget_answers

KIND = "erasure"
ERASED = "erased_person"
REFUSAL = "this person asked for their data to be erased: they may not be added again"


def digests(pepper: str, email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    """Digests of already normalised values (prospects store them normalised)."""
    return (
        digest(pepper, "email", email) if email else None,
        digest(pepper, "phone", phone) if phone else None,
    )


async def erased_digests(
    session: AsyncSession, email_digests: Iterable[str], phone_digests: Iterable[str]
) -> set[str]:
    """Which of the digests belong to erased people."""
    emails, phones = set(email_digests), set(phone_digests)
    if not emails and not phones:
        return set()
    rows = (
        await session.execute(
            select(Erasure.email_digest, Erasure.phone_digest).where(
                or_(Erasure.email_digest.in_(emails), Erasure.phone_digest.in_(phones))
            )
        )
    ).all()
    found = {d for row in rows for d in row if d is not None}
    return found & (emails | phones)


async def refuse_erased(
    session: AsyncSession, pepper: str, email: str | None, phone: str | None
) -> None:
    email_digest, phone_digest = digests(pepper, email, phone)
    if await erased_digests(
        session, [email_digest] if email_digest else [], [phone_digest] if phone_digest else []
    ):
        raise conflict(ERASED, REFUSAL)


async def _existing(session: AsyncSession, prospect_id: str) -> Erasure:
    found = await session.scalar(select(Erasure).where(Erasure.prospect_id == prospect_id))
    if found is None:
        raise AppError(404, "erasure_not_found", f"no erasure was requested for {prospect_id}")
    return found


async def forget_referrer(session: AsyncSession, prospect_id: str) -> list[str]:
    """The people this person referred keep the referral (the referrer's id, no longer anyone)
    but not their name: journeys before issue 11 wrote "referred by <name>" as the cause of
    the referred person's first stage. Returns the referred people's ids (outreach scrubs the
    name from their introductions). However many they are, no statement lists them: they are
    selected where they are used (a list past 32,766 ids is more bind parameters than SQLite or
    asyncpg take in one statement)."""
    referred_ids = select(Prospect.id).where(Prospect.referrer_prospect_id == prospect_id)
    referred = list((await session.scalars(referred_ids)).all())
    if referred:
        await session.execute(
            update(StageHistory)
            .where(
                StageHistory.prospect_id.in_(referred_ids),
                StageHistory.cause.startswith(REFERRED_BY, autoescape=True),
            )
            .values(cause=unnamed_referral_cause(prospect_id))
            .execution_options(synchronize_session=False)
        )
        await _unname_in_events(session, referred_ids, prospect_id)
    return referred


async def _unname_in_events(session: AsyncSession, referred: Select[str], referrer_id: str) -> None:
    """Their stage changes in the outbox (waiting for outreach, or kept after it answered)
    carry the same causes."""
    rows = await session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.kind == outbox.EVENT, OutboxMessage.subject_id.in_(referred)
        )
    )
    for row in rows:
        unnamed = event_without_referrer(row.payload, referrer_id)
        if unnamed is not None:
            row.payload = unnamed


async def request_erasure(
    session: AsyncSession, prospect_id: str, pepper: str
) -> tuple[Erasure, bool]:
    """(the erasure, whether this call created it). Repeating the request returns the first."""
    existing = await session.scalar(select(Erasure).where(Erasure.prospect_id == prospect_id))
    if existing is not None:
        return existing, False
    prospect = await session.get(Prospect, prospect_id)
    if prospect is None:
        raise not_found("prospect", prospect_id)
    email_digest, phone_digest = digests(pepper, prospect.email, prospect.phone)
    erasure = Erasure(
        prospect_id=prospect_id,
        email_digest=email_digest,
        phone_digest=phone_digest,
        status="in_progress",
    )
    session.add(erasure)
    try:
        await session.flush()
    except IntegrityError:
        # a concurrent request for the same person won: answer with its erasure
        await session.rollback()
        return await _existing(session, prospect_id), False
    referred = await forget_referrer(session, prospect_id)
    referral_id = prospect.referral_id
    orders = order_parts(
        ErasureOrder(
            erasure_id=erasure.id,
            prospect_id=prospect_id,
            email=prospect.email,
            phone=prospect.phone,
            email_digest=email_digest,
            phone_digest=phone_digest,
            name=f"{prospect.first_name} {prospect.last_name}".strip() or None,
        ),
        referred,
    )
    for target in outbox.TARGETS:
        for order in orders:
            outbox.add(
                session,
                kind=KIND,
                target=target,
                path="/internal/erasures",
                payload=order.model_dump(mode="json"),
                subject_id=erasure.id,
            )
    # Their calls still waiting (a move of their tasks, a stage change) would only recreate
    # what is being erased; the ones done, superseded or refused keep their stage causes and
    # ids: all go (a call in flight records its outcome on no row).
    await session.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.subject_id == prospect_id, OutboxMessage.kind != KIND)
        .execution_options(synchronize_session=False)
    )
    await auto_enroll.forget(session, prospect_id)
    # The prospect and every row pointing at it (stage history, and any table added later with
    # a foreign key to prospects). The funnel's counters are counts without a person: they stay,
    # with the changes still queued for them added first.
    await funnel_queue.roll_up_prospect(session, prospect_id)
    # Other prospects keep the id of the person who referred them (an id, no longer anyone), so
    # attribution by source stays right.
    # an answer kept for a client's retry (their creation: name, email) goes with them
    await forget_answers(session, IdempotencyKey, (prospect_id, prospect.email, prospect.phone))
    table = Prospect.__table__
    await delete_tree(session, table, table.c.id == prospect_id)
    # the audit log keeps who did what to them and when, not the values (shared.audit)
    await redact(session, AuditEntry, prospect_id)
    # Crypto-shredding: the data key of their workflow payloads goes in the same transaction,
    # so every history of theirs (open, closed, exported) is unreadable from the commit on.
    await codec.shred(session, prospect_id)
    if referral_id:  # their referral's intake held their details before the journey
        await codec.shred(session, codec.referral_scope(referral_id))
    await session.flush()
    return erasure, True


async def status_of(session: AsyncSession, prospect_id: str) -> dict[str, object]:
    erasure = await session.scalar(select(Erasure).where(Erasure.prospect_id == prospect_id))
    if erasure is None:
        raise AppError(404, "erasure_not_found", f"no erasure was requested for {prospect_id}")
    steps = (
        await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == KIND, OutboxMessage.subject_id == erasure.id)
            .order_by(OutboxMessage.target)
        )
    ).all()
    by_service: dict[str, list[OutboxMessage]] = {}
    for step in steps:
        by_service.setdefault(step.target, []).append(step)
    return {
        "id": erasure.id,
        "prospect_id": erasure.prospect_id,
        "status": erasure.status,
        "requested_at": erasure.requested_at,
        "completed_at": erasure.completed_at,
        "services": [
            {"service": "prospecting", "status": "done", "attempts": 1, "last_error": ""},
            *(_service_status(target, parts) for target, parts in by_service.items()),
        ],
    }


# a service's state is its least advanced part's
_PROGRESS = (outbox.FAILED, outbox.PENDING, outbox.DONE)


def _service_status(target: str, parts: list[OutboxMessage]) -> dict[str, object]:
    """One line per service, though a person who referred many people is sent in several
    orders (shared.erasure.order_parts): confirmed when all are."""
    worst = min(parts, key=lambda p: _PROGRESS.index(p.status) if p.status in _PROGRESS else 0)
    done_at = [p.done_at for p in parts if p.done_at is not None]
    return {
        "service": target,
        "status": worst.status,
        "attempts": max(p.attempts for p in parts),
        "last_error": worst.last_error or next((p.last_error for p in parts if p.last_error), ""),
        "confirmed_at": max(done_at) if worst.status == outbox.DONE and done_at else None,
    }
