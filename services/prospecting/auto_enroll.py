"""Tell outreach about prospects that may be auto-enrolled by fit tier.

Prospecting sees when a prospect appears (created through the API, imported) or moves up a
tier (a merge on import, an ICP change); outreach owns cadences and knows which of them
auto-enroll from which tier (services/outreach/cadences/auto_enroll.py). So every such prospect goes,
with its tier, into one outbox message per transaction (an import batch: up to 500), relayed
until outreach has it. Referred prospects are not sent: their intake journey starts them
with a warm introduction already.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import outbox
from services.prospecting.models import OutboxMessage

KIND = "auto_enroll"
PATH = "/internal/auto-enrollments"
TIERS = "ABCD"  # best first
REFERRED = "referral"  # the source of a referred prospect (schemas.Source)


def moved_up(old: str | None, new: str, source: str) -> bool:
    """Whether a prospect of `source` whose tier went from `old` (None: new) to `new` is sent.
    A referred one never is: their intake starts their journey (one whose intake has not
    reached outreach yet, or was refused, would start a cold cadence instead)."""
    if source == REFERRED:
        return False
    return old is None or TIERS.index(new) < TIERS.index(old)


def queue(session: AsyncSession, items: Sequence[tuple[str, str]], subject_id: str) -> None:
    """(prospect id, tier) pairs, in one message; nothing when there are none."""
    if not items:
        return
    outbox.add(
        session,
        kind=KIND,
        target="outreach",
        path=PATH,
        payload={"items": [{"prospect_id": p, "tier": t} for p, t in items]},
        subject_id=subject_id,
    )


async def forget(session: AsyncSession, prospect_id: str) -> None:
    """An erased person leaves every call that names them (a batch's, under the batch's own
    subject: an import, an ICP change), waiting or delivered; a call left naming nobody goes.
    A relay posting it meanwhile sends a prospect outreach no longer finds, and records its
    outcome on no row."""
    calls = await session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.kind == KIND,
            cast(OutboxMessage.payload, String).contains(prospect_id, autoescape=True),
        )
    )
    for row in calls:
        items = [i for i in row.payload["items"] if i["prospect_id"] != prospect_id]
        if not items:
            await session.delete(row)
        elif len(items) < len(row.payload["items"]):
            row.payload = {**row.payload, "items": items}
