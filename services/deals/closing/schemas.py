"""Closing in the public API: won or lost with a reason, the close-reason list, stage moves and
the pipeline."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from services.deals.core.schemas import DealStage, FromRow, NonEmpty, Slug, iso_currency
from shared.requests import WriteModel


class DealClose(WriteModel):
    outcome: Literal["won", "lost"]
    reason: NonEmpty = Field(max_length=2000)
    reason_code: Slug | None = Field(
        None, description="a code from GET /close-reasons for this outcome; others are refused"
    )
    value: Decimal | None = Field(None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(
        None,
        max_length=3,
        validate_default=True,
        description="ISO 4217 code, e.g. EUR; required with value",
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


class CloseReasonItem(FromRow, WriteModel):
    outcome: Literal["won", "lost"]
    code: Slug
    label: NonEmpty = Field(max_length=200)


class CloseReasonsPut(WriteModel):
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


class StageMove(WriteModel):
    stage: Literal["presenting", "objections", "closing"]


class PipelineStage(BaseModel):
    stage: DealStage
    count: int
    value: dict[str, Decimal] = Field(description="sum of deal values per currency")


class Pipeline(BaseModel):
    stages: list[PipelineStage]
    total: int
