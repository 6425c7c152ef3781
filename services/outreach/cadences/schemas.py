"""Outreach's public API models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.outreach.cadences.templates import template_problems
from shared.contracts.journey import run_key
from shared.ids import ResourceId
from shared.requests import WriteModel

ChannelName = Literal["email", "sms", "call_task", "social_task"]
MESSAGE_CHANNELS = frozenset({"email", "sms"})
Seconds = Annotated[int, Field(ge=0, le=366 * 86400)]


def _checked_template(value: str) -> str:
    problems = template_problems(value)
    if problems:
        raise ValueError("; ".join(problems))
    return value


class VariantIn(WriteModel):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    subject: str = Field("", max_length=300)
    body: str = Field(min_length=1, max_length=20000)
    html: str = Field("", max_length=100000, description="HTML part of an email (template)")
    weight: int = Field(1, ge=1, le=100, description="share of prospects, relative to the others")

    _templates = field_validator("subject", "body", "html")(_checked_template)


StepCondition = Literal["", "previous_email_delivered", "previous_email_not_delivered"]


class StepIn(WriteModel):
    channel: ChannelName
    offset_seconds: Seconds = Field(
        0, description="seconds after enrollment, added after business_days (0 = first touch)"
    )
    business_days: int = Field(
        0, ge=0, le=260, description="business days (Mon-Fri, not holidays) in the prospect's zone"
    )
    subject: str = Field("", max_length=300, description="email subject (required for email)")
    body: str = Field("", max_length=20000, description="Jinja2 template (the plain-text part)")
    html: str = Field(
        "", max_length=100000, description="email only: HTML part (template); default: from body"
    )
    condition: StepCondition = Field("", description="send only if the condition holds")
    variants: list[VariantIn] = Field(
        default_factory=list, max_length=5, description="A/B variants replacing subject and body"
    )

    _templates = field_validator("subject", "body", "html")(_checked_template)

    @model_validator(mode="after")
    def _complete(self) -> StepIn:
        if self.channel != "email" and (self.html or any(v.html for v in self.variants)):
            raise ValueError("only an email step has an HTML part")
        messages: Sequence[VariantIn | StepIn] = self.variants or [self]
        if not all(m.body.strip() for m in messages):
            raise ValueError("a step needs a body (or variants with bodies)")
        if self.channel == "email" and not all(m.subject.strip() for m in messages):
            raise ValueError("an email step needs a subject (in every variant)")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must differ: {names}")
        if len(self.variants) == 1:
            raise ValueError("give at least two variants, or none")
        return self


def _iso_date(value: str) -> str:
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        parsed = None
    # fromisoformat also takes 20251225 and 2025-W52-4: one spelling keeps the list comparable
    if parsed is None or parsed.isoformat() != value:
        raise ValueError(f"{value!r} is not a date written YYYY-MM-DD")
    return value


MAX_STEPS = 100  # a cadence is a few dozen touches; thousands only cost every journey time


class SendWindowIn(WriteModel):
    days: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: list(range(7)), min_length=1, max_length=7, description="0=Monday"
    )
    start_hour: int = Field(0, ge=0, le=23, description="local hour the window opens")
    end_hour: int = Field(24, ge=1, le=24, description="local hour the window closes")
    holidays: list[
        Annotated[
            str,
            Field(max_length=10, json_schema_extra={"format": "date"}),
            AfterValidator(_iso_date),
        ]
    ] = Field(
        default_factory=list,
        max_length=1000,
        description="ISO dates (YYYY-MM-DD) of the prospect's local calendar with no sends",
    )

    @field_validator("holidays")
    @classmethod
    def _sorted_once(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _ordered(self) -> SendWindowIn:
        if self.start_hour >= self.end_hour:
            raise ValueError("start_hour must be before end_hour")
        return self


class CadenceIn(WriteModel):
    name: str = Field(min_length=1, max_length=200)
    steps: list[StepIn] = Field(min_length=2, max_length=MAX_STEPS)
    send_window: SendWindowIn = Field(default_factory=SendWindowIn)
    nurture_after_seconds: Seconds = 7 * 86400
    qualification_reminder_seconds: Seconds = 2 * 86400
    qualification_timeout_seconds: Annotated[int, Field(ge=1, le=366 * 86400)] = 5 * 86400
    meeting_reminder_seconds: Seconds = Field(
        86400, description="older single reminder; used when meeting_reminders_seconds is empty"
    )
    meeting_reminders_seconds: list[Annotated[int, Field(ge=1, le=366 * 86400)]] | None = Field(
        None,
        max_length=10,
        description="one reminder to the prospect (email + SMS) this many seconds before a "
        "meeting; default [86400, 3600], or [meeting_reminder_seconds] when only that is given",
    )
    qualification_timeout_outcome: Literal["disqualified", "nurture"] = Field(
        "disqualified", description="where a deal nobody qualified in time goes"
    )
    referral_delay_seconds: Seconds = 7 * 86400
    referral_reminders: int = Field(
        2, ge=0, le=10, description="reminders after the referral request while nobody is referred"
    )
    referral_reminder_interval_seconds: Annotated[int, Field(ge=1, le=366 * 86400)] = 3 * 86400
    pause_company_on_reply: bool = Field(
        False, description="a reply from one person pauses the others at the same company"
    )
    auto_enroll: bool = Field(
        False,
        description="enroll new prospects (created, imported, or re-scored upward) whose fit "
        "tier is auto_enroll_min_tier or better, automatically",
    )
    auto_enroll_min_tier: Literal["A", "B", "C", "D"] = Field(
        "A", description="the lowest fit tier auto-enrolled (A is the best fit, D the worst)"
    )
    # --- come back (issue 10) ---
    reenroll_min_gap_days: int | None = Field(
        None,
        ge=0,
        le=3660,
        description="days after a prospect's journey ended before they may be enrolled in this "
        "cadence again; default: the CLOSEFLOW_REENROLL_MIN_GAP_DAYS setting",
    )
    follow_up_cadence_id: str | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="re-engagement: a prospect this cadence nurtured is enrolled in that cadence "
        "follow_up_after_seconds later (with the consent and do-not-contact checks)",
    )
    follow_up_after_seconds: Seconds = Field(
        90 * 86400, description="delay between the nurture and the follow-up cadence"
    )
    late_reply: Literal["task", "restart_at_qualifying"] = Field(
        "task",
        description="a reply after the journey ended: an urgent rep task (always), and with "
        "restart_at_qualifying a new journey run at qualifying",
    )

    @field_validator("steps")
    @classmethod
    def _first_touch_is_dual_channel(cls, steps: list[StepIn]) -> list[StepIn]:
        first = min((s.business_days, s.offset_seconds) for s in steps)
        channels = [s.channel for s in steps if (s.business_days, s.offset_seconds) == first]
        if len(set(channels)) < 2 or len(channels) != len(set(channels)):
            raise ValueError(
                "the first touch must use two different channels at the same offset "
                f"(e.g. email + sms); the first touch uses {channels}"
            )
        if not MESSAGE_CHANNELS & set(channels):
            # two tasks would make a first touch that sends the prospect nothing (issue 10)
            raise ValueError(
                "the first touch must contain a message channel (email or sms); "
                f"the first touch uses {channels}"
            )
        return steps

    @field_validator("meeting_reminders_seconds")
    @classmethod
    def _distinct_reminders(cls, offsets: list[int] | None) -> list[int] | None:
        if offsets is not None and len(set(offsets)) != len(offsets):
            raise ValueError("each reminder offset may appear once")
        return None if offsets is None else sorted(offsets, reverse=True)

    @model_validator(mode="after")
    def _reminder_offsets(self) -> CadenceIn:
        if self.meeting_reminders_seconds is None:
            # a definition that only knows the older single reminder keeps it
            single = "meeting_reminder_seconds" in self.model_fields_set
            self.meeting_reminders_seconds = (
                [self.meeting_reminder_seconds] if single else [86400, 3600]
            )
        return self

    @field_validator("qualification_timeout_seconds")
    @classmethod
    def _reminder_before_timeout(cls, timeout: int, info: ValidationInfo) -> int:
        reminder = info.data.get("qualification_reminder_seconds")
        if reminder is not None and reminder > timeout:
            raise ValueError("must not be shorter than qualification_reminder_seconds")
        return timeout


# A cadence the API accepts, shown in the OpenAPI: the rules between fields (the first touch on
# two channels, a body and an email's subject in every step, templates that render) are more than
# a schema says, so an example is how a client (and schemathesis) starts from a valid one.
CADENCE_EXAMPLE = {
    "name": "Outbound, three touches",
    "steps": [
        {
            "channel": "email",
            "subject": "Quick question, {{ first_name }}",
            "body": "Hi {{ first_name }}, how does {{ company }} handle this today?",
        },
        {"channel": "sms", "body": "Hi {{ first_name }}, {{ rep_name }} here: I just emailed you."},
        {
            "channel": "email",
            "business_days": 3,
            "subject": "Following up",
            "body": "Any thoughts, {{ first_name }}?",
        },
    ],
    "send_window": {"days": [0, 1, 2, 3, 4], "start_hour": 9, "end_hour": 17},
}


class Cadence(CadenceIn):
    model_config = ConfigDict(extra="ignore")
    id: str
    version: int
    created_at: datetime
    updated_at: datetime


class EnrollmentIn(WriteModel):
    prospect_id: ResourceId
    cadence_id: ResourceId


class Enrollment(BaseModel):
    """One run of the prospect's journey (the workflow id is the same for every run)."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    prospect_id: str
    cadence_id: str
    cadence_version: int
    journey_id: str
    rep_id: str | None = None
    created_at: datetime
    run: int = Field(1, description="1 for the first run, then 2, 3, ... (come back)")
    run_key: str = Field(
        "", description="what the run's messages, tasks, stage changes and deal are keyed by"
    )
    current: bool = Field(True, description="the prospect's latest run")
    run_id: str | None = Field(None, description="the Temporal run id")
    origin: str = "enrollment"
    start_stage: str = "contacting"
    outcome: str | None = Field(None, description="the run's last stage once it ended")
    ended_at: datetime | None = None

    @model_validator(mode="after")
    def _key(self) -> Enrollment:
        self.run_key = run_key(self.prospect_id, self.run)
        return self


class JourneyRun(Enrollment):
    status: str = Field(description="running | ended | not_started")


class FollowUp(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    prospect_id: str
    after_run: int
    from_cadence_id: str
    cadence_id: str
    due_at: datetime
    status: str = Field(description="pending | enrolled | refused | cancelled")
    reason: str
    run: int | None
    attempts: int
    last_error: str
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
    fallback_for: str = Field("", description="the refused channel this send stands in for")
    fallback_reason: str = Field("", description="why that channel was refused")
