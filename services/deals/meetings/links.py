"""Booking links stored in deals (issue 14): `/book/<token>` where the token is a row's random
key, 22 characters (128 bits from `secrets`), in place of the 250-character signed token.

The row holds what the signed token carried (prospect, rep, journey run, the prospect's zone and
source, expiry), so the link names nobody, expires (CLOSEFLOW_BOOKING_LINK_DAYS), and can be
revoked one prospect at a time (`DELETE /prospects/{id}/booking-links`) or by erasure. Outreach
asks for one (`POST /internal/booking-links`) when it renders `{{ booking_link }}`: a prospect's
run and rep keep the link they have while it has more than half its life left, so a cadence's
touches (and a retried activity) send the same one.

Signed links sent before this release (a '.' in the token) keep working until they expire:
shared.booking.verify still checks them with CLOSEFLOW_BOOKING_LINK_SECRET.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.models import BookingLink, SignedLinkHold
from shared.booking import BookingClaim, verify
from shared.db import utcnow

TOKEN_BYTES = 16  # 128 bits: 22 characters of base64url
MAX_TOKEN = 600  # longer than any token ever issued: refused before any lookup


async def issue(
    session: AsyncSession,
    *,
    prospect_id: str,
    rep_id: str,
    journey_key: str,
    zone: str,
    source: str,
    days: int,
) -> BookingLink:
    """The run's link to the rep's calendar: the one it has while more than half its life is
    left (its zone and source brought up to date), else a new one."""
    now = utcnow()
    current = await session.scalar(
        select(BookingLink)
        .where(
            BookingLink.journey_key == journey_key,
            BookingLink.rep_id == rep_id,
            BookingLink.prospect_id == prospect_id,
            BookingLink.revoked_at.is_(None),
            BookingLink.expires_at > now + timedelta(days=days) / 2,
        )
        .order_by(BookingLink.expires_at.desc())
        .limit(1)
    )
    if current is not None:
        current.zone, current.source = zone, source
        return current
    # the prospect's links that open nothing any more go as the next is made: the table holds
    # about one row per prospect, not one per link period for as long as a cadence sends them
    await session.execute(
        delete(BookingLink)
        .where(
            BookingLink.prospect_id == prospect_id,
            or_(BookingLink.revoked_at.is_not(None), BookingLink.expires_at <= now),
        )
        .execution_options(synchronize_session=False)
    )
    link = BookingLink(
        token=secrets.token_urlsafe(TOKEN_BYTES),
        prospect_id=prospect_id,
        rep_id=rep_id,
        journey_key=journey_key,
        zone=zone,
        source=source,
        expires_at=now + timedelta(days=days),
    )
    session.add(link)
    await session.flush()
    return link


async def claim_of(
    session: AsyncSession, token: str, secret: str, now: datetime | None = None
) -> BookingClaim | None:
    """What a live link lets its holder do; None for an unknown, revoked or expired token."""
    if not token or len(token) > MAX_TOKEN:
        return None
    if "." in token:  # a signed link from before links were stored
        claim = verify(secret, token, None if now is None else now.timestamp())
        if claim is None:
            return None
        hold = await session.get(SignedLinkHold, claim.prospect_id)
        if hold is None:
            return claim
        if hold.revoked_at is not None:
            return None
        return replace(claim, rep_id=hold.rep_id or claim.rep_id)
    link = await session.get(BookingLink, token)
    if link is None or link.revoked_at is not None or link.expires_at <= (now or utcnow()):
        return None
    return BookingClaim(
        link.prospect_id,
        link.rep_id,
        link.journey_key,
        int(link.expires_at.timestamp()),
        link.zone,
        link.source,
    )


async def hold_signed(
    session: AsyncSession, prospect_id: str, *, revoked: bool = False, rep_id: str | None = None
) -> None:
    """Keep what the prospect's signed links must follow (SignedLinkHold): revoked (or
    erased), or another rep."""
    hold = await session.get(SignedLinkHold, prospect_id)
    if hold is None:
        hold = SignedLinkHold(prospect_id=prospect_id)
        session.add(hold)
    if revoked:
        hold.revoked_at = hold.revoked_at or utcnow()
    if rep_id is not None:
        hold.rep_id = rep_id
    await session.flush()


async def revoke(session: AsyncSession, prospect_id: str) -> int:
    """Every live link of the prospect stops working now, signed ones too; how many stored
    links were live."""
    await hold_signed(session, prospect_id, revoked=True)
    done = await session.execute(
        update(BookingLink)
        .where(BookingLink.prospect_id == prospect_id, BookingLink.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], done).rowcount


async def follow_run(session: AsyncSession, prospect_id: str, ended: str, now_key: str) -> None:
    """The prospect's live links of run `ended` book into run `now_key` from now on (a late
    booking went there: meetings.late), so reopening one shows that booking."""
    await session.execute(
        update(BookingLink)
        .where(
            BookingLink.prospect_id == prospect_id,
            BookingLink.journey_key == ended,
            BookingLink.revoked_at.is_(None),
        )
        .values(journey_key=now_key)
        .execution_options(synchronize_session=False)
    )
