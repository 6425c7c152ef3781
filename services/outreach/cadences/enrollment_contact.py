"""How to reach a prospect changed: POST /internal/prospects/{id}/contact.

Prospecting's outbox calls it (retried until 2xx) when an import fills in a known prospect's
email, phone or time zone. The call names the prospect only: outreach reads them as they are now
from prospecting, so no address waits in the outbox. The enrollment rows take the new addresses
(the do-not-contact list finds journeys by them), and the running journey is told (signal
contact_changed): its next sends go there, in the prospect's zone as resolved now, inside that
zone's send window and quiet hours. A 503 when prospecting or the journey cannot be reached
makes the outbox retry.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select, update

from services.outreach import models
from services.outreach.consent import suppressions
from services.outreach.prospects import ProspectDirectory
from shared.auth import require_api_key
from shared.contracts.journey import ContactChanged
from shared.contracts.names import Sig
from shared.db import Session
from shared.errors import AppError
from shared.journeys import tell_running_journey

router = APIRouter(dependencies=[Depends(require_api_key)])


class ContactTold(BaseModel):
    prospect_id: str
    journey_told: bool


@router.post("/internal/prospects/{prospect_id}/contact", tags=["enrollments"])
async def contact_changed(prospect_id: str, request: Request, session: Session) -> ContactTold:
    directory: ProspectDirectory = request.app.state.prospects
    try:
        contact = await directory.contact(prospect_id)  # 503 when prospecting is away: retried
    except AppError as err:
        if err.status == 404:  # erased or deleted since: nobody left to reach
            return ContactTold(prospect_id=prospect_id, journey_told=False)
        raise
    e = models.Enrollment
    await session.execute(
        update(e)
        .where(e.prospect_id == prospect_id)
        .values(
            email=suppressions.normalise_address("email", contact.email) if contact.email else None,
            phone=suppressions.normalise_address("sms", contact.phone) if contact.phone else None,
        )
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    if await session.scalar(select(e.id).where(e.prospect_id == prospect_id).limit(1)) is None:
        return ContactTold(prospect_id=prospect_id, journey_told=False)
    change = ContactChanged(contact.email, contact.phone, contact.timezone, contact.zone)
    # a finished journey sends nothing more
    told = await tell_running_journey(
        request.app.state.temporal, prospect_id, (Sig.CONTACT_CHANGED, change)
    )
    return ContactTold(prospect_id=prospect_id, journey_told=told)
