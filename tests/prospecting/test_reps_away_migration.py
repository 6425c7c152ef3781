"""Migration 0018_tell_deals_reps_away on both databases: a rep deactivated before prospecting
told deals of deactivations gets the rep_standing message a deactivation queues now, so their
booking links stop offering times; an active rep gets none; the downgrade takes back only the
messages still waiting."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from services.prospecting.models import OutboxMessage, Rep
from shared.db import create_engine, session_factory
from shared.migrations import alembic_config, upgrade
from tests.support.settings import make_settings

REVISION = "0018_tell_deals_reps_away"


@pytest.mark.empty_databases
async def test_reps_deactivated_before_are_told_to_deals(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "prospecting")
    cfg = alembic_config("prospecting", settings.database_url("prospecting"))
    await asyncio.to_thread(command.downgrade, cfg, f"{REVISION}-1")
    engine = create_engine(settings.database_url("prospecting"))
    try:
        async with session_factory(engine)() as session:
            session.add_all(
                [
                    Rep(id="gone", name="Ann", email="ann@example.com", active=False),
                    Rep(id="here", name="Ben", email="ben@example.com", active=True),
                ]
            )
            await session.commit()
        await asyncio.to_thread(upgrade, settings, "prospecting")
        async with session_factory(engine)() as session:
            (told,) = (await session.scalars(select(OutboxMessage))).all()
        assert (told.kind, told.target, told.path, told.subject_id, told.status) == (
            "rep_standing",
            "deals",
            "/internal/reps/gone/standing",
            "gone",
            "pending",
        )
        assert told.payload["active"] is False
        assert datetime.fromisoformat(told.payload["changed_at"]).tzinfo is not None
        assert told.next_attempt_at is not None and told.attempts == 0

        await asyncio.to_thread(command.downgrade, cfg, f"{REVISION}-1")
        async with session_factory(engine)() as session:
            assert (await session.scalars(select(OutboxMessage))).all() == []
    finally:
        await engine.dispose()
