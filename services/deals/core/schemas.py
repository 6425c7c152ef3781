"""The deal as the API shows it, and the field types every sub-domain's schemas share.

Validation errors become 422 JSON naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.requests import WriteModel, with_offset

DealStage = Literal[
    "qualifying", "presenting", "objections", "closing", "won", "lost", "disqualified", "nurture"
]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
# ops-chosen names: playbook categories, close reason codes, framework names
SLUG_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=40)]


class FromRow(BaseModel):
    """A response model read straight from an ORM row."""

    model_config = ConfigDict(from_attributes=True)


def iso_currency(value: str) -> str:
    code = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError("expected a 3-letter ISO 4217 code such as EUR")
    return code


# --- the deal and what hangs off it (GET /deals/{id} shows them all) ---------------------------


class QualificationAnswerOut(FromRow):
    framework: str
    criterion: str
    answer: Any | None
    passed: bool


class Meeting(FromRow):
    id: str
    deal_id: str
    starts_at: datetime
    title: str
    duration_minutes: int
    status: Literal["scheduled", "cancelled", "held", "no_show"]
    revision: int = Field(description="+1 on every reschedule")
    cancel_reason: str | None
    created_at: datetime
    invite_status: Literal["sent", "not_sent"] | None = Field(
        None,
        description="the prospect's latest calendar invitation: sent, or not_sent (opted out, "
        "listed, bounced, no address; the rep got their own); null until known",
    )
    invite_detail: str | None = Field(None, description="why the prospect's invitation did not go")


class Objection(FromRow):
    id: str
    deal_id: str
    category: str
    text: str
    created_at: datetime


class Deal(FromRow):
    id: str
    prospect_id: str
    journey_id: str
    rep_id: str | None
    source: str
    stage: DealStage
    qualified: bool | None
    qualification_score: int | None
    qualification_reasons: list[str]
    value: Decimal | None
    currency: str | None
    close_reason: str | None
    close_reason_code: str | None
    framework: str = Field(description="qualification framework; bant when none was assigned")
    expected_close_date: date | None
    segment: str | None
    decision_deadline: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @field_validator("framework", mode="before")
    @classmethod
    def _default_framework(cls, value: str | None) -> str:
        return value or "bant"


class HistoryEntry(FromRow):
    from_stage: str | None
    to_stage: str
    cause: str
    actor: str = Field("", description="who: a key holder (role and key id) or journey")
    at: datetime


class DealDetail(Deal):
    qualification_answers: list[QualificationAnswerOut] = Field(validation_alias="answers")
    meetings: list[Meeting]
    objections: list[Objection]
    history: list[HistoryEntry] = Field(
        description="stage changes and events (reminders, escalations, meeting changes)"
    )


class DealPatch(WriteModel):
    value: Decimal | None = Field(None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(None, max_length=3, description="ISO 4217 code, e.g. EUR")
    expected_close_date: date | None = None
    framework: Slug | None = Field(None, description="only while qualifying")
    segment: str | None = Field(None, max_length=100)
    decision_deadline: datetime | None = Field(
        None,
        description="ISO-8601 with a UTC offset; passing it undecided gives the rep a 'last "
        "chance' task with the open objections. Moving it re-arms the timer, null clears it",
    )

    @field_validator("currency")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        return None if value is None else iso_currency(value)

    @field_validator("decision_deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return with_offset(value).astimezone(UTC)


# --- deals by prospect source (GET /analytics/sources, read by the referrals service) ---------


class SourceCounts(BaseModel):
    source: str
    deals: int = Field(description="deals opened in the period (prospects that reached qualifying)")
    with_meeting: int = Field(description="of those, deals with a meeting booked (not cancelled)")
    won: int = Field(description="of those, deals closed won")


class SourceAnalytics(BaseModel):
    period_from: datetime = Field(serialization_alias="from")
    period_to: datetime = Field(serialization_alias="to")
    sources: list[SourceCounts]
