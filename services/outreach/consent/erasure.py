"""Outreach's part of a right-to-erasure request, and the suppression that outlives it.

POST /internal/erasures (called by prospecting's outbox relay, retried until it answers 2xx)
stops and deletes the prospect's journey in Temporal, deletes their messages, tasks (and the
tasks' notifications), enrollment, consent records, provider events and the plain-text opt-out
and do-not-contact entries of their addresses, and stores the keyed digests of the email and
phone instead (models.ErasedPerson). Idempotent: a repeat finds nothing left to delete.

From then on an enrollment whose contact has an erased email or phone is refused (409), and
`erased_reason` tells a send check that the address belongs to an erased person.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import delete, false, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from services.outreach import models
from shared.auth import require_api_key
from shared.contracts.journey import Contact, journey_id
from shared.db import Session
from shared.erasure import (
    ErasureOrder,
    ErasureResult,
    Kind,
    digest,
    forget_cached_key,
    forget_workflow,
)
from shared.errors import AppError

router = APIRouter(dependencies=[Depends(require_api_key)])
ERASED = "erased_person"


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(models.ErasedPerson)


async def erase(session: AsyncSession, order: ErasureOrder) -> dict[str, int]:
    """Delete the person's rows and keep their digests; the rows deleted per table."""
    pid = order.prospect_id
    addresses = [a for a in (order.email, order.phone) if a]
    m = models
    task_ids = select(m.RepTask.id).where(m.RepTask.prospect_id == pid)
    statements = {
        "task_notifications": delete(m.TaskNotification).where(
            m.TaskNotification.task_id.in_(task_ids)
        ),
        "rep_tasks": delete(m.RepTask).where(m.RepTask.prospect_id == pid),
        "messages": delete(m.Message).where(
            or_(m.Message.prospect_id == pid, m.Message.to_address.in_(addresses))
        ),
        "enrollments": delete(m.Enrollment).where(m.Enrollment.prospect_id == pid),
        "follow_ups": delete(m.FollowUp).where(m.FollowUp.prospect_id == pid),
        "consent_records": delete(m.ConsentRecord).where(
            or_(
                m.ConsentRecord.prospect_id == pid,
                m.ConsentRecord.email == order.email if order.email else false(),
                m.ConsentRecord.phone == order.phone if order.phone else false(),
            )
        ),
        "inbox_events": delete(m.InboxEvent).where(m.InboxEvent.prospect_id == pid),
        # replaced by the digests below: a plain address must not outlive the erasure
        "suppressions": delete(m.Suppression).where(m.Suppression.address.in_(addresses)),
        "do_not_contact": delete(m.DoNotContact).where(
            m.DoNotContact.kind.in_(("email", "phone")), m.DoNotContact.value.in_(addresses)
        ),
    }
    deleted = {}
    for table, statement in statements.items():
        result = await session.execute(statement.execution_options(synchronize_session=False))
        deleted[table] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    for kind, value in (("email", order.email_digest), ("phone", order.phone_digest)):
        if value:
            await session.execute(
                _insert(session)
                .values(kind=kind, digest=value, erasure_id=order.erasure_id)
                .on_conflict_do_nothing(index_elements=["kind", "digest"])
            )
    return deleted


async def erased_reason(
    session: AsyncSession, pepper: str, channel: str, address: str
) -> str | None:
    """Why nothing may be sent to this (normalised) address: it belonged to an erased person."""
    kind: Kind = "email" if channel == "email" else "phone"
    found = await session.scalar(
        select(models.ErasedPerson.id).where(
            models.ErasedPerson.kind == kind,
            models.ErasedPerson.digest == digest(pepper, kind, address),
        )
    )
    return "erased: this person asked for their data to be erased" if found else None


async def refuse_erased_contact(session: AsyncSession, pepper: str, contact: Contact) -> None:
    """Enrollment check: 409 when the contact's email or phone belongs to an erased person."""
    for channel, address in (("email", contact.email), ("sms", contact.phone)):
        if address and await erased_reason(session, pepper, channel, address):
            raise AppError(
                409, ERASED, f"prospect {contact.prospect_id}: this person asked to be erased"
            )


@router.post("/internal/erasures", tags=["erasure"])
async def erasure_order(order: ErasureOrder, request: Request, session: Session) -> ErasureResult:
    """Erase one person from outreach (prospecting's outbox calls it until it answers 2xx)."""
    # The journey first: once it is gone nothing can send or create a task any more.
    try:
        await forget_workflow(request.app.state.temporal, journey_id(order.prospect_id))
    except RPCError as err:
        raise AppError(503, "temporal_unreachable", f"journey not stopped yet: {err}") from err
    forget_cached_key(request.app.state.temporal, order.prospect_id)  # shredded by prospecting
    deleted = await erase(session, order)
    await session.commit()
    return ErasureResult(service="outreach", erasure_id=order.erasure_id, deleted=deleted)
