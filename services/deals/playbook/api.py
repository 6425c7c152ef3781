"""Objection and playbook routes: log an objection on a deal, record which response worked, read
the objection analytics, and edit the playbook. Thin: validate, call a use case, commit, then
signal.

The commit comes before the signal, so the journey never hears of a fact the database lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from services.deals.core.runs import signal_deal
from services.deals.core.schemas import SLUG_PATTERN, Objection
from services.deals.playbook import analytics as stats
from services.deals.playbook import schemas
from services.deals.playbook import service as svc
from services.deals.playbook.ranking import ResponseStats
from shared.audit import request_actor
from shared.auth import ApiKey
from shared.contracts.journey import ObjectionLogged
from shared.contracts.names import Sig
from shared.db import Session
from shared.idempotency import IdempotentResume, remember, resumed

deals = APIRouter(prefix="/deals", tags=["deals"])
objections = APIRouter(prefix="/objections", tags=["objections"])
analytics = APIRouter(prefix="/analytics", tags=["analytics"])
playbook = APIRouter(prefix="/playbook", tags=["playbook"])

CategoryPath = Annotated[str, Path(pattern=SLUG_PATTERN, description="playbook slug")]


# --- objections ---------------------------------------------------------------------------------


@deals.post(
    "/{deal_id}/objections",
    response_model=schemas.ObjectionLogged,
    status_code=status.HTTP_201_CREATED,
    dependencies=[IdempotentResume],
)
async def log_objection(
    deal_id: str, body: schemas.ObjectionCreate, request: Request, _: ApiKey, session: Session
) -> schemas.ObjectionLogged:
    """The same text may be logged twice on purpose: a retry sends an Idempotency-Key. A retry
    of one whose signal failed after it was stored tells the journey of that objection."""
    earlier = resumed(request)
    if earlier is None:
        logged = await svc.log_objection(session, deal_id, body.text, body.category)
        remember(request, objection_id=logged.objection.id)
        await session.commit()
    else:
        logged = await svc.logged_objection(session, earlier["objection_id"])
    objection = logged.objection
    await signal_deal(
        request.app.state.temporal,
        logged.deal,
        Sig.OBJECTION_LOGGED,
        ObjectionLogged(
            objection.id,
            logged.deal.id,
            objection.category,
            objection.text,
            logged.answers,
            request_actor(request),
        ),
    )
    return schemas.ObjectionLogged(
        objection=Objection.model_validate(objection),
        category=objection.category,
        answers=logged.answers,
        responses=[_ranked(r) for r in logged.ranked],
        matched_triggers=logged.matched_triggers,
    )


def _ranked(r: ResponseStats) -> schemas.RankedResponse:
    return schemas.RankedResponse.model_validate(r, from_attributes=True)


@objections.post("/{objection_id}/outcome", response_model=schemas.ObjectionOutcomeOut)
async def record_objection_outcome(
    objection_id: str, body: schemas.ObjectionOutcomeCreate, _: ApiKey, session: Session
) -> schemas.ObjectionOutcomeOut:
    """Which prepared response the rep used and whether it resolved the objection; feeds the
    ranking of responses. Not signalled: the journey does not act on it."""
    objection, outcome = await svc.record_outcome(
        session, objection_id, body.response, body.resolved
    )
    await session.commit()
    return schemas.ObjectionOutcomeOut(
        objection_id=objection.id,
        category=objection.category,
        response=outcome.response,
        resolved=outcome.resolved,
    )


@analytics.get("/objections", response_model=schemas.ObjectionAnalytics)
async def objection_analytics(
    _: ApiKey, session: Session, segment: Annotated[str | None, Query(max_length=200)] = None
) -> schemas.ObjectionAnalytics:
    """Most frequent objections by stage and by deal segment, resolution rate per response."""
    result = await stats.analytics(session, segment)
    return schemas.ObjectionAnalytics(
        by_stage=[
            schemas.StageObjections(stage=k, objections=v)
            for k, v in _by_group(result.by_stage).items()
        ],
        by_segment=[
            schemas.SegmentObjections(segment=k, objections=v)
            for k, v in _by_group(result.by_segment).items()
        ],
        responses=[
            schemas.ResponseRecord(category=cat, **_ranked(s).model_dump())
            for cat, s in result.responses
        ],
    )


def _by_group(counts: Iterable[stats.Counted]) -> dict[str, list[schemas.CategoryCount]]:
    """Counts per group (stage or segment), in the order they come."""
    grouped: dict[str, list[schemas.CategoryCount]] = {}
    for c in counts:
        grouped.setdefault(c.group, []).append(
            schemas.CategoryCount(category=c.category, count=c.count)
        )
    return grouped


# --- playbook -----------------------------------------------------------------------------------


@playbook.get("", response_model=list[schemas.PlaybookEntry])
async def list_playbook(_: ApiKey, session: Session) -> object:
    return await svc.list_playbook(session)


@playbook.get("/{category}", response_model=schemas.PlaybookEntry)
async def get_playbook_entry(category: CategoryPath, _: ApiKey, session: Session) -> object:
    return await svc.get_playbook_entry(session, category)


@playbook.put(
    "/{category}",
    response_model=schemas.PlaybookEntry,
    responses={201: {"description": "created"}, 200: {"description": "replaced"}},
)
async def put_playbook_entry(
    category: CategoryPath,
    body: schemas.PlaybookEntryPut,
    response: Response,
    _: ApiKey,
    session: Session,
) -> object:
    entry, created = await svc.put_playbook_entry(
        session,
        category,
        body.label,
        body.triggers,
        body.answers,
        {stage: texts for stage, texts in body.stage_answers.items()},
    )
    await session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return entry


@playbook.delete("/{category}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_playbook_entry(category: CategoryPath, _: ApiKey, session: Session) -> None:
    await svc.delete_playbook_entry(session, category)


routers = [deals, playbook, objections, analytics]
