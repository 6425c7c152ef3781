"""HTTP routes of the deals service. Thin: validate, call a use case, commit, then signal.

The commit comes before the signal, so the journey never hears of a fact the database lacks.
If the signal fails after the commit, the client retries: the same qualification or close is
answered again (nothing new written) and signalled once more.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from services.deals import schemas
from services.deals import service as svc
from services.deals.playbook import SLUG_PATTERN
from services.deals.qualification import DEFAULT_FRAMEWORK
from shared.auth import ApiKey
from shared.contracts.journey import (
    DealClosed,
    MeetingScheduled,
    ObjectionLogged,
    QualificationRecorded,
)
from shared.contracts.names import Sig
from shared.db import Session
from shared.journeys import signal_journey

deals = APIRouter(prefix="/deals", tags=["deals"])
playbook = APIRouter(prefix="/playbook", tags=["playbook"])
qualification = APIRouter(prefix="/qualification", tags=["qualification"])

CategoryPath = Annotated[str, Path(pattern=SLUG_PATTERN, description="playbook slug")]


# --- deals --------------------------------------------------------------------------------------


@deals.get("", response_model=list[schemas.Deal])
async def list_deals(
    _: ApiKey,
    session: Session,
    prospect_id: str | None = None,
    stage: schemas.DealStage | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    return await svc.list_deals(
        session, prospect_id=prospect_id, stage=stage, limit=limit, offset=offset
    )


@deals.get("/{deal_id}", response_model=schemas.DealDetail)
async def get_deal(deal_id: str, _: ApiKey, session: Session) -> object:
    return await svc.get_deal(session, deal_id, detail=True)


@deals.post("/{deal_id}/qualification", response_model=schemas.QualificationResult)
async def record_qualification(
    deal_id: str, body: schemas.QualificationSubmit, request: Request, _: ApiKey, session: Session
) -> schemas.QualificationResult:
    outcome = await svc.record_qualification(session, deal_id, body.answers)
    await session.commit()
    deal, verdict = outcome.deal, outcome.verdict
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        Sig.QUALIFICATION_RECORDED,
        QualificationRecorded(deal.id, verdict.qualified, list(verdict.reasons)),
    )
    return schemas.QualificationResult(
        qualified=verdict.qualified,
        score=verdict.score,
        reasons=list(verdict.reasons),
        deal=schemas.Deal.model_validate(deal),
    )


@deals.post(
    "/{deal_id}/meetings", response_model=schemas.Meeting, status_code=status.HTTP_201_CREATED
)
async def schedule_meeting(
    deal_id: str, body: schemas.MeetingCreate, request: Request, _: ApiKey, session: Session
) -> object:
    deal, meeting = await svc.schedule_meeting(
        session, deal_id, body.starts_at, body.title, body.duration_minutes
    )
    await session.commit()
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        Sig.MEETING_SCHEDULED,
        MeetingScheduled(meeting.id, deal.id, meeting.starts_at.isoformat(), meeting.title),
    )
    return meeting


@deals.post(
    "/{deal_id}/objections",
    response_model=schemas.ObjectionLogged,
    status_code=status.HTTP_201_CREATED,
)
async def log_objection(
    deal_id: str, body: schemas.ObjectionCreate, request: Request, _: ApiKey, session: Session
) -> schemas.ObjectionLogged:
    logged = await svc.log_objection(session, deal_id, body.text, body.category)
    await session.commit()
    objection = logged.objection
    await signal_journey(
        request.app.state.temporal,
        logged.deal.prospect_id,
        Sig.OBJECTION_LOGGED,
        ObjectionLogged(
            objection.id, logged.deal.id, objection.category, objection.text, logged.answers
        ),
    )
    return schemas.ObjectionLogged(
        objection=schemas.Objection.model_validate(objection),
        category=objection.category,
        answers=logged.answers,
        matched_triggers=logged.matched_triggers,
    )


@deals.post("/{deal_id}/close", response_model=schemas.Deal)
async def close_deal(
    deal_id: str, body: schemas.DealClose, request: Request, _: ApiKey, session: Session
) -> object:
    won = body.outcome == "won"
    outcome = await svc.close_deal(
        session, deal_id, won=won, reason=body.reason, value=body.value, currency=body.currency
    )
    await session.commit()
    deal = outcome.deal
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        Sig.DEAL_CLOSED,
        DealClosed(deal.id, won, deal.close_reason or body.reason),
    )
    return deal


# --- qualification framework --------------------------------------------------------------------


@qualification.get("/framework", response_model=schemas.FrameworkOut)
async def get_framework(_: ApiKey) -> schemas.FrameworkOut:
    """The questions a rep asks, with the answer each criterion expects."""
    fw = DEFAULT_FRAMEWORK
    return schemas.FrameworkOut(
        name=fw.name,
        label=fw.label,
        pass_score=fw.pass_score,
        criteria=[
            schemas.CriterionOut(
                key=c.key,
                question=c.question,
                answer_type=c.answer_type,
                choices=list(c.choices),
                weight=c.weight,
                hint=c.hint,
            )
            for c in fw.criteria
        ],
    )


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
        session, category, body.label, body.triggers, body.answers
    )
    await session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return entry


@playbook.delete("/{category}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_playbook_entry(category: CategoryPath, _: ApiKey, session: Session) -> None:
    await svc.delete_playbook_entry(session, category)


routers = [deals, qualification, playbook]
