"""A rep's pause belongs to the rep: a journey carries the `rep` pause of the rep its prospect
has now, not of whoever had them when the pause was made.

- `POST /reps/{id}/journeys/pause` (a vacation) records the rep's pause here and pauses the
  journeys of their prospects; `/resume` forgets it and resumes the journeys that are theirs then.
- A reassignment (enrollment_rep.py) hands the journey its new rep's pause: the rep's own when
  they are paused (it lifts with their resume), none when they are not. So a prospect handed to
  a colleague while their rep is away goes on with the colleague at once, instead of staying
  paused under a rep who will never resume them; one handed to an absent rep waits for them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from shared.contracts.journey import PauseJourney, PauseKind, ResumeJourney
from shared.contracts.names import Sig
from shared.db import utcnow


async def record(session: AsyncSession, rep_id: str, pause: PauseJourney) -> None:
    """The rep's pause from now on (a repeat replaces it, as the journeys' own pause does)."""
    row = await session.get(models.RepPause, rep_id, with_for_update=True)
    if row is None:
        row = models.RepPause(rep_id=rep_id)
        session.add(row)
    row.reason = pause.reason
    row.until = datetime.fromisoformat(pause.until) if pause.until else None
    row.paused_at = utcnow()
    await session.flush()


async def forget(session: AsyncSession, rep_id: str) -> None:
    await session.execute(delete(models.RepPause).where(models.RepPause.rep_id == rep_id))


async def pause_of(session: AsyncSession, rep_id: str, now: datetime) -> PauseJourney | None:
    """The rep's pause while it lasts (one whose `until` has come lifted by itself)."""
    row = await session.get(models.RepPause, rep_id)
    if row is None or (row.until is not None and row.until <= now):
        return None
    until = row.until.isoformat() if row.until is not None else None
    return PauseJourney(row.reason, until, PauseKind.REP)


def signal_for(pause: PauseJourney | None) -> tuple[str, PauseJourney | ResumeJourney]:
    """What tells a journey it has a rep with this pause (None: a rep at work)."""
    if pause is None:
        return Sig.RESUME, ResumeJourney(PauseKind.REP)
    return Sig.PAUSE, pause
