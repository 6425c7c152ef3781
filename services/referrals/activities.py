"""Referrals' activities, run by its worker on the "referrals" task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.referrals import service
from shared.activity_boundary import activity_boundary
from shared.contracts.journey import (
    LinkReferral,
    ReferralAsk,
    ReferralAskRef,
    ReferralAskRequest,
    ReferralAskStatus,
    ReferrerThanks,
)
from shared.contracts.names import Act
from shared.settings import Settings


class ReferralsActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], public_url: str) -> None:
        self.sessions = sessions
        self.public_url = public_url

    @activity_boundary(Act.CREATE_REFERRAL_ASK)
    async def create_referral_ask(
        self, session: AsyncSession, request: ReferralAskRequest
    ) -> ReferralAsk:
        ask = await service.create_ask(session, request)
        return ReferralAsk(ask_id=ask.id, link=service.ask_link(self.public_url, ask.token))

    @activity_boundary(Act.LINK_REFERRAL)
    async def link_referral(self, session: AsyncSession, link: LinkReferral) -> None:
        await service.link_referral(session, link)

    @activity_boundary(Act.REFERRAL_ASK_STATUS)
    async def referral_ask_status(
        self, session: AsyncSession, ref: ReferralAskRef
    ) -> ReferralAskStatus:
        """How many people the client referred on the ask, and whether its link was used:
        reminders stop at the first, or once the link opens nothing more."""
        return await service.ask_status(session, ref.ask_id)

    @activity_boundary(Act.RECORD_REFERRER_THANKS)
    async def record_referrer_thanks(self, session: AsyncSession, thanks: ReferrerThanks) -> None:
        await service.record_thanks(session, thanks)


def activities_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> list[Callable[..., Any]]:
    acts = ReferralsActivities(sessions, settings.referrals_public_url)
    return [
        acts.create_referral_ask,
        acts.link_referral,
        acts.referral_ask_status,
        acts.record_referrer_thanks,
    ]
