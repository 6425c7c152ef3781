"""GET /analytics/sources (and referrals' analytics, which asks it) counts the deals opened in a
window: a table that grows with every qualified prospect, read for the window only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from services.deals.core.source_analytics import counts_by_source
from shared.db import create_engine
from tests.support.plans import plans_of
from tests.support.settings import make_settings


async def test_deals_opened_in_a_window_are_found_through_an_index(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    engine = create_engine(make_settings(tmp_path, database_urls).database_url("deals"))
    end = datetime(2026, 11, 1, tzinfo=UTC)

    async def counts(session: AsyncSession) -> None:
        await counts_by_source(session, end - timedelta(days=30), end)

    try:
        [(sql, plan)] = [p for p in await plans_of(engine, counts) if "FROM deals" in p[0]]
    finally:
        await engine.dispose()
    assert "ix_deals_created_at" in plan, (sql, plan)
