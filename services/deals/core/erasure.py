"""Deals' part of a right-to-erasure request: their meetings' calendar invitations still in
Temporal stopped and deleted, then the prospect's deals and everything hanging off
them (qualification answers, meetings, objections and their outcomes, history, and any table
added later with a foreign key to those), their booking links and their events still in the
outbox, deleted. Called by prospecting's outbox relay until it answers 2xx; a repeat finds
nothing left and answers the same."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from services.deals.meetings.links import hold_signed
from services.deals.models import (
    AuditEntry,
    BookingLink,
    Deal,
    EventOutbox,
    IdempotencyKey,
    Meeting,
)
from shared.audit import redact
from shared.contracts.meetings import meeting_invite_ids
from shared.erasure import about_prospect, delete_tree, forget_workflow, one_order_at_a_time
from shared.idempotency import forget_answers


async def forget_invitations(session: AsyncSession, client: Client, prospect_id: str) -> int:
    """Stop and delete the calendar invitations of their meetings (MeetingInvite workflows, one
    per revision and the cancellation): one still waiting (a sender's cap) holds their contact
    and, its key shredded, would fail for as long as it runs. Before the rows go: they tell
    which there may be. A repeat finds none (each is a no-op). Raises RPCError while Temporal
    is away (the order is retried). How many ids were asked."""
    meetings = (
        await session.execute(
            select(Meeting.id, Meeting.revision, Meeting.handovers)
            .join(Deal, Meeting.deal_id == Deal.id)
            .where(Deal.prospect_id == prospect_id)
        )
    ).all()
    ids = [
        i for m in meetings for i in meeting_invite_ids(prospect_id, m.id, m.revision + m.handovers)
    ]
    for workflow_id in ids:
        await forget_workflow(client, workflow_id)
    return len(ids)


async def erase_prospect(session: AsyncSession, prospect_id: str) -> dict[str, int]:
    """Rows deleted per table (after forget_invitations)."""
    await one_order_at_a_time(session)
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
    # a link signed before links were stored is no row: its prospect's id says it opens nothing
    await hold_signed(session, prospect_id, revoked=True)
    # their events in the outbox (a meeting booked, a deal won): outreach erases the ones it
    # has; one still pending would reach it, and the subscribers, after that
    events = EventOutbox.__table__
    deleted |= await delete_tree(session, events, about_prospect(events.c.body, prospect_id))
    return deleted
