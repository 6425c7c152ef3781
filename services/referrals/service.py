"""Referral use cases. Each takes the caller's session and never commits."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from services.referrals import schemas
from services.referrals.models import Referral, ReferralAsk
from shared.contracts.journey import (
    LinkReferral,
    ReferralAskRequest,
    ReferralAskStatus,
    ReferralIntakeInput,
    ReferredPerson,
    ReferrerThanks,
    referral_intake_id,
)
from shared.contracts.queues import TaskQueues
from shared.errors import AppError, not_found

log = logging.getLogger(__name__)

INTAKE_WORKFLOW = "ReferralIntake"  # by name: services never import workflows/
RECEIVED = "received"
PROSPECT_CREATED = "prospect_created"
START_TIMEOUT = timedelta(seconds=10)


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
        token=secrets.token_urlsafe(24),
        client_prospect_id=request.client_prospect_id,
        journey_id=request.journey_id,
        client_name=request.client_name,
        rep_id=request.rep_id,
        cadence_id=request.cadence_id,
    )
    session.add(ask)
    await session.flush()
    return ask


async def list_asks(session: AsyncSession, client_prospect_id: str | None) -> Sequence[ReferralAsk]:
    query = select(ReferralAsk).order_by(ReferralAsk.created_at, ReferralAsk.id)
    if client_prospect_id is not None:
        query = query.where(ReferralAsk.client_prospect_id == client_prospect_id)
    return (await session.scalars(query)).all()


async def get_ask(session: AsyncSession, ask_id: str) -> ReferralAsk:
    ask = await session.get(ReferralAsk, ask_id)
    if ask is None:
        raise not_found("referral_ask", ask_id)
    return ask


async def find_ask_by_token(session: AsyncSession, token: str) -> ReferralAsk | None:
    return await session.scalar(select(ReferralAsk).where(ReferralAsk.token == token))


async def use_link(session: AsyncSession, ask: ReferralAsk) -> bool:
    """Mark the ask's public link used; False when it already was.

    One conditional UPDATE, so of two submissions racing on the same link only one wins.
    """
    result = await session.execute(
        update(ReferralAsk)
        .where(ReferralAsk.id == ask.id, ReferralAsk.used_at.is_(None))
        .values(used_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def ask_status(session: AsyncSession, ask_id: str) -> ReferralAskStatus:
    ask = await get_ask(session, ask_id)
    count = await session.scalar(
        select(func.count()).select_from(Referral).where(Referral.ask_id == ask.id)
    )
    return ReferralAskStatus(ask_id=ask.id, referrals=count or 0)


# --- referrals ----------------------------------------------------------------------------------


async def add_referrals(
    session: AsyncSession, ask: ReferralAsk, people: Iterable[schemas.ReferredPersonIn]
) -> list[Referral]:
    """Store the people the client named; their intakes start after the caller commits."""
    referrals = [
        Referral(
            ask_id=ask.id,
            referrer_prospect_id=ask.client_prospect_id,
            status=RECEIVED,
            **person.model_dump(),
        )
        for person in people
    ]
    session.add_all(referrals)
    await session.flush()
    return referrals


async def list_referrals(
    session: AsyncSession, referrer_prospect_id: str | None
) -> Sequence[Referral]:
    query = select(Referral).order_by(Referral.created_at, Referral.id)
    if referrer_prospect_id is not None:
        query = query.where(Referral.referrer_prospect_id == referrer_prospect_id)
    return (await session.scalars(query)).all()


async def link_referral(session: AsyncSession, link: LinkReferral) -> Referral:
    """Attach the prospect the referral became; repeating it changes nothing."""
    referral = await session.get(Referral, link.referral_id)
    if referral is None:
        raise not_found("referral", link.referral_id)
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
            first_name=referral.first_name,
            last_name=referral.last_name,
            email=referral.email,
            phone=referral.phone,
            company=referral.company,
            title=referral.title,
            timezone=referral.timezone,
        ),
        referrer_prospect_id=ask.client_prospect_id,
        referrer_name=ask.client_name,
        rep_id=ask.rep_id,
        cadence_id=ask.cadence_id,
        queues=queues,
    )


async def _start_intake(client: Client, referral: Referral, queues: TaskQueues) -> bool:
    try:
        await client.start_workflow(
            INTAKE_WORKFLOW,
            intake_input(referral, referral.ask, queues),
            id=referral_intake_id(referral.id),
            task_queue=queues.journeys,
            # a finished intake is never run twice; a failed one may be retried
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            rpc_timeout=START_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        pass  # started by an earlier attempt whose bookkeeping did not commit
    except Exception as err:
        # The referral is stored; start_pending_intakes picks it up later.
        log.warning("could not start the intake of referral %s: %s", referral.id, err)
        return False
    return True


async def start_intakes(
    session: AsyncSession, client: Client, queues: TaskQueues, referral_ids: Iterable[str]
) -> list[str]:
    """Start the intake of each referral (call after the commit that stored them).

    Marks the started ones (the caller commits) and returns their ids; failures are logged
    and left for start_pending_intakes.
    """
    ids = list(referral_ids)
    if not ids:
        return []
    referrals = (
        await session.scalars(
            select(Referral)
            .where(Referral.id.in_(ids))
            .options(selectinload(Referral.ask))
            .order_by(Referral.created_at, Referral.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    started: list[str] = []
    for referral in referrals:
        if referral.intake_started_at is None and await _start_intake(client, referral, queues):
            referral.intake_started_at = datetime.now(UTC)
            started.append(referral.id)
    await session.flush()
    return started


async def start_pending_intakes(
    session: AsyncSession, client: Client, queues: TaskQueues, *, limit: int = 100
) -> list[str]:
    """Retry the intakes that could not be started when their referral was stored.

    Not scheduled yet: meant for a periodic job. The caller commits.
    """
    pending = await session.scalars(
        select(Referral.id)
        .where(Referral.intake_started_at.is_(None), Referral.status == RECEIVED)
        .order_by(Referral.created_at, Referral.id)
        .limit(limit)
    )
    return await start_intakes(session, client, queues, pending.all())
