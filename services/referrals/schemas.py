"""The referrals API's public shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.people import PersonFields, PersonOut
from shared.requests import WriteModel

MAX_PEOPLE = 20


class ReferredPersonIn(PersonFields, WriteModel):
    """One referred person, validated exactly like a prospect (they become one)."""


class ReferralsCreate(WriteModel):
    people: list[ReferredPersonIn] = Field(min_length=1, max_length=MAX_PEOPLE)


class ReferralAsk(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    token: str
    link: str = Field(description="the client's personal referral page")
    client_prospect_id: str
    journey_id: str
    client_name: str
    rep_id: str | None
    cadence_id: str
    created_at: datetime
    used_at: datetime | None = Field(
        None, description="when the public form was submitted: the link works once"
    )
    closed_at: datetime | None = Field(
        None,
        description="when the client was erased: the ask takes no more referrals (409 ask_closed)",
    )


class Referral(PersonOut):
    ask_id: str
    referrer_prospect_id: str
    status: str = Field(
        description="received, then prospect_created; self_referral when the client named "
        "themselves (refused: no prospect, not counted)"
    )
    prospect_id: str | None
    intake_started_at: datetime | None = Field(
        description="null while the intake workflow could not be started (retried later)"
    )
    thanked_for_meeting_at: datetime | None = Field(
        None, description="when the referrer was thanked for this person's first meeting"
    )
    thanked_for_win_at: datetime | None = Field(
        None, description="when the referrer was thanked for this person becoming a client"
    )
    created_at: datetime
