"""Sender mailboxes: the From identities emails rotate over, each with its own caps."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends

from services.outreach import models
from services.outreach.senders import schemas
from services.outreach.senders import service as senders
from shared.auth import require_api_key
from shared.db import Session
from shared.idempotency import Idempotent

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["senders"])


def _out(row: models.Sender, counts: dict[str, tuple[int, int]]) -> schemas.Sender:
    hour, day = counts.get(row.id, (0, 0))
    return schemas.Sender.model_validate(row).model_copy(
        update={"sent_last_hour": hour, "sent_last_day": day}
    )


@router.post("/senders", status_code=201, response_model=schemas.Sender, dependencies=[Idempotent])
async def create_sender(body: schemas.SenderIn, session: Session) -> schemas.Sender:
    row = await senders.create_sender(session, body.model_dump())
    await session.commit()
    return _out(row, {})


@router.get("/senders", response_model=list[schemas.Sender])
async def list_senders(session: Session) -> list[schemas.Sender]:
    counts = await senders.usage(session, datetime.now(UTC))
    return [_out(row, counts) for row in await senders.list_senders(session)]


@router.get("/senders/{sender_id}", response_model=schemas.Sender)
async def get_sender(sender_id: str, session: Session) -> schemas.Sender:
    row = await senders.get_sender(session, sender_id)
    return _out(row, await senders.usage(session, datetime.now(UTC)))


@router.put("/senders/{sender_id}", response_model=schemas.Sender)
async def update_sender(sender_id: str, body: schemas.SenderIn, session: Session) -> schemas.Sender:
    """Replace a sender's settings; sends already made keep the sender they went out from."""
    row = await senders.update_sender(session, sender_id, body.model_dump())
    await session.commit()
    return _out(row, await senders.usage(session, datetime.now(UTC)))
