"""Referrals' data migrations, on rows an earlier release stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text as sql

from shared.db import create_engine
from shared.migrations import upgrade
from tests.support.settings import make_settings

AT = datetime(2026, 11, 30, 9, tzinfo=UTC)
ASK = (
    "INSERT INTO referral_asks (id, token, client_prospect_id, journey_id, client_name, rep_id, "
    "cadence_id, created_at, used_at) VALUES (:id, :id, :client, :id, :name, 'r1', 'c1', :t, :used)"
)


@pytest.mark.empty_databases
async def test_asks_closed_by_an_earlier_erasure_are_closed(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    """An erasure before 0008 blanked the client's name and used the link: that ask is closed
    as of then, so the API refuses it too; a living client's asks stay open, used or not."""
    settings = make_settings(tmp_path, {"referrals": database_urls["referrals"]})
    await asyncio.to_thread(upgrade, settings, "referrals", "0007_page_indexes")
    engine = create_engine(settings.database_url("referrals"))
    async with engine.begin() as conn:
        for ask_id, client, name, used in [
            ("erased", "p-gone", "", AT),
            ("used", "p-kept", "Ada Lovelace", AT),
            ("open", "p-kept", "Ada Lovelace", None),
        ]:
            values = {"id": ask_id, "client": client, "name": name, "t": AT, "used": used}
            await conn.execute(sql(ASK), values)
    await engine.dispose()
    await asyncio.to_thread(upgrade, settings, "referrals")
    engine = create_engine(settings.database_url("referrals"))
    async with engine.connect() as conn:
        rows = (await conn.execute(sql("SELECT id, closed_at FROM referral_asks"))).all()
    await engine.dispose()
    closed = {ask_id: at is not None for ask_id, at in rows}
    assert closed == {"erased": True, "used": False, "open": False}
