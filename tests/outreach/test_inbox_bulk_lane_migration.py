"""Migration 0030_inbox_bulk_lane on both databases: a signal pending before it (a webhook's,
say) is one of the rows the relay claims first and is still claimed after it, and the migration
undoes itself cleanly (the due index of before back)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from services.outreach.inbox import InboxRelay
from shared.db import create_engine, session_factory
from shared.migrations import alembic_config, upgrade
from tests.support.settings import make_settings

BEFORE = "0028_inbox_prospect_index"


@pytest.mark.empty_databases
async def test_inbox_bulk_lane_migrates_up_and_down(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "outreach", BEFORE)
    engine = create_engine(settings.database_url("outreach"))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO inbox_events (provider, event_id, kind, payload, created_at,"
                    " workflow_id, signal_name, delivery, attempts, last_error, next_attempt_at)"
                    " VALUES ('twilio', 'SM1', 'sms_reply', '{}', :now, 'journey-p1',"
                    " 'reply_received', 'pending', 1, '', :now)"
                ),
                {"now": datetime.now(UTC)},
            )
        await asyncio.to_thread(upgrade, settings, "outreach")
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT bulk FROM inbox_events"))).scalar_one() in (
                False,
                0,
            )
        relay = InboxRelay(lambda: session_factory(engine), lambda: None)  # type: ignore[arg-type,return-value]
        assert [item.event_id for item in await relay.take()] == ["SM1"]

        cfg = alembic_config("outreach", settings.database_url("outreach"))
        await asyncio.to_thread(command.downgrade, cfg, "0030_inbox_bulk_lane-1")
        async with engine.connect() as conn:
            columns, indexes = await conn.run_sync(
                lambda c: (
                    {col["name"] for col in inspect(c).get_columns("inbox_events")},
                    {ix["name"] for ix in inspect(c).get_indexes("inbox_events")},
                )
            )
        assert "bulk" not in columns
        assert "ix_inbox_events_due" in indexes and "ix_inbox_events_due_lane" not in indexes
    finally:
        await engine.dispose()
