"""Referral use cases. Each takes the caller's session and never commits."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.referrals import schemas
from services.referrals.models import ErasedPerson, Referral, ReferralAsk
from shared.contracts.journey import (
    LinkReferral,
    ReferralAskRequest,
    ReferralAskStatus,
    ReferralIntakeInput,
    ReferredPerson,
    ReferrerThanks,
)
from shared.contracts.queues import TaskQueues
from shared.db import hold_lock
from shared.erasure import Kind, is_erased_address
from shared.errors import AppError, conflict, not_found
from shared.paging import DEFAULT_LIMIT, Page, page

log = logging.getLogger(__name__)

RECEIVED = "received"
PROSPECT_CREATED = "prospect_created"
# the client named themselves: refused (outreach starts no run for it, by the same rule), so it
# is not a referral the client made and counts nowhere
SELF_REFERRAL = "self_referral"


def counted() -> Any:
    """The referrals that count as people referred (the ask's status, the analytics)."""
    return Referral.status != SELF_REFERRAL


def new_token() -> str:
    """A referral link's key: 192 random bits."""
    return secrets.token_urlsafe(24)


def ask_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/r/{token}"


# --- asks ---------------------------------------------------------------------------------------


async def create_ask(session: AsyncSession, request: ReferralAskRequest) -> ReferralAsk:
    """The journey's one ask: a retried call returns the ask made the first time."""
    existing = await session.scalar(
        select(ReferralAsk).where(ReferralAsk.journey_id == request.journey_id)
    )
    if existing is not None:
        return existing
    ask = ReferralAsk(
        token=new_token(),
        client_prospect_id=request.client_prospect_id,
        journey_id=request.journey_id,
        client_name=request.client_name,
        rep_id=request.rep_id,
        cadence_id=request.cadence_id,
    )
    session.add(ask)
    await session.flush()
    return ask


async def list_asks(
    session: AsyncSession,
    client_prospect_id: str | None,
    rep_id: str | None = None,
    *,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[ReferralAsk]:
    """Oldest first, one page (shared.paging)."""
    query = select(ReferralAsk)
    if client_prospect_id is not None:
        query = query.where(ReferralAsk.client_prospect_id == client_prospect_id)
    if rep_id is not None:
        query = query.where(ReferralAsk.rep_id == rep_id)
    order = [ReferralAsk.created_at, ReferralAsk.id]
    return await page(session, query, order, after=after, limit=limit, what="referral ask")


async def get_ask(session: AsyncSession, ask_id: str) -> ReferralAsk:
    ask = await session.get(ReferralAsk, ask_id)
    if ask is None:
        raise not_found("referral_ask", ask_id)
    return ask


async def open_ask(session: AsyncSession, ask_id: str) -> ReferralAsk:
    """The ask, if it still takes referrals: an erased client's is closed, and nobody may
    introduce people in their name."""
    ask = await get_ask(session, ask_id)
    if ask.closed_at is not None:
        raise conflict(
            "ask_closed",
            f"referral ask {ask_id} is closed: its client asked for their data to be erased, "
            "so no referrals are taken in their name",
        )
    return ask


async def find_ask_by_token(session: AsyncSession, token: str) -> ReferralAsk | None:
    return await session.scalar(select(ReferralAsk).where(ReferralAsk.token == token))


async def use_link(session: AsyncSession, ask: ReferralAsk) -> bool:
    """Mark the ask's public link used; False when it already was.

    One conditional UPDATE, so of two submissions racing on the same link only one wins.
    """
    # an UPDATE's result is a CursorResult (it has the row count); execute() is typed for SELECTs
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(ReferralAsk)
            .where(ReferralAsk.id == ask.id, ReferralAsk.used_at.is_(None))
            .values(used_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        ),
    )
    return result.rowcount == 1


async def ask_status(session: AsyncSession, ask_id: str) -> ReferralAskStatus:
    ask = await get_ask(session, ask_id)
    count = await session.scalar(
        select(func.count()).select_from(Referral).where(Referral.ask_id == ask.id, counted())
    )
    return ReferralAskStatus(ask_id=ask.id, referrals=count or 0, link_used=ask.used_at is not None)


# --- referrals ----------------------------------------------------------------------------------


async def add_referrals(
    session: AsyncSession,
    ask: ReferralAsk,
    people: Iterable[schemas.ReferredPersonIn],
    lease: timedelta = timedelta(0),
) -> list[Referral]:
    """Store the people the client named; their intakes start after the caller commits.

    A person already referred on this ask (the same email or phone: a retried request, a row
    typed twice) is the referral made then, answered again: not a second referral, intake and
    count. The rows in the order named, each once.

    Each new one is leased to the caller's own start for `lease` (none: due to the intake relay
    at once); if that start fails, or never comes, the intake relay (services.referrals.intakes)
    starts it after the lease."""
    lease_until = datetime.now(UTC) + lease
    # a retry racing the request it repeats waits for it, then finds its rows
    await hold_lock(session, f"referral-ask:{ask.id}")
    known = list(await session.scalars(select(Referral).where(Referral.ask_id == ask.id)))
    named: list[Referral] = []
    for person in people:
        referral = next((r for r in known if _same_person(r, person)), None)
        if referral is None:
            referral = Referral(
                ask_id=ask.id,
                referrer_prospect_id=ask.client_prospect_id,
                status=RECEIVED,
                intake_next_attempt_at=lease_until,
                **person.model_dump(),
            )
            session.add(referral)
            known.append(referral)
        if referral not in named:
            named.append(referral)
    await session.flush()
    return named


def _same_person(referral: Referral, person: schemas.ReferredPersonIn) -> bool:
    """Both name the same address (validated: emails lower-cased, phones in E.164)."""
    return bool(
        (person.email and person.email == referral.email)
        or (person.phone and person.phone == referral.phone)
    )


async def erased_rows(
    session: AsyncSession, pepper: str, people: Sequence[schemas.ReferredPersonIn]
) -> list[int]:
    """The positions of the people who asked to be erased (by their email's or phone's digest):
    nothing of them may be stored again, nor an intake started for them."""
    found = []
    for index, person in enumerate(people):
        addresses: tuple[tuple[Kind, str | None], ...] = (
            ("email", person.email),
            ("phone", person.phone),
        )
        for kind, value in addresses:
            if value and await is_erased_address(session, ErasedPerson, pepper, kind, value):
                found.append(index)
                break
    return found


async def referrals_by_id(session: AsyncSession, ids: Sequence[str]) -> Sequence[Referral]:
    """These referrals, in the order given."""
    found = {r.id: r for r in await session.scalars(select(Referral).where(Referral.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


async def list_referrals(
    session: AsyncSession,
    referrer_prospect_id: str | None,
    rep_id: str | None = None,
    *,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[Referral]:
    """Oldest first, one page (shared.paging); with `rep_id`, only those that came through
    that rep's asks."""
    query = select(Referral)
    if referrer_prospect_id is not None:
        query = query.where(Referral.referrer_prospect_id == referrer_prospect_id)
    if rep_id is not None:
        query = query.join(ReferralAsk, ReferralAsk.id == Referral.ask_id).where(
            ReferralAsk.rep_id == rep_id
        )
    order = [Referral.created_at, Referral.id]
    return await page(session, query, order, after=after, limit=limit, what="referral")


async def link_referral(session: AsyncSession, link: LinkReferral) -> Referral:
    """Attach the prospect the referral became; repeating it changes nothing. The referrer
    themselves (the client named their own address) is no prospect it brought: the referral is
    refused (`self_referral`)."""
    referral = await session.get(Referral, link.referral_id)
    if referral is None:
        raise not_found("referral", link.referral_id)
    if link.prospect_id == referral.referrer_prospect_id:
        referral.status = SELF_REFERRAL
    else:
        referral.prospect_id = link.prospect_id
        referral.status = PROSPECT_CREATED
    await session.flush()
    return referral


THANKS_EVENTS = {"meeting": "thanked_for_meeting_at", "won": "thanked_for_win_at"}


async def record_thanks(session: AsyncSession, thanks: ReferrerThanks) -> Referral:
    """Note that the referrer was thanked; the first time counts, a repeat changes nothing."""
    column = THANKS_EVENTS.get(thanks.event)
    if column is None:
        raise AppError(
            422, "invalid_input", f"unknown thanks event {thanks.event!r}; known: meeting, won"
        )
    referral = await session.get(Referral, thanks.referral_id)
    if referral is None:
        raise not_found("referral", thanks.referral_id)
    if getattr(referral, column) is None:
        setattr(referral, column, datetime.fromisoformat(thanks.at))
    await session.flush()
    return referral


# --- intake workflows ---------------------------------------------------------------------------


def intake_input(referral: Referral, ask: ReferralAsk, queues: TaskQueues) -> ReferralIntakeInput:
    return ReferralIntakeInput(
        referral_id=referral.id,
        person=ReferredPerson(
            **{f.name: getattr(referral, f.name) for f in fields(ReferredPerson)}
        ),
        referrer_prospect_id=ask.client_prospect_id,
        referrer_name="",  # an id only (issue 11): outreach looks the name up when it sends
        rep_id=ask.rep_id,
        cadence_id=ask.cadence_id,
        queues=queues,
    )
