"""Closing routes: move a deal's stage, close it won or lost, reopen it, the close-reason list
and the pipeline. Thin: validate, call a use case, commit, then signal.

The journey owns the prospect's stage (issue 10): every move of a deal reaches it (the gate pass
as a verdict, a move between presenting, objections and closing as deal_stage_moved, a close as
deal_closed), and the journey records it in the prospect's stage history. It reaches the run of
the journey that carries the deal only, never a later run (services.deals.core.runs).

The commit comes before the signal, so the journey never hears of a fact the database lacks.
If the signal fails after the commit, the client retries: the same close is answered again
(nothing new written) and signalled once more.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.deals.closing import reopen, schemas
from services.deals.closing import service as svc
from services.deals.core.runs import signal_deal
from services.deals.core.schemas import Deal
from services.deals.qualification.signals import signal_gate_passed
from shared.audit import request_actor
from shared.auth import ApiKey
from shared.contracts.journey import DealClosed, DealStageMoved, Stage
from shared.contracts.names import Sig
from shared.db import Session
from shared.idempotency import IdempotentRepeat
from shared.ids import IdFilter

deals = APIRouter(prefix="/deals", tags=["deals"])
closing = APIRouter(tags=["closing"])


@deals.post(
    "/{deal_id}/close",
    response_model=Deal,
    # a late retry re-closed a deal reopened since; the same close again writes nothing
    dependencies=[IdempotentRepeat],
)
async def close_deal(
    deal_id: str, body: schemas.DealClose, request: Request, _: ApiKey, session: Session
) -> object:
    won = body.outcome == "won"
    outcome = await svc.close_deal(
        session,
        deal_id,
        won=won,
        reason=body.reason,
        value=body.value,
        currency=body.currency,
        reason_code=body.reason_code,
    )
    await session.commit()
    deal = outcome.deal
    await signal_deal(
        request.app.state.temporal,
        deal,
        Sig.DEAL_CLOSED,
        DealClosed(deal.id, won, deal.close_reason or body.reason, request_actor(request)),
    )
    return deal


@deals.post(
    "/{deal_id}/stage",
    response_model=Deal,
    # a late retry put the deal back to an earlier stage; the same move again writes nothing
    dependencies=[IdempotentRepeat],
)
async def move_stage(
    deal_id: str, body: schemas.StageMove, request: Request, _: ApiKey, session: Session
) -> object:
    """Move an open deal on; leaving qualifying passes the gate or answers 409 with the
    missing or failing criteria. The journey hears the move, and the verdict when the move
    passed the gate. Repeated (the retry a 503 asks for), it writes nothing and tells the
    journey all of that again, the verdict too (a stage or a verdict it already has changes
    nothing there)."""
    deal, passed_gate = await svc.move_stage(session, deal_id, body.stage)
    await session.commit()
    if passed_gate:
        await signal_gate_passed(request, deal)
    if not passed_gate or deal.stage != Stage.PRESENTING:
        # past the gate straight to objections or closing: presenting first, then the move
        await signal_deal(
            request.app.state.temporal,
            deal,
            Sig.DEAL_STAGE_MOVED,
            DealStageMoved(deal.id, deal.stage, actor=request_actor(request)),
        )
    return deal


@deals.post(
    "/{deal_id}/reopen",
    response_model=Deal,
    # a late retry reopened a deal closed since; the same reopen again changes nothing
    dependencies=[IdempotentRepeat],
)
async def reopen_deal(deal_id: str, request: Request, _: ApiKey, session: Session) -> object:
    """Back to the stage before closing. The deal's own journey run follows
    (services.deals.closing.reopen): a running one (a won deal's referrals) goes back to the
    deal's stage, one that ended with the close comes back as a new run at presenting with this
    deal; while another run of the prospect's journey runs, 409 and nothing changes. Repeated
    on a reopened deal nothing has moved since, it changes nothing and does what is left of the
    journey's part (after a 503 `journey_not_restarted`, say)."""
    deal, repeat = await svc.reopen_deal(session, deal_id)
    state = request.app.state
    follower = await reopen.plan_reopen(state.temporal, deal, repeat=repeat)
    await session.commit()
    await reopen.follow(
        state.temporal, state.settings, session, deal, follower, request_actor(request)
    )
    return deal


@closing.get("/close-reasons", response_model=list[schemas.CloseReasonItem])
async def list_close_reasons(_: ApiKey, session: Session) -> object:
    return await svc.list_close_reasons(session)


@closing.put("/close-reasons", response_model=list[schemas.CloseReasonItem])
async def put_close_reasons(body: schemas.CloseReasonsPut, _: ApiKey, session: Session) -> object:
    reasons = await svc.put_close_reasons(
        session, [(r.outcome, r.code, r.label) for r in body.reasons]
    )
    await session.commit()
    return reasons


@closing.get("/pipeline", response_model=schemas.Pipeline)
async def get_pipeline(_: ApiKey, session: Session, rep_id: IdFilter = None) -> object:
    """Deals per stage (open and closed) with counts and value sums per currency."""
    rows = await svc.pipeline(session, rep_id)
    return schemas.Pipeline(
        stages=[schemas.PipelineStage(stage=r.stage, count=r.count, value=r.value) for r in rows],
        total=sum(r.count for r in rows),
    )


routers = [deals, closing]
