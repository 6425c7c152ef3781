"""Consent over HTTP: a person's record across channels, and the global do-not-contact list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select, update

from services.outreach import models
from services.outreach.consent import schemas
from services.outreach.consent import service as consent
from services.outreach.consent.suppressions import list_suppressions
from shared.auth import require_api_key
from shared.db import Session
from shared.errors import AppError
from shared.idempotency import IdempotentRepeat
from shared.paging import DEFAULT_LIMIT, After, AfterNumber, Limit, Linked

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["consent"])


@router.get("/consent/{prospect_id}", response_model=schemas.ConsentView)
async def get_consent(prospect_id: str, session: Session) -> schemas.ConsentView:
    """The person's consent on every channel, the suppressed addresses and the do-not-contact
    entries that concern them (404 when outreach knows nothing of the prospect)."""
    rec = await consent.record_of(session, prospect_id)
    sent = (
        await session.execute(
            select(models.Message.channel, models.Message.to_address)
            .where(
                models.Message.prospect_id == prospect_id,
                models.Message.channel.in_(consent.CHANNELS),
            )
            .order_by(models.Message.created_at.desc())
        )
    ).all()
    if rec is None and not sent:
        raise AppError(
            404, "consent_not_found", f"outreach knows nothing of prospect {prospect_id}"
        )
    addresses: dict[str, list[str]] = {channel: [] for channel in consent.CHANNELS}
    for channel in consent.CHANNELS:
        own = getattr(rec, "email" if channel == consent.EMAIL else "phone", None) if rec else None
        for address in [own, *(a for c, a in sent if c == channel)]:
            if address and address not in addresses[channel]:
                addresses[channel].append(address)
    channels = {}
    for channel in consent.CHANNELS:
        latest = next((a for c, a in sent if c == channel), None) or (
            addresses[channel][0] if addresses[channel] else None
        )
        channels[channel] = schemas.ChannelConsent(
            status=getattr(rec, f"{channel}_status") if rec else consent.OPTED_IN,
            reason=getattr(rec, f"{channel}_reason") if rec else "",
            changed_at=getattr(rec, f"{channel}_changed_at") if rec else None,
            address=latest,
            blocked=await consent.blocked(session, channel, latest, prospect_id)
            if latest
            else None,
        )
    suppressed = []
    for channel, values in addresses.items():
        if values:
            rows = await session.scalars(
                select(models.Suppression).where(
                    models.Suppression.channel == channel, models.Suppression.address.in_(values)
                )
            )
            suppressed += [schemas.SuppressedAddress.model_validate(r) for r in rows.all()]
    entries = await consent.dnc_matches(session, addresses[consent.EMAIL], addresses[consent.SMS])
    return schemas.ConsentView(
        prospect_id=prospect_id,
        email=channels[consent.EMAIL],
        sms=channels[consent.SMS],
        suppressed_addresses=suppressed,
        do_not_contact=[schemas.DncEntry.model_validate(e) for e in entries],
    )


@router.post(
    "/do-not-contact",
    response_model=schemas.DncAdded,
    status_code=201,
    dependencies=[IdempotentRepeat],  # listing it again adds nothing
)
async def add_do_not_contact(
    body: schemas.DncIn, request: Request, response: Response, session: Session
) -> schemas.DncAdded:
    """List an address, number or domain: nothing is sent to it from the commit on, whatever
    journey would send (a send already in flight finishes first), no rep task is made for a
    person it covers, and the journeys of the enrolled prospects it covers end (stop_cadence,
    stored with the entry and retried until delivered). Listing it again: 200."""
    kind, value = consent.parse_dnc(body.value)
    entry, created = await consent.add_dnc(session, kind, value, body.reason)
    stops = await consent.stop_covered_journeys(session, entry) if created else []
    inbox = request.app.state.inbox
    inline = inbox.timing.inline_items  # told while the caller waits; the relay tells the rest
    later = [s.id for s in stops[inline:]]
    if later:  # due at once for the relay (a stored signal is leased to its inline attempt),
        # bulk: a domain's thousands of stops never hold a prospect's reply back (the send path
        # refuses the listed addresses from the commit on, whenever a journey hears of it)
        await session.execute(
            update(models.InboxEvent)
            .where(models.InboxEvent.id.in_(later))
            .values(next_attempt_at=datetime.now(UTC), bulk=True)
        )
    await session.commit()
    await inbox.deliver_now([s.outbound for s in stops[:inline] if s.outbound])
    if later:
        inbox.wake()
    if not created:
        response.status_code = 200
    return schemas.DncAdded.model_validate(
        {**schemas.DncEntry.model_validate(entry).model_dump(), "journeys_stopped": len(stops)}
    )


@router.get("/do-not-contact", response_model=list[schemas.DncEntry])
async def list_do_not_contact(
    session: Session,
    link: Linked,
    kind: Annotated[Literal["email", "phone", "domain"] | None, Query()] = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[schemas.DncEntry]:
    """Oldest first, `limit` per page; the Link header's `after` for the next page."""
    entries = await consent.list_dnc(session, kind, after=after, limit=limit)
    return [schemas.DncEntry.model_validate(e) for e in link(entries)]


@router.delete("/do-not-contact/{entry_id}", status_code=204)
async def delete_do_not_contact(entry_id: str, session: Session) -> Response:
    if not await consent.delete_dnc(session, entry_id):
        raise AppError(404, "do_not_contact_not_found", f"no do-not-contact entry {entry_id}")
    await session.commit()
    return Response(status_code=204)


@router.get("/suppressions", response_model=list[schemas.Suppression])
async def suppressions(
    session: Session, link: Linked, limit: Limit = DEFAULT_LIMIT, after: AfterNumber = None
) -> list[models.Suppression]:
    """Oldest first, `limit` per page; `after` the last id (the Link header's) for the next
    page."""
    return link(await list_suppressions(session, after=after, limit=limit))
