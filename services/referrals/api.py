"""Referrals routes for API clients (X-API-Key): asks and the referrals received on them."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from services.referrals import schemas, service
from services.referrals.intakes import IntakeRelay
from services.referrals.models import Referral, ReferralAsk
from shared.access import OwnRows
from shared.auth import require_api_key
from shared.db import Session
from shared.errors import conflict
from shared.idempotency import IdempotentResume, remember, resumed
from shared.ids import IdFilter
from shared.paging import DEFAULT_LIMIT, After, Limit, Linked
from shared.settings import Settings

router = APIRouter(dependencies=[Depends(require_api_key)])


def ask_out(ask: ReferralAsk, settings: Settings) -> schemas.ReferralAsk:
    fields = {
        name: getattr(ask, name) for name in schemas.ReferralAsk.model_fields if name != "link"
    }
    return schemas.ReferralAsk(
        link=service.ask_link(settings.referrals_public_url, ask.token), **fields
    )


async def store_and_start(
    request: Request, session: Session, ask: ReferralAsk, people: list[schemas.ReferredPersonIn]
) -> list[Referral]:
    """Store the referrals, commit, then start their intakes (what fails to start stays
    'received', and the intake relay retries it)."""
    intakes: IntakeRelay = request.app.state.intakes
    lease = timedelta(seconds=intakes.timing.lease)
    referrals = await service.add_referrals(session, ask, people, lease)
    remember(request, referral_ids=[r.id for r in referrals])
    await session.commit()
    await intakes.start_now([r.id for r in referrals if r.intake_started_at is None])
    for referral in referrals:  # `intake_started_at` is set where the start worked
        await session.refresh(referral)
    return referrals


@router.get("/asks", tags=["asks"])
async def list_asks(
    request: Request,
    session: Session,
    link: Linked,
    own: OwnRows,
    client_prospect_id: IdFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[schemas.ReferralAsk]:
    """Oldest first, `limit` per page; the Link header's `after` for the next page."""
    asks = await service.list_asks(
        session, client_prospect_id, rep_id=own, after=after, limit=limit
    )
    return [ask_out(a, request.app.state.settings) for a in link(asks)]


@router.get("/asks/{ask_id}", tags=["asks"])
async def get_ask(ask_id: str, request: Request, session: Session) -> schemas.ReferralAsk:
    return ask_out(await service.get_ask(session, ask_id), request.app.state.settings)


@router.post(
    "/asks/{ask_id}/referrals",
    status_code=201,
    tags=["referrals"],
    dependencies=[IdempotentResume],
)
async def create_referrals(
    ask_id: str, body: schemas.ReferralsCreate, request: Request, session: Session
) -> list[schemas.Referral]:
    """Record people a client referred (on their behalf); each starts a referral intake. 409
    erased_person, naming the rows, when one asked to be erased, and 409 ask_closed when the
    client did (their ask is closed): nothing is stored. The retry
    of one that failed after storing them answers those (their intakes: the relay's)."""
    if (earlier := resumed(request)) is not None:
        stored = await service.referrals_by_id(session, earlier["referral_ids"])
        return [schemas.Referral.model_validate(r) for r in stored]
    ask = await service.open_ask(session, ask_id)
    pepper = request.app.state.settings.erasure_pepper.get_secret_value()
    if erased := await service.erased_rows(session, pepper, body.people):
        raise conflict(
            "erased_person",
            "these people asked for their data to be erased: they may not be referred again",
            [{"field": f"people[{i}]", "problem": "asked to be erased"} for i in erased],
        )
    referrals = await store_and_start(request, session, ask, body.people)
    return [schemas.Referral.model_validate(r) for r in referrals]


@router.get("/referrals", tags=["referrals"])
async def list_referrals(
    session: Session,
    link: Linked,
    own: OwnRows,
    referrer_prospect_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[schemas.Referral]:
    """Oldest first, `limit` per page; the Link header's `after` for the next page. A rep key
    lists only the referrals that came through its own asks (another rep's ask is theirs)."""
    rows = await service.list_referrals(
        session, referrer_prospect_id, rep_id=own, after=after, limit=limit
    )
    return [schemas.Referral.model_validate(r) for r in link(rows)]
