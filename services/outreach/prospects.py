"""Outreach learns about a prospect from the prospecting API (it never reads that database)."""

from __future__ import annotations

from typing import Any, Self

import httpx

from shared.contracts.journey import Contact
from shared.errors import AppError, not_found
from shared.ids import id_path
from shared.peers import peer_client
from shared.settings import Settings
from shared.timezones import prospect_zone


class ServiceClient:
    """An HTTP client of another closeflow service, presenting the service token."""

    TIMEOUT = 10.0

    def __init__(
        self, base_url: str, api_key: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._client = peer_client(
            api_key, base_url=base_url, timeout=self.TIMEOUT, transport=transport
        )

    async def close(self) -> None:
        await self._client.aclose()


class ProspectingClient(ServiceClient):
    """Outreach's reads of the prospecting API: one client, and one meaning of its answers
    (404: not found; no answer: 503; anything else: 502)."""

    @classmethod
    def from_settings(
        cls, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> Self:
        return cls(settings.prospecting_url, settings.internal_api_key, transport)

    async def _get(self, template: str, what: str, ident: str) -> dict[str, Any]:
        return await self._call("GET", template, what, ident)

    async def _call(self, method: str, template: str, what: str, ident: str) -> dict[str, Any]:
        """`method` `template` with {id} replaced by `ident` (checked and quoted): an id of
        another shape is not found here, and never reaches prospecting as a different path."""
        try:
            path = id_path(template, id=ident)
        except ValueError as err:
            raise not_found(what, ident) from err
        try:
            response = await self._client.request(method, path)
        except httpx.HTTPError as err:
            raise AppError(
                503,
                "prospecting_unreachable",
                # a timeout's text is empty: its class is what tells a wait from a refusal
                f"the prospecting service did not answer: {type(err).__name__} {err}".strip(),
            ) from err
        if response.status_code == 404:
            raise not_found(what, ident)
        if response.status_code != 200:
            raise AppError(502, "prospecting_error", f"prospecting answered {response.status_code}")
        data: dict[str, Any] = response.json()
        return data


class ProspectDirectory(ProspectingClient):
    async def contact(self, prospect_id: str) -> Contact:
        return contact_from_json(await self._get("/prospects/{id}", "prospect", prospect_id))

    async def comeback(self, prospect_id: str) -> Contact:
        """The contact for a new run of the prospect's journey: prospecting gives a prospect of
        a deactivated rep an active one first."""
        path = "/internal/prospects/{id}/comeback"
        return contact_from_json(await self._call("POST", path, "prospect", prospect_id))


def contact_from_json(p: dict[str, Any]) -> Contact:
    rep = p.get("rep") or {}
    return Contact(
        prospect_id=p["id"],
        first_name=p["first_name"],
        last_name=p.get("last_name") or "",
        email=p.get("email"),
        phone=p.get("phone"),
        company=p.get("company") or "",
        title=p.get("title") or "",
        timezone=p.get("timezone") or "",
        source=p.get("source") or "cold",
        rep_id=rep.get("id"),
        rep_name=rep.get("name") or "",
        rep_email=rep.get("email") or "",
        rep_phone=rep.get("phone"),
        industry=p.get("industry") or "",
        company_size=p.get("company_size"),
        country=p.get("country") or "",
        zone=prospect_zone(p.get("timezone"), p.get("phone")).name,
    )
