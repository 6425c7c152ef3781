"""inbox_events holds every provider callback (deliveries, opens, replies, STOPs) for months: a
prospect's events (their timeline, GET /inbox-events?prospect_id=) are found through an index,
never by reading the whole table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach.cadences import timeline
from services.outreach.late_replies import inbox_events
from shared.db import create_engine
from tests.support.plans import plans_of
from tests.support.settings import make_settings


async def test_a_prospects_inbox_events_are_found_through_an_index(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    engine = create_engine(make_settings(tmp_path, database_urls).database_url("outreach"))

    async def read(session: AsyncSession) -> None:
        await timeline.events(session, "p1")
        await inbox_events(session, prospect_id="p1", outcome=None, limit=100)

    try:
        plans = [(sql, plan) for sql, plan in await plans_of(engine, read) if "inbox_events" in sql]
    finally:
        await engine.dispose()
    assert len(plans) == 2, plans
    for sql, plan in plans:
        assert "ix_inbox_events_prospect" in plan, (sql, plan)
