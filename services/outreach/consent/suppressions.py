"""Per-address suppressions: an address opted out of a channel for good (kept in step with the
consent record by consent/service.py). Use cases take a session and never commit."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach import models
from shared.paging import DEFAULT_LIMIT, Page, page
from shared.people import normalize_email


def normalise_address(channel: str, address: str) -> str:
    """An address as the ledger and consent keep it. An email address at an internationalized
    domain is kept as shared.people.normalize_email gives it (the domain in Unicode), whichever
    form it came in: emails go out with the domain in its ASCII form (shared.providers.email),
    and a provider's bounce, complaint or unsubscribe names the address that way."""
    if channel != "email":
        return address.strip()
    address = address.strip().lower()
    if address.isascii() and "xn--" not in address:
        return address
    try:
        return normalize_email(address)
    except ValueError:
        return address  # not an address email_validator takes: kept as it came


async def is_suppressed(session: AsyncSession, channel: str, address: str) -> bool:
    row = await session.scalar(
        select(models.Suppression.id).where(
            models.Suppression.channel == channel,
            models.Suppression.address == normalise_address(channel, address),
        )
    )
    return row is not None


async def suppress(session: AsyncSession, channel: str, address: str, reason: str) -> bool:
    """Opt an address out of a channel for good. True when this call made the change."""
    if await is_suppressed(session, channel, address):
        return False
    try:
        async with session.begin_nested():
            session.add(
                models.Suppression(
                    channel=channel, address=normalise_address(channel, address), reason=reason
                )
            )
    except IntegrityError:
        return False
    return True


async def unsuppress(session: AsyncSession, channel: str, address: str) -> bool:
    row = await session.scalar(
        select(models.Suppression).where(
            models.Suppression.channel == channel,
            models.Suppression.address == normalise_address(channel, address),
        )
    )
    if row is None:
        return False
    await session.delete(row)
    return True


async def list_suppressions(
    session: AsyncSession, *, after: int | None = None, limit: int = DEFAULT_LIMIT
) -> Page[models.Suppression]:
    """Oldest first (ids count up), one page (shared.paging)."""
    s = models.Suppression
    return await page(session, select(s), [s.id], after=after, limit=limit, what="suppression")
