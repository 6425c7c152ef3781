"""Referral analytics (GET /analytics): asks sent, referrals per client, and how referred
prospects do against cold ones in the same period.

Asks and referrals come from this service's tables; meetings and wins from the deals API
(`GET /analytics/sources`, over HTTP: deals' database is deals' own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.referrals.models import Referral, ReferralAsk
from services.referrals.service import counted
from shared.auth import require_api_key
from shared.db import Session
from shared.errors import AppError
from shared.peers import peer_client
from shared.reporting import PeriodFrom, PeriodTo, reporting_window
from shared.settings import Settings

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["analytics"])
COMPARED = ("referral", "cold")


class ClientReferrals(BaseModel):
    client_prospect_id: str
    client_name: str
    referrals: int


class SourceRates(BaseModel):
    source: str
    deals: int = Field(description="deals opened in the period")
    with_meeting: int
    won: int
    meeting_rate: float | None = Field(description="with_meeting / deals; null without deals")
    win_rate: float | None = Field(description="won / deals; null without deals")


class ReferralAnalytics(BaseModel):
    period_from: datetime = Field(serialization_alias="from")
    period_to: datetime = Field(serialization_alias="to")
    asks_sent: int = Field(description="referral requests sent to won clients in the period")
    clients_referring: int = Field(description="clients who referred someone in the period")
    referrals: int = Field(
        description="people referred in the period (a client naming themselves is not one)"
    )
    referrals_per_client: list[ClientReferrals] = Field(description="most referrals first")
    referred: SourceRates = Field(description="prospects who came by referral")
    cold: SourceRates = Field(description="cold prospects, same period")


class DealsSource:
    """The deals API's counts per prospect source."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self._client = peer_client(
            settings.internal_api_key,
            base_url=settings.deals_url,
            timeout=10.0,
            transport=transport,
        )

    async def counts(self, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
        params = {"from": start.isoformat(), "to": end.isoformat()}
        try:
            response = await self._client.get("/analytics/sources", params=params)
        except httpx.HTTPError as err:
            raise AppError(
                503, "deals_unreachable", f"the deals service did not answer: {err}"
            ) from err
        if response.status_code != 200:
            raise AppError(502, "deals_error", f"deals answered {response.status_code}")
        return {row["source"]: row for row in response.json()["sources"]}

    async def close(self) -> None:
        await self._client.aclose()


def deals_source(request: Request) -> DealsSource:
    state = request.app.state
    if getattr(state, "deals_source", None) is None:
        state.deals_source = DealsSource(state.settings)
        state.cleanup.append(state.deals_source.close)
    source: DealsSource = state.deals_source
    return source


def _rates(source: str, row: dict[str, Any] | None) -> SourceRates:
    deals, met, won = (row["deals"], row["with_meeting"], row["won"]) if row else (0, 0, 0)
    return SourceRates(
        source=source,
        deals=deals,
        with_meeting=met,
        won=won,
        meeting_rate=round(met / deals, 4) if deals else None,
        win_rate=round(won / deals, 4) if deals else None,
    )


async def _local_counts(
    session: AsyncSession, start: datetime, end: datetime
) -> tuple[int, list[ClientReferrals]]:
    asks = await session.scalar(
        select(func.count())
        .select_from(ReferralAsk)
        .where(ReferralAsk.created_at >= start, ReferralAsk.created_at < end)
    )
    # one row per client, however many asks they had (one per won run) and whatever each ask
    # called them: the name is their latest ask's
    latest = aliased(ReferralAsk)
    latest_name = (
        select(latest.client_name)
        .where(latest.client_prospect_id == ReferralAsk.client_prospect_id)
        .order_by(latest.created_at.desc(), latest.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    per_client = await session.execute(
        select(ReferralAsk.client_prospect_id, latest_name, func.count(Referral.id))
        .join(Referral, Referral.ask_id == ReferralAsk.id)
        .where(Referral.created_at >= start, Referral.created_at < end, counted())
        .group_by(ReferralAsk.client_prospect_id)
        .order_by(func.count(Referral.id).desc(), ReferralAsk.client_prospect_id)
    )
    clients = [
        ClientReferrals(client_prospect_id=pid, client_name=name, referrals=n)
        for pid, name, n in per_client.all()
    ]
    return asks or 0, clients


@router.get("/analytics", response_model=ReferralAnalytics, response_model_by_alias=True)
async def referral_analytics(
    session: Session,
    deals: Annotated[DealsSource, Depends(deals_source)],
    start: PeriodFrom = None,
    end: PeriodTo = None,
) -> ReferralAnalytics:
    """Asks sent, referrals per client, and meeting and win rates of referred prospects against
    cold ones whose deals opened in [from, to) (default: the last 30 days)."""
    start, end = reporting_window(start, end)
    asks, clients = await _local_counts(session, start, end)
    by_source = await deals.counts(start, end)
    return ReferralAnalytics(
        period_from=start,
        period_to=end,
        asks_sent=asks,
        clients_referring=len(clients),
        referrals=sum(c.referrals for c in clients),
        referrals_per_client=clients,
        referred=_rates("referral", by_source.get("referral")),
        cold=_rates("cold", by_source.get("cold")),
    )
