"""Deals' part of a right-to-erasure request: the prospect's deals and everything hanging off
them (qualification answers, meetings, objections and their outcomes, history, and any table
added later with a foreign key to those), deleted. Called by prospecting's outbox relay until
it answers 2xx; a repeat finds nothing left and answers the same."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import Deal
from shared.erasure import delete_tree


async def erase_prospect(session: AsyncSession, prospect_id: str) -> dict[str, int]:
    """Rows deleted per table."""
    table = Deal.__table__
    return await delete_tree(session, table, table.c.prospect_id == prospect_id)
