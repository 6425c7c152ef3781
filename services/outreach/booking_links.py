"""Outreach asks deals for a prospect's booking link when a cadence template uses
`{{ booking_link }}` (deals stores the links: services/deals/meetings/links.py). Deals answers
the run's live link again while it has more than half its life left, so a retried activity and
the cadence's later touches send the same short link."""

from __future__ import annotations

from typing import Self

import httpx

from services.outreach.prospects import ServiceClient
from shared.contracts.journey import Contact, TouchRequest
from shared.errors import AppError
from shared.settings import Settings
from shared.timezones import prospect_zone

VARIABLE = "booking_link"


def uses_booking_link(req: TouchRequest) -> bool:
    """Whether any template of the touch renders the link (only those ask deals for one)."""
    return any(VARIABLE in text for s in req.steps for text in (s.subject, s.body, s.html))


class BookingLinks(ServiceClient):
    """Outreach's requests for booking links to the deals API."""

    @classmethod
    def from_settings(
        cls, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> Self:
        return cls(settings.deals_url, settings.internal_api_key, transport)

    async def link_for(self, contact: Contact, journey_key: str) -> str:
        """The prospect's link ("" without a rep: nobody's calendar to book). Deals away: 503,
        and the activity is retried (the touch goes once deals answers)."""
        if not contact.rep_id:
            return ""
        body = {
            "prospect_id": contact.prospect_id,
            "rep_id": contact.rep_id,
            "journey_key": journey_key,
            "zone": prospect_zone(contact.timezone, contact.phone).name,
            "source": contact.source or "cold",
        }
        try:
            response = await self._client.post("/internal/booking-links", json=body)
        except httpx.HTTPError as err:
            raise AppError(503, "deals_unreachable", f"deals did not answer: {err}") from err
        if response.status_code != 200:
            raise AppError(502, "deals_error", f"deals answered {response.status_code}")
        url: str = response.json()["url"]
        return url
