"""The rep inbox's API models: tasks, their ranking, the inbox policy, notification prefs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.people import Email, Phone
from shared.requests import InternalModel, OffsetDatetime, WriteModel


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
    prospect_card: dict[str, Any] = Field(
        default_factory=dict,
        description="who: name, company, title, email, phone, fit_score, tier, stage",
    )
    snoozed_until: datetime | None = None
    urgent_at: datetime | None = None
    urgent_reason: str = ""
    escalated_at: datetime | None = None
    reassigned_from: str | None = None
    fixed_rep: bool = Field(
        False,
        description="for this rep whoever the prospect's rep is (a manager's escalation): "
        "reassigning the prospect leaves it here",
    )


class PriorityReason(BaseModel):
    code: str = Field(
        description="escalated|overdue|due_soon|fresh_reply|late_reply|escalated_to_you|meeting_soon|stage|fit"
    )
    points: int
    text: str


class InboxTask(RepTask):
    priority: int = Field(description="sum of the reasons' points; the inbox is sorted by it")
    reasons: list[PriorityReason]
    why_now: str


# a rep's outcomes of a task (tasks/service.py's OUTCOMES); a Literal gives the 422 its field
TaskOutcome = Literal[
    "connected",
    "meeting_booked",
    "voicemail",
    "no_answer",
    "not_interested",
    "wrong_person",
    "bad_number",
    "done",
    "skipped",
]


class TaskCompletion(WriteModel):
    outcome: TaskOutcome
    notes: str = Field("", max_length=5000)


class TaskSnooze(WriteModel):
    until: OffsetDatetime = Field(description="ISO-8601 with offset, in the future")


class TaskReassign(WriteModel):
    rep_id: str = Field(min_length=1, max_length=64)


class RepTasksMove(InternalModel):
    """prospecting's order to move a deactivated rep's open tasks (service to service)."""

    rep_id: str = Field(min_length=1, max_length=64)


class TasksReassigned(BaseModel):
    prospect_id: str
    rep_id: str
    moved: list[str] = Field(description="ids of the open tasks now with the rep")


class RepTasksReassigned(BaseModel):
    from_rep_id: str
    rep_id: str
    moved: list[str] = Field(description="ids of the open tasks now with the rep")


class TaskPolicy(WriteModel):
    """Ops' settings of the rep inbox (stored in outreach; defaults until first set)."""

    escalate_after_seconds: int = Field(3600, ge=1, le=30 * 86400)
    hot_reply_seconds: int = Field(86400, ge=1, le=30 * 86400)
    meeting_soon_seconds: int = Field(7200, ge=1, le=7 * 86400)
    due_soon_seconds: int = Field(3600, ge=0, le=7 * 86400)


class NotificationPrefsIn(WriteModel):
    channel: Literal["email", "sms", "none"] = "email"
    email: Email = None
    phone: Phone = None
    webhook_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    webhook_secret: str | None = Field(None, min_length=16, max_length=200)
    escalate_to: str | None = Field(
        None,
        max_length=64,
        description="rep told of this rep's overdue tasks instead of their manager in prospecting "
        "(a deputy while the manager is away, or someone when there is no manager)",
    )

    @model_validator(mode="after")
    def _complete(self) -> NotificationPrefsIn:
        if self.channel == "sms" and not self.phone:
            raise ValueError("channel sms needs a phone (E.164, e.g. +14155550100)")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("a webhook_url needs a webhook_secret (16 characters or more)")
        return self


class NotificationPrefs(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    rep_id: str
    channel: str
    email: str | None
    phone: str | None
    webhook_url: str | None
    has_webhook_secret: bool = Field(description="the secret itself is never shown again")
    escalate_to: str | None
    updated_at: datetime


class TaskNotification(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    task_id: str
    reason: str
    recipient_rep_id: str
    channel: str
    target: str
    status: str
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None
