"""The ideal-customer profile: load, replace (rescoring everyone), and score one prospect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.prospecting import auto_enroll, fit
from services.prospecting.models import Icp, Prospect
from shared.db import utcnow

ICP_ID = "default"
RESCORE_BATCH = 500
# What a criterion can read: loading only these keeps a rescoring batch small.
SCORED_COLUMNS = (
    Prospect.id,
    Prospect.title,
    Prospect.industry,
    Prospect.company_size,
    Prospect.country,
    Prospect.company,
    Prospect.source,
    Prospect.timezone,
    Prospect.custom,
)


async def load(session: AsyncSession) -> tuple[fit.IcpRules, Icp | None]:
    row = await session.get(Icp, ICP_ID)
    if row is None:
        return fit.IcpRules(), None
    return fit.IcpRules.model_validate(row.rules), row


def apply(rules: fit.IcpRules, prospect: Any) -> None:
    """Set the score, tier and explanation of a Prospect (or a row about to become one)."""
    prospect.fit_score, prospect.tier, prospect.fit_explanation = fit.score(
        rules, fields_of(prospect)
    )


def fields_of(prospect: Any) -> dict[str, Any]:
    return {c.key: getattr(prospect, c.key) for c in SCORED_COLUMNS}


async def replace(session: AsyncSession, rules: fit.IcpRules) -> tuple[Icp, int]:
    """Store the new rules and rescore every prospect, a batch at a time; (row, rescored)."""
    row = await session.get(Icp, ICP_ID)
    if row is None:
        row = Icp(id=ICP_ID, rules=rules.model_dump(mode="json"), version=1, updated_at=utcnow())
        session.add(row)
    else:
        row.rules = rules.model_dump(mode="json")
        row.version += 1
        row.updated_at = utcnow()
    await session.flush()
    rescored = 0
    after = ""
    while True:
        # Keyset over the primary key: never more than one batch of rows in memory.
        batch = (
            await session.execute(
                select(*SCORED_COLUMNS, Prospect.tier.label("old_tier"))
                .where(Prospect.id > after)
                .order_by(Prospect.id)
                .limit(RESCORE_BATCH)
            )
        ).all()
        if not batch:
            return row, rescored
        changes = []
        upgraded = []  # may now be auto-enrolled (services.prospecting.auto_enroll)
        for r in batch:
            fields = r._asdict()
            old_tier = fields.pop("old_tier")
            value, tier, explanation = fit.score(rules, fields)
            changes.append(
                {"id": r.id, "fit_score": value, "tier": tier, "fit_explanation": explanation}
            )
            if auto_enroll.moved_up(old_tier, tier, r.source):
                upgraded.append((r.id, tier))
        # ORM bulk UPDATE by primary key: one executemany per batch.
        await session.execute(update(Prospect), changes)
        auto_enroll.queue(session, upgraded, f"icp-v{row.version}-{after}")
        rescored += len(batch)
        after = batch[-1].id
