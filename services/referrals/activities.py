"""Referrals' activities, run by its worker on the "referrals" task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.referrals import service
from shared.contracts.journey import (
    LinkReferral,
    ReferralAsk,
    ReferralAskRequest,
    ReferralAskStatus,
    ReferrerThanks,
)
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

    @activity.defn(name=Act.REFERRAL_ASK_STATUS)
    async def referral_ask_status(self, ask_id: str) -> ReferralAskStatus:
        """How many people the client referred on the ask: reminders stop at the first."""
        async with self.sessions() as session:
            try:
                return await service.ask_status(session, ask_id)
            except AppError as err:
                raise _non_retryable(err) from err

    @activity.defn(name=Act.RECORD_REFERRER_THANKS)
    async def record_referrer_thanks(self, thanks: ReferrerThanks) -> None:
        async with self.sessions() as session:
            try:
                await service.record_thanks(session, thanks)
            except AppError as err:
                raise _non_retryable(err) from err
            await session.commit()


def _non_retryable(err: AppError) -> ApplicationError:
    # Bad input stays bad on every attempt: fail the activity at once instead of retrying.
    return ApplicationError(err.message, err.details, type=err.code, non_retryable=True)


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
