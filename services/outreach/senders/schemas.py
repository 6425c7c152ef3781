"""Sender mailboxes' API models."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field, field_validator

from shared.json_schema import ONE_LINE
from shared.people import EmailText, normalize_email
from shared.requests import WriteModel

MAX_CAP = 1_000_000


class SenderIn(WriteModel):
    from_address: EmailText = Field(description="the mailbox address emails come from")
    display_name: str = Field(
        "",
        max_length=200,
        description="name shown beside the address (one line)",
        json_schema_extra={"pattern": ONE_LINE},
    )
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
