"""Referrals' activities, run by its worker on the "referrals" task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.referrals import service
from shared.contracts.journey import LinkReferral, ReferralAsk, ReferralAskRequest
from shared.contracts.names import Act
from shared.errors import AppError
from shared.settings import Settings


class ReferralsActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], public_url: str) -> None:
        self.sessions = sessions
        self.public_url = public_url

    @activity.defn(name=Act.CREATE_REFERRAL_ASK)
    async def create_referral_ask(self, request: ReferralAskRequest) -> ReferralAsk:
        async with self.sessions() as session:
            ask = await service.create_ask(session, request)
            await session.commit()
        return ReferralAsk(ask_id=ask.id, link=service.ask_link(self.public_url, ask.token))

    @activity.defn(name=Act.LINK_REFERRAL)
    async def link_referral(self, link: LinkReferral) -> None:
        async with self.sessions() as session:
            try:
                await service.link_referral(session, link)
            except AppError as err:
                # An unknown referral stays unknown on every attempt: do not retry.
                raise ApplicationError(
                    err.message, err.details, type=err.code, non_retryable=True
                ) from err
            await session.commit()


def activities_for(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> list[Callable[..., Any]]:
    acts = ReferralsActivities(sessions, settings.referrals_public_url)
    return [acts.create_referral_ask, acts.link_referral]
