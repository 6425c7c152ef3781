"""A prospect's new rep, as prospecting's outbox tells the services that own rows of that rep
(POST /internal/prospects/{id}/rep on deals and referrals; outreach has its own with the
journey's signal). Each service moves its own rows: nobody writes another's database."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.requests import InternalModel


class RepMove(InternalModel):
    rep_id: str = Field(min_length=1, max_length=64)


class RepMoved(BaseModel):
    prospect_id: str
    rep_id: str
    moved: int = Field(description="rows given to the rep (0: none open, or theirs already)")
