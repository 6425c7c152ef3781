"""Outreach's public API models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.outreach.templates import template_problems

ChannelName = Literal["email", "sms", "call_task", "social_task"]
Seconds = Annotated[int, Field(ge=0, le=366 * 86400)]


class StepIn(BaseModel):
    channel: ChannelName
    offset_seconds: Seconds = Field(description="seconds after enrolment (0 = first touch)")
    subject: str = Field("", max_length=300, description="email subject (required for email)")
    body: str = Field(min_length=1, max_length=20000, description="Jinja2 template")

    @field_validator("subject", "body")
    @classmethod
    def _known_variables(cls, value: str) -> str:
        problems = template_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _email_has_subject(self) -> StepIn:
        if self.channel == "email" and not self.subject.strip():
            raise ValueError("an email step needs a subject")
        return self


class SendWindowIn(BaseModel):
    days: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: list(range(7)), min_length=1, description="0=Monday"
    )
    start_hour: int = Field(0, ge=0, le=23, description="local hour the window opens")
    end_hour: int = Field(24, ge=1, le=24, description="local hour the window closes")

    @model_validator(mode="after")
    def _ordered(self) -> SendWindowIn:
        if self.start_hour >= self.end_hour:
            raise ValueError("start_hour must be before end_hour")
        return self


class CadenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    steps: list[StepIn] = Field(min_length=2)
    send_window: SendWindowIn = Field(default_factory=SendWindowIn)
    nurture_after_seconds: Seconds = 7 * 86400
    qualification_reminder_seconds: Seconds = 2 * 86400
    qualification_timeout_seconds: Annotated[int, Field(ge=1, le=366 * 86400)] = 5 * 86400
    meeting_reminder_seconds: Seconds = 86400
    referral_delay_seconds: Seconds = 7 * 86400

    @model_validator(mode="after")
    def _first_touch_is_dual_channel(self) -> CadenceIn:
        first = min(s.offset_seconds for s in self.steps)
        channels = [s.channel for s in self.steps if s.offset_seconds == first]
        if len(set(channels)) < 2 or len(channels) != len(set(channels)):
            raise ValueError(
                "the first touch must use two different channels at the same offset "
                f"(e.g. email + sms); steps at offset {first} use {channels}"
            )
        if self.qualification_reminder_seconds > self.qualification_timeout_seconds:
            raise ValueError("qualification_reminder_seconds must not exceed the timeout")
        return self


class Cadence(CadenceIn):
    model_config = ConfigDict(extra="ignore")
    id: str
    version: int
    created_at: datetime
    updated_at: datetime


class EnrollmentIn(BaseModel):
    prospect_id: str = Field(min_length=1, max_length=64)
    cadence_id: str = Field(min_length=1, max_length=32)


class Enrollment(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    prospect_id: str
    cadence_id: str
    cadence_version: int
    journey_id: str
    created_at: datetime


class Message(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    prospect_id: str
    journey_id: str
    touch_key: str
    kind: str
    channel: str
    to_address: str
    subject: str
    body: str
    status: str
    provider_status: str
    provider_id: str | None
    error: str
    created_at: datetime
    sent_at: datetime | None


class RepTask(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    rep_id: str | None
    prospect_id: str
    journey_id: str
    kind: str
    title: str
    body: str
    context: dict[str, Any]
    due_at: datetime
    status: str
    outcome: str | None
    notes: str
    completed_at: datetime | None
    created_at: datetime


TaskOutcome = Literal[
    "done",
    "connected",
    "voicemail",
    "no_answer",
    "not_interested",
    "meeting_booked",
    "skipped",
]


class TaskCompletion(BaseModel):
    outcome: TaskOutcome
    notes: str = Field("", max_length=5000)


class Suppression(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    channel: str
    address: str
    reason: str
    created_at: datetime
