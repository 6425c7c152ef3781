"""Sender mailboxes: the From identities emails rotate over, each with its own caps."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.outreach import models
from services.outreach.senders import service as senders
from shared.auth import require_api_key
from shared.db import Session
from shared.people import normalize_email

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["senders"])
MAX_CAP = 1_000_000


class SenderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_address: str = Field(max_length=320, description="the mailbox address emails come from")
    display_name: str = Field("", max_length=200, description="name shown beside the address")
    daily_cap: int = Field(0, ge=0, le=MAX_CAP, description="per rolling 24 h; 0: no cap")
    hourly_cap: int = Field(0, ge=0, le=MAX_CAP, description="per rolling hour; 0: no cap")
    active: bool = Field(True, description="inactive senders send nothing")

    @field_validator("from_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("display_name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("must be a single line")
        return value.strip()


class Sender(SenderIn):
    model_config = ConfigDict(from_attributes=True)
    id: str
    last_used_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_last_hour: int = Field(0, description="emails that took a slot of this sender")
    sent_last_day: int = 0


def _out(row: models.Sender, counts: dict[str, tuple[int, int]]) -> Sender:
    hour, day = counts.get(row.id, (0, 0))
    return Sender.model_validate(row).model_copy(
        update={"sent_last_hour": hour, "sent_last_day": day}
    )


@router.post("/senders", status_code=201, response_model=Sender)
async def create_sender(body: SenderIn, session: Session) -> Sender:
    row = await senders.create_sender(session, body.model_dump())
    await session.commit()
    return _out(row, {})


@router.get("/senders", response_model=list[Sender])
async def list_senders(session: Session) -> list[Sender]:
    counts = await senders.usage(session, datetime.now(UTC))
    return [_out(row, counts) for row in await senders.list_senders(session)]


@router.get("/senders/{sender_id}", response_model=Sender)
async def get_sender(sender_id: str, session: Session) -> Sender:
    row = await senders.get_sender(session, sender_id)
    return _out(row, await senders.usage(session, datetime.now(UTC)))


@router.put("/senders/{sender_id}", response_model=Sender)
async def update_sender(sender_id: str, body: SenderIn, session: Session) -> Sender:
    """Replace a sender's settings; sends already made keep the sender they went out from."""
    row = await senders.update_sender(session, sender_id, body.model_dump())
    await session.commit()
    return _out(row, await senders.usage(session, datetime.now(UTC)))
