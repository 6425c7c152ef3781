"""Consent's API models: a person's record across channels, suppressions, do-not-contact."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from services.outreach.consent.service import parse_dnc
from shared.requests import WriteModel


class Suppression(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int = Field(description="GET /suppressions?after=<id> pages on from here")
    channel: str
    address: str
    reason: str
    created_at: datetime


class ChannelConsent(BaseModel):
    status: Literal["opted_in", "opted_out"] = Field(description="the person's choice")
    reason: str = Field("", description="why it last changed (SMS STOP, unsubscribe link, ...)")
    changed_at: datetime | None = None
    address: str | None = Field(None, description="the address this channel reaches them at")
    blocked: str | None = Field(
        None,
        description="why a send to that address would be refused now (opt-out, suppressed "
        "address, do-not-contact entry); null when it would go out",
    )


# a suppression as the consent view shows it: its own name in the OpenAPI document (no
# docstring: that would become the schema's description)
class SuppressedAddress(Suppression):
    pass


class DncEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: Literal["email", "phone", "domain"]
    value: str
    reason: str
    created_at: datetime


class ConsentView(BaseModel):
    prospect_id: str
    email: ChannelConsent
    sms: ChannelConsent
    suppressed_addresses: list[SuppressedAddress]
    do_not_contact: list[DncEntry] = Field(description="entries that cover this person")


class DncIn(WriteModel):
    value: str = Field(
        max_length=320,
        description="an email address, a phone number in E.164 (+14155550100) or a domain "
        "(example.com: every address at it and its subdomains)",
        examples=["ceo@example.com", "+14155550100", "example.com"],
    )
    reason: str = Field("", max_length=200)

    @field_validator("value")
    @classmethod
    def _valid(cls, value: str) -> str:
        try:
            parse_dnc(value)
        except ValueError as err:
            raise PydanticCustomError("do_not_contact", str(err)) from err
        return value


class DncAdded(DncEntry):
    journeys_stopped: int = Field(
        0, description="journeys of enrolled prospects this entry covers, told to stop by this call"
    )
