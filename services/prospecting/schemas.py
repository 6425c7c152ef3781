"""The prospecting API's public shapes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from services.prospecting.assignment import Rules
from services.prospecting.fit import IcpRules, Tier
from shared.bounds import INT32_MAX
from shared.contracts.journey import Stage, run_of_key
from shared.json_schema import FreeFields
from shared.people import (
    PersonFields,
    PersonOut,
    Phone,
    RequiredEmail,
    RequiredText,
    Text,
)
from shared.requests import WriteModel

Source = Literal["cold", "referral", "import", "inbound"]


class RepCreate(WriteModel):
    name: RequiredText = Field(max_length=200)
    email: RequiredEmail
    phone: Phone = None
    manager_id: str | None = Field(
        None, max_length=32, description="an existing rep: told when a qualification times out"
    )


class RepBrief(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    email: str
    phone: str | None


class Rep(RepBrief):
    manager_id: str | None = None
    created_at: datetime
    active: bool = True


class RepPatch(WriteModel):
    """What ops change about a rep (issue 10); unset fields stay. Capacity and territories are
    the rep's part of the assignment rules (PUT /assignment-rules shows them all)."""

    name: RequiredText | None = Field(None, max_length=200)
    email: RequiredEmail | None = None
    phone: Phone = None
    manager_id: str | None = Field(
        None, max_length=32, description="an existing active rep, not this one; null: none"
    )
    capacity: int | None = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description="most open prospects of this rep; null: the default capacity",
    )
    territories: list[Annotated[str, Field(max_length=100)]] | None = Field(
        None, description="names of existing territories this rep works (replaces their list)"
    )
    active: bool | None = Field(
        None,
        description="false: no new prospects, and their open prospects, tasks, deals and "
        "referral asks move to other reps by the assignment rules",
    )


class RepChanged(Rep):
    """The rep after the change, with the prospects that moved (on deactivation)."""

    moved: dict[str, str | None] = Field(
        default_factory=dict, description="prospect id -> new rep id (null: left unassigned)"
    )
    tasks: str | None = Field(
        None,
        description="on deactivation: where the open tasks assigned to the rep (a manager's "
        "escalations too) go: their active manager, else they stay (reassign them by hand)",
    )


MAX_CUSTOM_BYTES = 16 * 1024  # free fields, scored by the ICP on every rescore


class ProspectFields(PersonFields):
    """A person's own fields: what an API create and an import row have in common."""

    industry: Text = Field("", max_length=200)
    company_size: int | None = Field(None, ge=0, le=INT32_MAX, description="number of employees")
    country: Text = Field("", max_length=100, description="ISO code or name, as the ICP uses it")
    custom: FreeFields = Field(
        default_factory=dict, description="free fields for the ICP (at most 16 KiB as JSON)"
    )

    @field_validator("custom")
    @classmethod
    def _small_custom(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > MAX_CUSTOM_BYTES:
            raise ValueError(f"at most {MAX_CUSTOM_BYTES} bytes as JSON")
        return value


class ProspectCreate(ProspectFields, WriteModel):
    # ProspectFields itself ignores unknown keys: an import's CSV row carries any columns
    source: Source = "cold"
    referrer_prospect_id: str | None = Field(None, max_length=32)
    referral_id: str | None = Field(None, max_length=32)


class Prospect(PersonOut):
    source: str
    referrer_prospect_id: str | None
    referral_id: str | None
    rep_id: str | None
    rep: RepBrief | None
    stage: Stage
    industry: str
    company_size: int | None
    country: str
    custom: dict[str, Any]
    fit_score: int
    tier: Tier
    fit_explanation: list[dict[str, Any]]
    assignment_note: str = Field("", description="how the rep was chosen, or why none was")
    created_at: datetime
    updated_at: datetime


class ProspectPage(BaseModel):
    items: list[Prospect]
    next_cursor: str | None


class StageEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_stage: Stage | None
    to_stage: Stage
    cause: str
    at: datetime
    actor: str = Field("", description="who: a key holder (role and key id) or journey")
    key: str = Field("", exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def run(self) -> int:
        """Which run of the prospect's journey made the change (1 unless they came back)."""
        return run_of_key(self.key)


class Icp(BaseModel):
    rules: IcpRules
    version: int
    updated_at: datetime | None
    rescored: int = Field(0, description="prospects rescored by this change (PUT only)")


class ImportRefusal(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line: int
    reason: str


class ImportReport(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    format: str
    status: Literal["running", "done", "failed"]
    rows: int
    created: int
    merged: int
    unchanged: int
    refused: int
    error: str
    started_at: datetime
    finished_at: datetime | None
    refusals: list[ImportRefusal] = Field(default_factory=list)


class ProspectUpdate(WriteModel):
    rep_id: str = Field(min_length=1, max_length=32, description="the rep taking the prospect over")


class RepLoad(BaseModel):
    rep_id: str
    name: str
    open: int = Field(description="prospects in an open stage (prospecting to closing)")
    capacity: int | None = Field(description="null: no limit")


class AssignmentRulesOut(BaseModel):
    rules: Rules
    version: int
    updated_at: datetime | None
    load: list[RepLoad]


class ErasureStep(BaseModel):
    service: str
    status: Literal["pending", "done", "failed", "superseded"]
    attempts: int
    last_error: str
    confirmed_at: datetime | None = None


class ErasureStatus(BaseModel):
    id: str
    prospect_id: str
    status: Literal["in_progress", "done"]
    requested_at: datetime
    completed_at: datetime | None
    services: list[ErasureStep]


class TimelineEvent(BaseModel):
    at: datetime
    service: str
    kind: str = Field(description="e.g. message.sent, reply, task.completed, stage.changed")
    summary: str
    data: dict[str, Any] = Field(default_factory=dict)


class SourceStatus(BaseModel):
    service: str
    ok: bool
    error: str = ""
    events: int = 0


class Timeline(BaseModel):
    prospect_id: str
    complete: bool = Field(description="false when a service did not answer: see sources")
    sources: list[SourceStatus]
    events: list[TimelineEvent]
