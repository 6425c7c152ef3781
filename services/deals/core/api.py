"""Routes on the deal record: list, read, edit; deals per source; and what other services ask of
deals about a prospect (its timeline, its erasure). Thin: validate, call a use case, commit,
then signal.

The commit comes before the signal, so the journey never hears of a fact the database lacks.
If the signal fails after the commit, the client retries the edit and it is signalled again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from temporalio.service import RPCError

from services.deals.core import erasure, schemas, timeline
from services.deals.core import service as svc
from services.deals.core import source_analytics as by_source
from services.deals.core.runs import signal_deal
from services.deals.meetings.invites import invite_hand_over, pin_uid
from services.deals.meetings.service import hand_over, handed_over_meetings
from shared.access import OwnRows
from shared.auth import ApiKey, require_api_key
from shared.bounds import INT32_MAX
from shared.contracts.journey import DecisionDeadline
from shared.contracts.names import Sig
from shared.db import Session
from shared.erasure import ErasureOrder, ErasureResult
from shared.errors import AppError
from shared.ids import IdFilter
from shared.paging import After, Linked
from shared.rep_moves import RepMove, RepMoved
from shared.reporting import PeriodFrom, PeriodTo, reporting_window

deals = APIRouter(prefix="/deals", tags=["deals"])
analytics = APIRouter(prefix="/analytics", tags=["analytics"])
internal = APIRouter(dependencies=[Depends(require_api_key)])


@deals.get("", response_model=list[schemas.Deal])
async def list_deals(
    _: ApiKey,
    session: Session,
    own: OwnRows,
    link: Linked,
    prospect_id: IdFilter = None,
    stage: schemas.DealStage | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
    after: After = None,
) -> object:
    """Newest first; `after` (the Link header's cursor) pages on without skipping or repeating
    a deal while deals are opened or erased (`offset` shifts with every new deal)."""
    deals = await svc.list_deals(
        session,
        prospect_id=prospect_id,
        stage=stage,
        limit=limit,
        offset=offset,
        rep_id=own,
        after=after,
    )
    return link(deals)


@deals.get("/{deal_id}", response_model=schemas.DealDetail)
async def get_deal(deal_id: str, _: ApiKey, session: Session) -> object:
    return await svc.get_deal(session, deal_id, detail=True)


@deals.patch("/{deal_id}", response_model=schemas.Deal)
async def patch_deal(
    deal_id: str, body: schemas.DealPatch, request: Request, _: ApiKey, session: Session
) -> object:
    """Value, currency, expected close date, segment, decision deadline, and (while
    qualifying) the framework. A decision deadline given (or cleared) is signalled."""
    changes = body.model_dump(exclude_unset=True)
    deal = await svc.patch_deal(session, deal_id, changes)
    await session.commit()
    if "decision_deadline" in changes:
        deadline = deal.decision_deadline
        await signal_deal(
            request.app.state.temporal,
            deal,
            Sig.DECISION_DEADLINE,
            DecisionDeadline(deal.id, deadline.isoformat() if deadline else None),
        )
    return deal


@analytics.get("/sources", response_model=schemas.SourceAnalytics, response_model_by_alias=True)
async def source_analytics(
    _: ApiKey,
    session: Session,
    start: PeriodFrom = None,
    end: PeriodTo = None,
) -> schemas.SourceAnalytics:
    """Deals opened in [from, to) per prospect source, with meetings booked and wins."""
    start, end = reporting_window(start, end)
    counts = await by_source.counts_by_source(session, start, end)
    return schemas.SourceAnalytics(period_from=start, period_to=end, sources=counts)


@internal.post("/internal/erasures", tags=["erasure"])
async def erasure_order(order: ErasureOrder, request: Request, session: Session) -> ErasureResult:
    try:
        await erasure.forget_invitations(session, request.app.state.temporal, order.prospect_id)
    except RPCError as err:
        raise AppError(503, "temporal_unreachable", f"invitations not stopped yet: {err}") from err
    deleted = await erasure.erase_prospect(session, order.prospect_id)
    await session.commit()
    return ErasureResult(service="deals", erasure_id=order.erasure_id, deleted=deleted)


@internal.post("/internal/prospects/{prospect_id}/rep", tags=["deals"])
async def move_rep(prospect_id: str, body: RepMove, request: Request, session: Session) -> RepMoved:
    """The prospect was reassigned (prospecting's outbox, retried until 2xx): their open deals
    go to the new rep, with their meetings' slots and the prospect's booking links; each
    meeting moved sends its update and the former rep's cancellation."""
    await hand_over(session, prospect_id, body.rep_id)
    moved = await svc.move_rep(session, prospect_id, body.rep_id)
    handed = await handed_over_meetings(session, prospect_id, body.rep_id)
    for _, meeting in handed:
        pin_uid(request, meeting)  # one invited before UIDs were kept: as it was computed
    await session.commit()
    await invite_hand_over(request, session, handed)
    return RepMoved(prospect_id=prospect_id, rep_id=body.rep_id, moved=moved)


@internal.get("/internal/prospects/{prospect_id}/timeline", tags=["timeline"])
async def prospect_timeline(prospect_id: str, session: Session) -> list[dict[str, Any]]:
    """This service's events about the prospect, in no particular order."""
    return await timeline.events(session, prospect_id)


routers = [deals, analytics, internal]
