"""Meetings in the public API: booking, moving and cancelling one (the Meeting read model is in
core.schemas, beside the deal that lists it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, model_validator

from services.deals.core.schemas import NonEmpty
from shared.json_schema import Documented
from shared.requests import InternalModel, WriteModel, with_offset
from shared.timezones import known_zone

# the longest meeting, scheduled or booked: the overlap check reads back this far
MAX_MEETING_MINUTES = 8 * 60


def _aware_future(value: datetime) -> datetime:
    value = with_offset(value).astimezone(UTC)
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


class MeetingCreate(WriteModel):
    starts_at: Annotated[datetime, AfterValidator(_aware_future)] = Field(
        description="ISO-8601 with a UTC offset, in the future"
    )
    title: NonEmpty = Field(max_length=200)
    duration_minutes: int = Field(30, ge=5, le=MAX_MEETING_MINUTES)


class MeetingReschedule(WriteModel):
    starts_at: Annotated[datetime, AfterValidator(_aware_future)] = Field(
        description="the new start: ISO-8601 with a UTC offset, in the future"
    )


class MeetingCancel(WriteModel):
    reason: str = Field("", max_length=2000)


# --- booking links (issue 14) -------------------------------------------------------------------

# each field its own example: one shared "09:00" made the OpenAPI's example hours end as they start
HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", max_length=5)]


def _minute(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _known_zone(value: str) -> str:
    if known_zone(value) is None:
        raise ValueError(f"unknown time zone {value!r}: an IANA name such as Europe/Berlin")
    return value


class AvailabilityIn(WriteModel):
    """When the rep takes meetings booked through links (in the rep's own zone)."""

    # the OpenAPI names the format its validator holds it to (as a prospect's zone), not blank
    timezone: Annotated[
        str,
        AfterValidator(_known_zone),
        Documented({"format": "timezone", "minLength": 1, "examples": ["Europe/Berlin"]}),
    ] = Field(max_length=64, description="the rep's IANA time zone, e.g. Europe/Berlin")
    days: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        min_length=1,
        max_length=7,
        description="weekdays taking meetings, 0 = Monday, none twice",
        json_schema_extra={"uniqueItems": True},
    )
    start: HHMM = Field("09:00", description="local start of the working hours", examples=["09:00"])
    end: HHMM = Field(
        "17:00", description="local end of the working hours (after start)", examples=["17:00"]
    )
    meeting_minutes: int = Field(
        30, ge=5, le=MAX_MEETING_MINUTES, description="length of a booked meeting"
    )
    buffer_minutes: int = Field(10, ge=0, le=4 * 60, description="kept free around meetings")
    min_notice_minutes: int = Field(
        240, ge=0, le=30 * 24 * 60, description="the earliest slot offered is this far ahead"
    )
    days_ahead: int = Field(14, ge=1, le=90, description="how many days ahead slots are offered")
    title: str = Field("Intro call", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _hours_make_sense(self) -> AvailabilityIn:
        if _minute(self.end) <= _minute(self.start):
            raise ValueError("end must be after start")
        if _minute(self.end) - _minute(self.start) < self.meeting_minutes:
            raise ValueError("the working hours are shorter than one meeting")
        if len(set(self.days)) != len(self.days):
            raise ValueError("days must not repeat")
        return self

    def columns(self) -> dict[str, object]:
        values = self.model_dump(exclude={"start", "end"})
        values["days"] = sorted(self.days)
        return values | {"start_minute": _minute(self.start), "end_minute": _minute(self.end)}


class AvailabilityOut(BaseModel):
    rep_id: str
    timezone: str
    days: list[int]
    start: str
    end: str
    meeting_minutes: int
    buffer_minutes: int
    min_notice_minutes: int
    days_ahead: int
    title: str
    active: bool = Field(
        True, description="false: the rep was deactivated; their links offer no slots"
    )
    free_slots: list[datetime] = Field(description="the slots a booking link offers now (UTC)")


class BookingLinkIn(InternalModel):
    """What a booking link lets its holder do (outreach, rendering `{{ booking_link }}`); a
    service-to-service body: unknown fields are ignored (a newer outreach during a deploy)."""

    prospect_id: NonEmpty = Field(max_length=64)
    rep_id: NonEmpty = Field(max_length=64)
    journey_key: NonEmpty = Field(max_length=128, description="the journey run it is sent in")
    zone: Annotated[str, AfterValidator(_known_zone)] = Field(
        "UTC", max_length=64, description="the prospect's IANA zone: the page shows slots in it"
    )
    source: str = Field("cold", max_length=32, description="the source of a deal it opens")


class RepStandingIn(InternalModel):
    """Prospecting's word on a rep (through its outbox, on deactivating or reactivating them)."""

    active: bool = Field(description="false: deactivated, takes no meetings")
    changed_at: Annotated[datetime, AfterValidator(with_offset)] = Field(
        description="when prospecting changed it, with a UTC offset: the newest word is kept"
    )


class RepStandingOut(BaseModel):
    rep_id: str
    active: bool
    changed_at: datetime = Field(description="the newest change deals has heard of")


class BookingLinkOut(BaseModel):
    token: str
    url: str = Field(description="<CLOSEFLOW_DEALS_PUBLIC_URL>/book/<token>")
    expires_at: datetime


class LinksRevoked(BaseModel):
    prospect_id: str
    revoked: int = Field(description="links that were live and no longer work")
