"""The public API of the deals service. Validation errors become 422 JSON naming the field."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
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
    model_validator,
)

from services.deals.playbook.matching import SLUG_PATTERN, clean_phrases

DealStage = Literal[
    "qualifying", "presenting", "objections", "closing", "won", "lost", "disqualified", "nurture"
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
    status: Literal["scheduled", "cancelled", "held", "no_show"]
    revision: int = Field(description="+1 on every reschedule")
    cancel_reason: str | None
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


class HistoryEntry(_Out):
    from_stage: str | None
    to_stage: str
    cause: str
    at: datetime


class DealDetail(Deal):
    qualification_answers: list[QualificationAnswerOut] = Field(validation_alias="answers")
    meetings: list[Meeting]
    objections: list[Objection]
    history: list[HistoryEntry] = Field(
        description="stage changes and events (reminders, escalations, meeting changes)"
    )


# --- qualification ------------------------------------------------------------------------------


class QualificationSubmit(BaseModel):
    answers: dict[str, Any] = Field(
        description="criterion -> answer, e.g. budget: true, authority: 'decision_maker', "
        "need: 'slow manual reporting', timeline: 3 (months). A missing criterion fails."
    )
    partial: bool = Field(
        False,
        description="store the answers (merged with earlier ones) and score them without "
        "deciding: the deal stays qualifying and the journey is not told",
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


# --- ops-defined frameworks ----------------------------------------------------------------------

FrameworkName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
CriterionKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Allowed = bool | float | int | str


class CriterionRule(BaseModel):
    required: bool = True
    min: int | float | None = None
    max: int | float | None = None
    allowed: list[Allowed] | None = Field(None, min_length=1, max_length=100)


class CriterionSpec(BaseModel):
    key: CriterionKey
    question: NonEmpty = Field(max_length=500)
    answer_type: Literal["bool", "text", "number", "choice"]
    choices: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]] = Field(
        default_factory=list, max_length=100
    )
    rule: CriterionRule = Field(default_factory=CriterionRule)
    weight: int = Field(1, ge=0, le=1000)
    hint: str = Field("", max_length=500)

    @field_validator("choices")
    @classmethod
    def _lower_choices(cls, value: list[str]) -> list[str]:
        # answers to a choice are matched lower-cased
        return [c.lower() for c in value]

    @model_validator(mode="after")
    def _consistent(self) -> CriterionSpec:
        # ValueErrors here name the criterion; the message names the offending part
        kind, rule = self.answer_type, self.rule
        if kind == "choice" and not self.choices:
            raise ValueError("choices: a choice criterion needs choices")
        if kind != "choice" and self.choices:
            raise ValueError("choices: only a choice criterion has choices")
        if (rule.min is not None or rule.max is not None) and kind != "number":
            raise ValueError("rule: min/max apply to number criteria only")
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            raise ValueError("rule: min is above max")
        if rule.allowed is not None:
            if kind == "text":
                raise ValueError("rule.allowed: not for text criteria")
            if kind == "bool" and not all(isinstance(a, bool) for a in rule.allowed):
                raise ValueError("rule.allowed: a bool criterion allows true and/or false")
            if kind == "choice":
                allowed = [str(a).lower() for a in rule.allowed]
                stray = [a for a in allowed if a not in self.choices]
                if stray:
                    raise ValueError(f"rule.allowed: not among the choices: {', '.join(stray)}")
                rule.allowed = list(allowed)
            if kind == "number" and any(isinstance(a, bool | str) for a in rule.allowed):
                raise ValueError("rule.allowed: a number criterion allows numbers")
        return self


class FrameworkPut(BaseModel):
    label: NonEmpty = Field(max_length=200)
    pass_score: int = Field(100, ge=0, le=100)
    criteria: list[CriterionSpec] = Field(min_length=1, max_length=50)

    @field_validator("criteria")
    @classmethod
    def _unique_keys(cls, value: list[CriterionSpec]) -> list[CriterionSpec]:
        keys = [c.key for c in value]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate criterion keys: {', '.join(dupes)}")
        return value


class FrameworkCreate(FrameworkPut):
    name: FrameworkName


class FrameworkDetail(BaseModel):
    name: str
    label: str
    pass_score: int
    builtin: bool
    criteria: list[dict[str, Any]]


class DealPatch(BaseModel):
    value: Decimal | None = Field(None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(None, description="ISO 4217 code, e.g. EUR")
    expected_close_date: date | None = None
    framework: FrameworkName | None = Field(None, description="only while qualifying")
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
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a UTC offset, e.g. 2030-01-15T17:00:00+01:00 or ...Z")
        return value.astimezone(UTC)


class StageMove(BaseModel):
    stage: Literal["presenting", "objections", "closing"]


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


class MeetingReschedule(BaseModel):
    starts_at: Annotated[datetime, AfterValidator(_aware_future)] = Field(
        description="the new start: ISO-8601 with a UTC offset, in the future"
    )


class MeetingCancel(BaseModel):
    reason: str = Field("", max_length=2000)


# --- objections and playbook --------------------------------------------------------------------


class ObjectionCreate(BaseModel):
    text: NonEmpty = Field(max_length=5000)
    category: Slug | None = Field(
        None, description="playbook category; matched from the text by its triggers when absent"
    )


class RankedResponse(BaseModel):
    response: str
    used: int = Field(description="times a rep recorded using it on this category")
    resolved: int = Field(description="times it resolved the objection")
    won: int = Field(description="times it resolved the objection and the deal was won")
    resolution_rate: float


class ObjectionLogged(BaseModel):
    objection: Objection
    category: str
    answers: list[str] = Field(
        description="prepared answers from the playbook (the stage's first), best first"
    )
    responses: list[RankedResponse] = Field(description="the same answers with their record")
    matched_triggers: list[str] = Field(description="the triggers that chose the category")


ObjectionStage = Literal["presenting", "objections", "closing"]
AnswerText = Annotated[str, StringConstraints(max_length=2000)]


class PlaybookEntry(_Out):
    category: str
    label: str
    triggers: list[str]
    answers: list[str]
    stage_answers: dict[str, list[str]]
    updated_at: datetime

    @field_validator("stage_answers", mode="before")
    @classmethod
    def _none_is_empty(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]]:
        return value or {}


class PlaybookEntryPut(BaseModel):
    label: NonEmpty | None = Field(None, max_length=100, description="defaults to the slug")
    triggers: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=200
    )
    answers: list[AnswerText] = Field(min_length=1, max_length=50)
    stage_answers: dict[ObjectionStage, list[AnswerText]] = Field(
        default_factory=dict,
        description="responses prepared for a stage, offered before the general answers",
    )

    @field_validator("stage_answers")
    @classmethod
    def _clean_stage_answers(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {stage: clean_phrases(a, collapse=False) for stage, a in value.items()}

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


def iso_currency(value: str) -> str:
    code = value.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError("expected a 3-letter ISO 4217 code such as EUR")
    return code


class DealClose(BaseModel):
    outcome: Literal["won", "lost"]
    reason: NonEmpty = Field(max_length=2000)
    reason_code: Slug | None = Field(
        None, description="a code from GET /close-reasons for this outcome; others are refused"
    )
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
        return iso_currency(value)


class CloseReasonItem(_Out):
    outcome: Literal["won", "lost"]
    code: Slug
    label: NonEmpty = Field(max_length=200)


class CloseReasonsPut(BaseModel):
    reasons: list[CloseReasonItem] = Field(min_length=1, max_length=200)

    @field_validator("reasons")
    @classmethod
    def _both_outcomes_unique(cls, value: list[CloseReasonItem]) -> list[CloseReasonItem]:
        pairs = [(r.outcome, r.code) for r in value]
        if len(set(pairs)) != len(pairs):
            raise ValueError("a code appears twice for the same outcome")
        missing = {"won", "lost"} - {r.outcome for r in value}
        if missing:
            raise ValueError(f"needs at least one reason for {', '.join(sorted(missing))}")
        return value


class PipelineStage(BaseModel):
    stage: DealStage
    count: int
    value: dict[str, Decimal] = Field(description="sum of deal values per currency")


class Pipeline(BaseModel):
    stages: list[PipelineStage]
    total: int


class ObjectionOutcomeCreate(BaseModel):
    response: NonEmpty = Field(max_length=2000, description="the prepared response used")
    resolved: bool


class ObjectionOutcomeOut(BaseModel):
    objection_id: str
    category: str
    response: str
    resolved: bool


class CategoryCount(BaseModel):
    category: str
    count: int


class StageObjections(BaseModel):
    stage: str
    objections: list[CategoryCount] = Field(description="most frequent first")


class SegmentObjections(BaseModel):
    segment: str
    objections: list[CategoryCount] = Field(description="most frequent first")


class ResponseRecord(RankedResponse):
    category: str


class ObjectionAnalytics(BaseModel):
    by_stage: list[StageObjections]
    by_segment: list[SegmentObjections]
    responses: list[ResponseRecord] = Field(description="per category, best resolution first")
