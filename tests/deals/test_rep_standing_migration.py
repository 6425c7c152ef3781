"""Migration 0013_rep_standing on both databases: reps' hours set before it keep working (no
word from prospecting yet: the rep takes meetings), the table takes prospecting's words, and the
migration undoes itself cleanly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from services.deals.meetings import standing
from shared.db import create_engine, session_factory
from shared.migrations import alembic_config, upgrade
from tests.support.settings import make_settings

BEFORE = "0012"


@pytest.mark.empty_databases
async def test_rep_standing_migrates_up_and_down(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "deals", BEFORE)
    engine = create_engine(settings.database_url("deals"))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO rep_availability (rep_id, timezone, days, start_minute,"
                    " end_minute, meeting_minutes, buffer_minutes, min_notice_minutes,"
                    " days_ahead, title, updated_at) VALUES ('rep-1', 'UTC', '[0]', 540, 1020,"
                    " 30, 0, 0, 3, 'Intro', :now)"
                ),
                {"now": datetime.now(UTC)},
            )
        await asyncio.to_thread(upgrade, settings, "deals")
        async with session_factory(engine)() as session:
            assert await standing.takes_meetings(session, "rep-1")
            await standing.record(session, "rep-1", False, datetime.now(UTC))
            await session.commit()
            assert not await standing.takes_meetings(session, "rep-1")

        cfg = alembic_config("deals", settings.database_url("deals"))
        await asyncio.to_thread(command.downgrade, cfg, "0013_rep_standing-1")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "rep_standing" not in tables and "rep_availability" in tables
    finally:
        await engine.dispose()
