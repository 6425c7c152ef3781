"""Objections and the playbook in the public API: logging an objection, the ranked responses,
the reps' outcomes, the playbook's entries and the objection analytics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from services.deals.core.schemas import FromRow, NonEmpty, Objection, Slug
from services.deals.playbook.matching import clean_phrases
from shared.requests import WriteModel


class ObjectionCreate(WriteModel):
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


class ObjectionOutcomeCreate(WriteModel):
    response: NonEmpty = Field(max_length=2000, description="the prepared response used")
    resolved: bool


class ObjectionOutcomeOut(BaseModel):
    objection_id: str
    category: str
    response: str
    resolved: bool


# --- the playbook -------------------------------------------------------------------------------

ObjectionStage = Literal["presenting", "objections", "closing"]
AnswerText = Annotated[str, StringConstraints(max_length=2000)]


class PlaybookEntry(FromRow):
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


class PlaybookEntryPut(WriteModel):
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


# --- objection analytics ------------------------------------------------------------------------


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
