"""Meetings in the public API: booking, moving and cancelling one (the Meeting read model is in
core.schemas, beside the deal that lists it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from services.deals.core.schemas import NonEmpty
from shared.requests import WriteModel


def _aware_future(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a UTC offset, e.g. 2030-01-15T09:30:00+01:00 or ...Z")
    value = value.astimezone(UTC)
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


class MeetingCreate(WriteModel):
    starts_at: Annotated[datetime, AfterValidator(_aware_future)] = Field(
        description="ISO-8601 with a UTC offset, in the future"
    )
    title: NonEmpty = Field(max_length=200)
    duration_minutes: int = Field(30, ge=5, le=8 * 60)


class MeetingReschedule(WriteModel):
    starts_at: Annotated[datetime, AfterValidator(_aware_future)] = Field(
        description="the new start: ISO-8601 with a UTC offset, in the future"
    )


class MeetingCancel(WriteModel):
    reason: str = Field("", max_length=2000)
