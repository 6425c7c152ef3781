"""The prospecting API's public shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.contracts.journey import Stage
from shared.people import (
    Email,
    Phone,
    RequiredEmail,
    RequiredText,
    Text,
    TimeZone,
    require_email_or_phone,
)

Source = Literal["cold", "referral", "import", "inbound"]


class RepCreate(BaseModel):
    name: RequiredText = Field(max_length=200)
    email: RequiredEmail
    phone: Phone = None


class RepBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    email: str
    phone: str | None


class Rep(RepBrief):
    created_at: datetime


class ProspectCreate(BaseModel):
    first_name: RequiredText = Field(max_length=200)
    last_name: Text = Field("", max_length=200)
    email: Email = None
    # validate_default: the "email or phone" rule must run when phone is left out
    phone: Phone = Field(None, validate_default=True)
    company: Text = Field("", max_length=200)
    title: Text = Field("", max_length=200)
    timezone: TimeZone = Field("", description="IANA zone; empty: inferred from the phone")
    source: Source = "cold"
    referrer_prospect_id: str | None = Field(None, max_length=32)
    referral_id: str | None = Field(None, max_length=32)

    _email_or_phone = field_validator("phone")(require_email_or_phone)


class Prospect(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    company: str
    title: str
    timezone: str
    source: str
    referrer_prospect_id: str | None
    referral_id: str | None
    rep_id: str | None
    rep: RepBrief | None
    stage: Stage
    created_at: datetime
    updated_at: datetime


class ProspectPage(BaseModel):
    items: list[Prospect]
    next_cursor: str | None


class StageEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_stage: Stage | None
    to_stage: Stage
    cause: str
    at: datetime
