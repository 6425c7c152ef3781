"""Whose is it: the rep each outreach id belongs to, for rep keys (shared/access.py)."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy import select

from services.outreach.models import RepTask
from services.outreach.prospects import ProspectDirectory
from shared.access import Resolver
from shared.errors import AppError


async def prospect_rep(request: Request, prospect_id: str) -> str | None:
    """Asked of prospecting, the owner of assignment: outreach's own copies of the rep (on the
    enrolment, on tasks) are snapshots that a reassignment can leave behind."""
    directory: ProspectDirectory = request.app.state.prospects
    try:
        contact = await directory.contact(prospect_id)
    except AppError as err:
        if err.status == 404:
            return None
        raise
    return contact.rep_id


async def task_rep(request: Request, task_id: str) -> str | None:
    async with request.app.state.sessions() as session:
        rep_id: str | None = await session.scalar(
            select(RepTask.rep_id).where(RepTask.id == task_id)
        )
        return rep_id


RESOLVERS: dict[str, Resolver] = {"prospect_id": prospect_rep, "task_id": task_rep}
