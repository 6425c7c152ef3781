"""Use cases on the deal record itself: find, list, open, edit, and the journey's qualification
deadline. Each takes a session and never commits (the caller does).

Writes lock the deal row (SELECT ... FOR UPDATE on PostgreSQL; SQLite has one writer anyway),
so a request racing the journey's qualification timeout sees one outcome, not both. The
sub-domains (qualification, meetings, playbook, closing) build on get_deal and require_stage.

The qualification deadline lives here, not in qualification/: it reads no framework, only
closes the record, and it sits beside open_deal so the journey's activities find the deal's
lifecycle in one module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.deals.core import history
from services.deals.meetings.links import hold_signed
from services.deals.models import CLOSED_STAGES, BookingLink, Deal
from services.deals.qualification.frameworks import get_framework
from services.deals.qualification.scoring import DEFAULT_FRAMEWORK
from shared.contracts.journey import OpenDealRequest, Stage
from shared.db import insert_or_winner, utcnow
from shared.errors import AppError, conflict, invalid, not_found
from shared.paging import Page, page

# past the qualification gate and not closed: where meetings, objections and closing happen
QUALIFIED_STAGES = (Stage.PRESENTING, Stage.OBJECTIONS, Stage.CLOSING)
QUALIFICATION_TIMEOUT = "qualification timeout"
TIMEOUT_OUTCOMES = (Stage.DISQUALIFIED, Stage.NURTURE)


async def get_deal(
    session: AsyncSession, deal_id: str, *, detail: bool = False, lock: bool = False
) -> Deal:
    stmt = select(Deal).where(Deal.id == deal_id)
    if detail:
        stmt = stmt.options(
            selectinload(Deal.answers),
            selectinload(Deal.meetings),
            selectinload(Deal.objections),
            selectinload(Deal.history),
        )
    if lock:
        stmt = stmt.with_for_update()
    deal = (await session.execute(stmt)).scalar_one_or_none()
    if deal is None:
        raise not_found("deal", deal_id)
    return deal


async def list_deals(
    session: AsyncSession,
    *,
    prospect_id: str | None = None,
    stage: str | None = None,
    limit: int = 100,
    offset: int = 0,
    rep_id: str | None = None,
    after: str | None = None,
    anchor: tuple[datetime, str] | None = None,
) -> Page[Deal]:
    """Newest first, one page (shared.paging): `after` the previous page's last deal (or its
    `anchor`, (created_at, id)), so deals opened meanwhile shift nothing; `offset` is kept for
    the callers that page by it."""
    stmt = select(Deal).offset(offset)
    if prospect_id is not None:
        stmt = stmt.where(Deal.prospect_id == prospect_id)
    if rep_id is not None:
        stmt = stmt.where(Deal.rep_id == rep_id)
    if stage is not None:
        stmt = stmt.where(Deal.stage == stage)
    order = [Deal.created_at, Deal.id]
    return await page(
        session, stmt, order, after=after, limit=limit, what="deal", descending=True, anchor=anchor
    )


def require_stage(deal: Deal, allowed: Sequence[str], action: str) -> None:
    """409 unless the deal is open and in one of `allowed` (none: any open stage fails)."""
    if deal.is_closed:
        raise conflict(
            "already_closed",
            f"deal {deal.id} is already {deal.stage}",
            [{"field": "stage", "problem": deal.stage}],
        )
    if deal.stage not in allowed:
        raise conflict(
            "invalid_stage",
            f"deal {deal.id} is {deal.stage}: {action} needs it to be "
            + " or ".join(str(s) for s in allowed),
            [{"field": "stage", "problem": deal.stage}],
        )


# --- opening and the qualification deadline (journey activities) -------------------------------


async def find_deal_by_journey(session: AsyncSession, journey_id: str) -> Deal | None:
    stmt = select(Deal).where(Deal.journey_id == journey_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def open_deal(session: AsyncSession, req: OpenDealRequest, run_id: str | None = None) -> Deal:
    """The journey's deal, created on first call (a retry finds the same row); `run_id`: the
    Temporal run opening it."""
    existing = await find_deal_by_journey(session, req.journey_id)
    if existing is not None:
        return existing
    deal = Deal(
        prospect_id=req.prospect_id,
        journey_id=req.journey_id,
        journey_run_id=run_id,
        rep_id=req.rep_id,
        source=req.source,
        stage=Stage.QUALIFYING,
        qualification_reasons=[],
    )
    # the journey opens its deal while the prospect books through the link (which opens it when
    # they book first): the one that lost takes the winner's deal (it was a 500 on the booking page)
    deal, opened = await insert_or_winner(
        session, deal, lambda: find_deal_by_journey(session, req.journey_id)
    )
    if not opened:
        return deal
    history.opened(deal, req.cause, session)
    await session.flush()
    return deal


async def expire_qualification(session: AsyncSession, deal_id: str) -> Deal:
    """Disqualify a deal still waiting for its qualification; any recorded outcome stands."""
    return await time_out_qualification(session, deal_id, Stage.DISQUALIFIED, QUALIFICATION_TIMEOUT)


async def time_out_qualification(
    session: AsyncSession, deal_id: str, outcome: str, cause: str
) -> Deal:
    """The cadence's outcome for a deal nobody qualified in time (disqualified or nurture),
    recorded with its cause; a verdict recorded before the deadline stands."""
    if outcome not in TIMEOUT_OUTCOMES:
        raise invalid("outcome", f"must be one of {', '.join(TIMEOUT_OUTCOMES)}, not {outcome!r}")
    deal = await get_deal(session, deal_id, lock=True)
    if deal.stage == Stage.QUALIFYING:
        history.move(deal, outcome, cause, session)
        deal.qualified = False
        deal.qualification_reasons = [cause]
        deal.close_reason = cause
        deal.closed_at = utcnow()
        await session.flush()
    return deal


# --- the prospect's rep -------------------------------------------------------------------------


async def move_rep(session: AsyncSession, prospect_id: str, rep_id: str) -> int:
    """The prospect has a new rep: their open deals are theirs now (the old rep can no longer
    work or close them), and so are their live booking links: a link in an email sent before
    books the new rep's free times, never the old rep's calendar (the new rep would be double
    booked). Closed deals keep the rep who closed them. Idempotent; the deals moved."""
    await session.execute(
        update(BookingLink)
        .where(
            BookingLink.prospect_id == prospect_id,
            BookingLink.revoked_at.is_(None),
            BookingLink.rep_id != rep_id,
        )
        .values(rep_id=rep_id)
        .execution_options(synchronize_session=False)
    )
    await hold_signed(session, prospect_id, rep_id=rep_id)  # and those signed before
    moved = await session.execute(
        update(Deal)
        .where(
            Deal.prospect_id == prospect_id,
            Deal.stage.not_in(CLOSED_STAGES),
            Deal.rep_id.is_distinct_from(rep_id),
        )
        .values(rep_id=rep_id)
        .execution_options(synchronize_session=False)
    )
    # an UPDATE's result is a CursorResult (it has the row count)
    return int(cast(CursorResult[Any], moved).rowcount or 0)


# --- editing ------------------------------------------------------------------------------------


async def patch_deal(session: AsyncSession, deal_id: str, changes: dict[str, Any]) -> Deal:
    deal = await get_deal(session, deal_id, lock=True)
    if deal.is_closed:
        require_stage(deal, (), "editing")
    if "framework" in changes:
        await _choose_framework(session, deal, changes["framework"] or DEFAULT_FRAMEWORK.name)
    if changes.get("value") is not None and not (changes.get("currency") or deal.currency):
        raise invalid("currency", "required when value is given")
    for key in ("value", "currency", "expected_close_date", "segment", "decision_deadline"):
        if key in changes:
            setattr(deal, key, changes[key])
    await session.flush()
    return deal


async def _choose_framework(session: AsyncSession, deal: Deal, name: str) -> None:
    if name == (deal.framework or DEFAULT_FRAMEWORK.name):
        return
    if deal.stage != Stage.QUALIFYING:
        raise conflict(
            "invalid_stage",
            f"deal {deal.id} is {deal.stage}: the framework is chosen while qualifying",
            [{"field": "stage", "problem": deal.stage}],
        )
    try:
        await get_framework(session, name)
    except AppError as err:
        raise invalid("framework", f"unknown framework {name!r}") from err
    deal.framework = name
