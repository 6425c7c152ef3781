"""Qualification routes: record a deal's answers, read the default framework's questions, and
manage ops-defined frameworks. Thin: validate, call a use case, commit, then signal.

The commit comes before the signal, so the journey never hears of a fact the database lacks.
If the signal fails after the commit, the client retries: the same qualification is answered
again (nothing new written) and signalled once more.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from services.deals.core.schemas import Deal
from services.deals.qualification import frameworks as fws
from services.deals.qualification import schemas
from services.deals.qualification import service as svc
from services.deals.qualification.scoring import DEFAULT_FRAMEWORK
from services.deals.qualification.signals import signal_verdict
from shared.auth import ApiKey
from shared.db import Session
from shared.idempotency import Idempotent, IdempotentRepeat

deals = APIRouter(prefix="/deals", tags=["deals"])
qualification = APIRouter(prefix="/qualification", tags=["qualification"])
frameworks = APIRouter(prefix="/frameworks", tags=["qualification"])


@deals.post(
    "/{deal_id}/qualification",
    response_model=schemas.QualificationResult,
    dependencies=[IdempotentRepeat],  # the same answers again record them as they are
)
async def record_qualification(
    deal_id: str, body: schemas.QualificationSubmit, request: Request, _: ApiKey, session: Session
) -> schemas.QualificationResult:
    outcome = await svc.record_qualification(session, deal_id, body.answers, partial=body.partial)
    await session.commit()
    deal, verdict = outcome.deal, outcome.verdict
    # partial: nothing decided yet, the journey waits for the decision
    if not body.partial:
        await signal_verdict(request, deal, verdict.qualified, list(verdict.reasons))
    return schemas.QualificationResult(
        qualified=verdict.qualified,
        score=verdict.score,
        reasons=list(verdict.reasons),
        deal=Deal.model_validate(deal),
    )


@qualification.get("/framework", response_model=schemas.FrameworkOut)
async def get_framework(_: ApiKey) -> schemas.FrameworkOut:
    """The questions a rep asks, with the answer each criterion expects."""
    # the framework's criteria carry exactly what CriterionOut shows (and more: the rules)
    return schemas.FrameworkOut.model_validate(DEFAULT_FRAMEWORK, from_attributes=True)


@frameworks.get("", response_model=list[schemas.FrameworkDetail])
async def list_frameworks(_: ApiKey, session: Session) -> object:
    return await fws.list_frameworks(session)


@frameworks.get("/{name}", response_model=schemas.FrameworkDetail)
async def get_framework_detail(name: str, _: ApiKey, session: Session) -> object:
    return await fws.describe_framework(session, name)


@frameworks.post(
    "",
    response_model=schemas.FrameworkDetail,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Idempotent],
)
async def create_framework(body: schemas.FrameworkCreate, _: ApiKey, session: Session) -> object:
    out = await fws.save_framework(
        session, body.name, body.label, body.pass_score, _criteria(body), create=True
    )
    await session.commit()
    return out


@frameworks.put("/{name}", response_model=schemas.FrameworkDetail)
async def put_framework(
    name: str, body: schemas.FrameworkPut, _: ApiKey, session: Session
) -> object:
    out = await fws.save_framework(
        session, name, body.label, body.pass_score, _criteria(body), create=False
    )
    await session.commit()
    return out


def _criteria(body: schemas.FrameworkPut) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in body.criteria]


routers = [deals, qualification, frameworks]
