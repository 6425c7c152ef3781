"""inbox_events holds every provider callback (deliveries, opens, replies, STOPs) for months: a
prospect's events (their timeline, GET /inbox-events?prospect_id=) are found through an index,
never by reading the whole table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from services.outreach.cadences import timeline
from services.outreach.inbox import InboxRelay
from services.outreach.late_replies import inbox_events
from shared.db import create_engine, session_factory
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


async def test_the_relays_claim_reads_each_lane_through_the_due_index(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    """The relay's claim takes a webhook's rows before bulk rows (a cadence's pause, one per
    journey): two reads of due rows, each a range of the due index in due order, never a scan
    of the months of callbacks (nor a sort of every due bulk row to find the first few)."""
    engine = create_engine(make_settings(tmp_path, database_urls).database_url("outreach"))
    relay = InboxRelay(lambda: session_factory(engine), lambda: None)  # type: ignore[arg-type,return-value]

    async def claim(_: AsyncSession) -> None:
        assert await relay.take() == []

    try:
        plans = [
            (sql, plan) for sql, plan in await plans_of(engine, claim) if "inbox_events" in sql
        ]
    finally:
        await engine.dispose()
    assert len(plans) == 2, plans
    for sql, plan in plans:
        assert "ix_inbox_events_due_lane" in plan, (sql, plan)
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, (sql, plan)
