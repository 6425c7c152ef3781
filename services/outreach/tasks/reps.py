"""What outreach asks prospecting about reps and prospects for the rep inbox (never its DB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.outreach.prospects import ProspectingClient

# A task is made inside a journey's activity: a slow prospecting must not hold it up for long.
LOOKUP_TIMEOUT = 5.0
CARD_FIELDS = ("first_name", "last_name", "company", "title", "email", "phone", "source")


@dataclass(frozen=True)
class RepInfo:
    id: str
    name: str
    email: str
    phone: str | None
    manager_id: str | None  # prospecting's Rep.manager_id, when it has one
    active: bool = True  # an inactive rep (left, on leave) takes no new work


class RepDirectory(ProspectingClient):
    TIMEOUT = LOOKUP_TIMEOUT

    async def rep(self, rep_id: str) -> RepInfo:
        """The rep, or AppError 404 (unknown) / 503 (prospecting did not answer)."""
        data = await self._get("/reps/{id}", "rep", rep_id)
        return RepInfo(
            id=data["id"],
            name=data.get("name") or "",
            email=data.get("email") or "",
            phone=data.get("phone"),
            manager_id=data.get("manager_id"),
            active=bool(data.get("active", True)),
        )

    async def prospect_card(self, prospect_id: str) -> dict[str, Any]:
        """Who the prospect is, their fit and stage, and their current rep (`rep_id`)."""
        p = await self._get("/prospects/{id}", "prospect", prospect_id)
        card: dict[str, Any] = {f: p.get(f) or "" for f in CARD_FIELDS}
        card["name"] = f"{card['first_name']} {card['last_name']}".strip()
        card["fit_score"] = p.get("fit_score")
        card["tier"] = p.get("tier") or ""
        card["stage"] = p.get("stage") or ""
        card["rep_id"] = p.get("rep_id")
        return card
