"""Deals' part of a right-to-erasure request: the prospect's deals and everything hanging off
them (qualification answers, meetings, objections and their outcomes, history, and any table
added later with a foreign key to those), their booking links and their events still in the
outbox, deleted. Called by prospecting's outbox relay until it answers 2xx; a repeat finds
nothing left and answers the same."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import AuditEntry, BookingLink, Deal, EventOutbox, IdempotencyKey
from shared.audit import redact
from shared.erasure import about_prospect, delete_tree
from shared.idempotency import forget_answers


async def erase_prospect(session: AsyncSession, prospect_id: str) -> dict[str, int]:
    """Rows deleted per table."""
    table = Deal.__table__
    deal_ids = (await session.scalars(select(Deal.id).where(Deal.prospect_id == prospect_id))).all()
    # answers kept for a client's retry (an objection's text, a meeting) name their deals
    deleted = {"idempotency_keys": await forget_answers(session, IdempotencyKey, deal_ids)}
    deleted |= await delete_tree(session, table, table.c.prospect_id == prospect_id)
    # the audit log keeps who did what and when, not the values (shared.audit)
    deleted["audit_log (values redacted)"] = await redact(session, AuditEntry, prospect_id)
    # their booking links (their zone, their rep): gone, so an old link opens nothing
    links = await session.execute(delete(BookingLink).where(BookingLink.prospect_id == prospect_id))
    deleted["booking_links"] = cast(CursorResult[Any], links).rowcount
    # their events in the outbox (a meeting booked, a deal won): outreach erases the ones it
    # has; one still pending would reach it, and the subscribers, after that
    events = EventOutbox.__table__
    deleted |= await delete_tree(session, events, about_prospect(events.c.body, prospect_id))
    return deleted
