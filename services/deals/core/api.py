"""HTTP routes of the deals service. Thin: validate, call a use case, commit, then signal.

The commit comes before the signal, so the journey never hears of a fact the database lacks.
If the signal fails after the commit, the client retries: the same qualification or close is
answered again (nothing new written) and signalled once more.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from services.deals.core import schemas
from services.deals.core import service as svc
from services.deals.meetings import service as mtg
from services.deals.models import Deal, Meeting
from services.deals.playbook import ranking as obj
from services.deals.playbook.matching import SLUG_PATTERN
from services.deals.playbook.ranking import ResponseStats
from services.deals.qualification.scoring import DEFAULT_FRAMEWORK
from shared.auth import ApiKey
from shared.contracts.journey import (
    DealClosed,
    DecisionDeadline,
    MeetingChanged,
    MeetingScheduled,
    ObjectionLogged,
    QualificationRecorded,
)
from shared.contracts.names import Sig
from shared.db import Session
from shared.journeys import signal_journey

deals = APIRouter(prefix="/deals", tags=["deals"])
frameworks = APIRouter(prefix="/frameworks", tags=["qualification"])
closing = APIRouter(tags=["closing"])
objections = APIRouter(prefix="/objections", tags=["objections"])
analytics = APIRouter(prefix="/analytics", tags=["analytics"])
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
    outcome = await svc.record_qualification(session, deal_id, body.answers, partial=body.partial)
    await session.commit()
    deal, verdict = outcome.deal, outcome.verdict
    if body.partial:
        # nothing decided yet: the journey waits for the decision
        return schemas.QualificationResult(
            qualified=verdict.qualified,
            score=verdict.score,
            reasons=list(verdict.reasons),
            deal=schemas.Deal.model_validate(deal),
        )
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
    deal, meeting, passed_gate = await svc.schedule_meeting(
        session, deal_id, body.starts_at, body.title, body.duration_minutes
    )
    await session.commit()
    if passed_gate:
        await _signal_qualified(request, deal)
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        Sig.MEETING_SCHEDULED,
        MeetingScheduled(
            meeting.id, deal.id, meeting.starts_at.isoformat(), meeting.title, meeting.revision
        ),
    )
    return meeting


@deals.post("/{deal_id}/meetings/{meeting_id}/reschedule", response_model=schemas.Meeting)
async def reschedule_meeting(
    deal_id: str,
    meeting_id: str,
    body: schemas.MeetingReschedule,
    request: Request,
    _: ApiKey,
    session: Session,
) -> object:
    """Move a scheduled meeting: its pending reminders are replaced by ones for the new time
    and the rep gets a new preparation task. 409 when held, missed or cancelled."""
    deal, meeting, _changed = await mtg.reschedule(session, deal_id, meeting_id, body.starts_at)
    await session.commit()
    await _signal_meeting(request, Sig.MEETING_RESCHEDULED, deal, meeting)
    return meeting


@deals.post("/{deal_id}/meetings/{meeting_id}/cancel", response_model=schemas.Meeting)
async def cancel_meeting(
    deal_id: str,
    meeting_id: str,
    body: schemas.MeetingCancel,
    request: Request,
    _: ApiKey,
    session: Session,
) -> object:
    """Cancel a scheduled meeting: its reminders stop. 409 when it was held or missed."""
    deal, meeting = await mtg.cancel(session, deal_id, meeting_id, body.reason.strip())
    await session.commit()
    await _signal_meeting(request, Sig.MEETING_CANCELLED, deal, meeting)
    return meeting


@deals.post("/{deal_id}/meetings/{meeting_id}/held", response_model=schemas.Meeting)
async def mark_meeting_held(
    deal_id: str, meeting_id: str, request: Request, _: ApiKey, session: Session
) -> object:
    """The meeting took place (only once it has started). 409 when cancelled or a no-show."""
    deal, meeting = await mtg.mark(session, deal_id, meeting_id, mtg.HELD)
    await session.commit()
    await _signal_meeting(request, Sig.MEETING_HELD, deal, meeting)
    return meeting


@deals.post("/{deal_id}/meetings/{meeting_id}/no-show", response_model=schemas.Meeting)
async def mark_meeting_no_show(
    deal_id: str, meeting_id: str, request: Request, _: ApiKey, session: Session
) -> object:
    """The prospect did not come (only once it has started): the rep gets a follow-up task and
    the prospect a re-booking message. 409 when cancelled or held."""
    deal, meeting = await mtg.mark(session, deal_id, meeting_id, mtg.NO_SHOW)
    await session.commit()
    await _signal_meeting(request, Sig.MEETING_NO_SHOW, deal, meeting)
    return meeting


async def _signal_meeting(request: Request, signal: str, deal: Deal, meeting: Meeting) -> None:
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        signal,
        MeetingChanged(
            meeting.id,
            deal.id,
            meeting.starts_at.isoformat(),
            meeting.title,
            meeting.revision,
            meeting.cancel_reason or "",
        ),
    )


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
        responses=[_ranked(r) for r in logged.ranked],
        matched_triggers=logged.matched_triggers,
    )


def _ranked(r: ResponseStats) -> schemas.RankedResponse:
    return schemas.RankedResponse(
        response=r.response,
        used=r.used,
        resolved=r.resolved,
        won=r.won,
        resolution_rate=r.resolution_rate,
    )


@objections.post("/{objection_id}/outcome", response_model=schemas.ObjectionOutcomeOut)
async def record_objection_outcome(
    objection_id: str, body: schemas.ObjectionOutcomeCreate, _: ApiKey, session: Session
) -> schemas.ObjectionOutcomeOut:
    """Which prepared response the rep used and whether it resolved the objection; feeds the
    ranking of responses. Not signalled: the journey does not act on it."""
    objection, outcome = await obj.record_outcome(
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
    _: ApiKey, session: Session, segment: str | None = None
) -> schemas.ObjectionAnalytics:
    """Most frequent objections by stage and by deal segment, resolution rate per response."""
    result = await obj.analytics(session, segment)
    by_stage: dict[str, list[schemas.CategoryCount]] = {}
    for c in result.by_stage:
        by_stage.setdefault(c.group, []).append(
            schemas.CategoryCount(category=c.category, count=c.count)
        )
    by_segment: dict[str, list[schemas.CategoryCount]] = {}
    for c in result.by_segment:
        by_segment.setdefault(c.group, []).append(
            schemas.CategoryCount(category=c.category, count=c.count)
        )
    return schemas.ObjectionAnalytics(
        by_stage=[schemas.StageObjections(stage=k, objections=v) for k, v in by_stage.items()],
        by_segment=[
            schemas.SegmentObjections(segment=k, objections=v) for k, v in by_segment.items()
        ],
        responses=[
            schemas.ResponseRecord(category=cat, **_ranked(s).model_dump())
            for cat, s in result.responses
        ],
    )


@deals.post("/{deal_id}/close", response_model=schemas.Deal)
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
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        Sig.DEAL_CLOSED,
        DealClosed(deal.id, won, deal.close_reason or body.reason),
    )
    return deal


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
        await signal_journey(
            request.app.state.temporal,
            deal.prospect_id,
            Sig.DECISION_DEADLINE,
            DecisionDeadline(deal.id, deadline.isoformat() if deadline else None),
        )
    return deal


@deals.post("/{deal_id}/stage", response_model=schemas.Deal)
async def move_stage(
    deal_id: str, body: schemas.StageMove, request: Request, _: ApiKey, session: Session
) -> object:
    """Move an open deal on; leaving qualifying passes the gate or answers 409 with the
    missing or failing criteria."""
    deal, passed_gate = await svc.move_stage(session, deal_id, body.stage)
    await session.commit()
    if passed_gate:
        await _signal_qualified(request, deal)
    return deal


@deals.post("/{deal_id}/reopen", response_model=schemas.Deal)
async def reopen_deal(deal_id: str, _: ApiKey, session: Session) -> object:
    """Back to the stage before closing. Deliberately not signalled: a finished journey is not
    restarted, the reopened deal is worked by hand."""
    deal = await svc.reopen_deal(session, deal_id)
    await session.commit()
    return deal


async def _signal_qualified(request: Request, deal: Deal) -> None:
    await signal_journey(
        request.app.state.temporal,
        deal.prospect_id,
        Sig.QUALIFICATION_RECORDED,
        QualificationRecorded(deal.id, True, list(deal.qualification_reasons)),
    )


# --- frameworks ---------------------------------------------------------------------------------


@frameworks.get("", response_model=list[schemas.FrameworkDetail])
async def list_frameworks(_: ApiKey, session: Session) -> object:
    return await svc.list_frameworks(session)


@frameworks.get("/{name}", response_model=schemas.FrameworkDetail)
async def get_framework_detail(name: str, _: ApiKey, session: Session) -> object:
    return await svc.describe_framework(session, name)


@frameworks.post("", response_model=schemas.FrameworkDetail, status_code=status.HTTP_201_CREATED)
async def create_framework(body: schemas.FrameworkCreate, _: ApiKey, session: Session) -> object:
    out = await svc.save_framework(
        session, body.name, body.label, body.pass_score, _criteria(body), create=True
    )
    await session.commit()
    return out


@frameworks.put("/{name}", response_model=schemas.FrameworkDetail)
async def put_framework(
    name: str, body: schemas.FrameworkPut, _: ApiKey, session: Session
) -> object:
    out = await svc.save_framework(
        session, name, body.label, body.pass_score, _criteria(body), create=False
    )
    await session.commit()
    return out


def _criteria(body: schemas.FrameworkPut) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in body.criteria]


# --- closing ------------------------------------------------------------------------------------


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
async def get_pipeline(_: ApiKey, session: Session, rep_id: str | None = None) -> object:
    """Deals per stage (open and closed) with counts and value sums per currency."""
    rows = await svc.pipeline(session, rep_id)
    return schemas.Pipeline(
        stages=[schemas.PipelineStage(stage=r.stage, count=r.count, value=r.value) for r in rows],
        total=sum(r.count for r in rows),
    )


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
        session, category, body.label, body.triggers, body.answers, dict(body.stage_answers)
    )
    await session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return entry


@playbook.delete("/{category}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_playbook_entry(category: CategoryPath, _: ApiKey, session: Session) -> None:
    await svc.delete_playbook_entry(session, category)


routers = [deals, qualification, frameworks, closing, playbook, objections, analytics]
