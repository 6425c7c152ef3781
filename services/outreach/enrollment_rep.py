"""Prospecting's reassignment reaches the enrolment: POST /internal/prospects/{id}/rep.

The enrolment's rep_id is what pausing a rep's journeys selects by, so it must follow the
prospect. Called by prospecting's outbox relay (retried until 2xx); setting the same rep again
changes nothing. The running journey's contact (the rep's name in templates) is a snapshot
taken at enrolment and is not changed here; new rep tasks already go to the prospect's current
rep (create_rep_task asks prospecting).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import update

from services.outreach import models
from shared.auth import require_api_key
from shared.db import Session

router = APIRouter(dependencies=[Depends(require_api_key)])


class RepChange(BaseModel):
    rep_id: str = Field(min_length=1, max_length=64)


class RepChanged(BaseModel):
    prospect_id: str
    rep_id: str
    enrollments: int = Field(description="enrolments updated (0: not enrolled, or already)")


@router.post("/internal/prospects/{prospect_id}/rep", tags=["enrollments"])
async def change_rep(prospect_id: str, body: RepChange, session: Session) -> RepChanged:
    e = models.Enrollment
    result = await session.execute(
        update(e)
        .where(e.prospect_id == prospect_id, e.rep_id.is_distinct_from(body.rep_id))
        .values(rep_id=body.rep_id)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return RepChanged(prospect_id=prospect_id, rep_id=body.rep_id, enrollments=count)
