"""The public API of the deals service. Validation errors become 422 JSON naming the field."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from services.deals.playbook import SLUG_PATTERN, clean_phrases

DealStage = Literal[
    "qualifying", "presenting", "objections", "closing", "won", "lost", "disqualified"
]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- deals --------------------------------------------------------------------------------------


class QualificationAnswerOut(_Out):
    framework: str
    criterion: str
    answer: Any | None
    passed: bool


class Meeting(_Out):
    id: str
    deal_id: str
    starts_at: datetime
    title: str
    duration_minutes: int
    status: str
    created_at: datetime


class Objection(_Out):
    id: str
    deal_id: str
    category: str
    text: str
    created_at: datetime


class Deal(_Out):
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
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class DealDetail(Deal):
    qualification_answers: list[QualificationAnswerOut] = Field(validation_alias="answers")
    meetings: list[Meeting]
    objections: list[Objection]


# --- qualification ------------------------------------------------------------------------------


class QualificationSubmit(BaseModel):
    answers: dict[str, Any] = Field(
        description="criterion -> answer, e.g. budget: true, authority: 'decision_maker', "
        "need: 'slow manual reporting', timeline: 3 (months). A missing criterion fails."
    )


class QualificationResult(BaseModel):
    qualified: bool
    score: int = Field(description="weighted share of passed criteria, 0-100")
    reasons: list[str] = Field(description="one per failing or missing criterion")
    deal: Deal


class CriterionOut(BaseModel):
    key: str
    question: str
    answer_type: str
    choices: list[str]
    weight: int
    hint: str


class FrameworkOut(BaseModel):
    name: str
    label: str
    pass_score: int
    criteria: list[CriterionOut]


# --- meetings -----------------------------------------------------------------------------------


def _aware_future(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a UTC offset, e.g. 2030-01-15T09:30:00+01:00 or ...Z")
    value = value.astimezone(UTC)
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


class MeetingCreate(BaseModel):
    starts_at: Annotated[datetime, AfterValidator(_aware_future)] = Field(
        description="ISO-8601 with a UTC offset, in the future"
    )
    title: NonEmpty = Field(max_length=200)
    duration_minutes: int = Field(30, ge=5, le=8 * 60)


# --- objections and playbook --------------------------------------------------------------------


class ObjectionCreate(BaseModel):
    text: NonEmpty = Field(max_length=5000)
    category: Slug | None = Field(
        None, description="playbook category; matched from the text by its triggers when absent"
    )


class ObjectionLogged(BaseModel):
    objection: Objection
    category: str
    answers: list[str] = Field(description="prepared answers from the playbook")
    matched_triggers: list[str] = Field(description="the triggers that chose the category")


class PlaybookEntry(_Out):
    category: str
    label: str
    triggers: list[str]
    answers: list[str]
    updated_at: datetime


class PlaybookEntryPut(BaseModel):
    label: NonEmpty | None = Field(None, max_length=100, description="defaults to the slug")
    triggers: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=200
    )
    answers: list[Annotated[str, StringConstraints(max_length=2000)]] = Field(
        min_length=1, max_length=50
    )

    @field_validator("triggers")
    @classmethod
    def _clean_triggers(cls, value: list[str]) -> list[str]:
        return clean_phrases(value)

    @field_validator("answers")
    @classmethod
    def _clean_answers(cls, value: list[str]) -> list[str]:
        cleaned = clean_phrases(value, collapse=False)
        if not cleaned:
            raise ValueError("needs at least one non-empty answer")
        return cleaned


# --- closing ------------------------------------------------------------------------------------


class DealClose(BaseModel):
    outcome: Literal["won", "lost"]
    reason: NonEmpty = Field(max_length=2000)
    value: Decimal | None = Field(None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(
        None, validate_default=True, description="ISO 4217 code, e.g. EUR; required with value"
    )

    # a field validator (not a model one) so the 422 names "currency"
    @field_validator("currency")
    @classmethod
    def _iso_code(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("value") is not None:
                raise ValueError("required when value is given")
            return None
        code = value.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", code):
            raise ValueError("expected a 3-letter ISO 4217 code such as EUR")
        return code
