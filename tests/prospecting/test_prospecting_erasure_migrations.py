"""Prospecting's migrations of erasure orders, on rows an earlier release stored."""

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
ORDER = (
    "INSERT INTO outbox (id, kind, target, path, payload, subject_id, status, attempts, "
    "last_error, next_attempt_at, created_at, done_at) VALUES (:id, :kind, :target, "
    "'/internal/erasures', :payload, 'e1', :status, 1, '', NULL, :t, :done)"
)


@pytest.mark.empty_databases
async def test_referrals_gets_the_erasure_orders_it_confirmed_again(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    """Referrals confirmed orders before it kept digests: each order it confirmed is due to it
    again, as kept (digests only); the other services' orders, and one refused, stay as they
    were."""
    settings = make_settings(tmp_path, {"prospecting": database_urls["prospecting"]})
    await asyncio.to_thread(upgrade, settings, "prospecting", "0013")
    payload = (
        '{"erasure_id": "e1", "prospect_id": "p1", "email_digest": "ab", "phone_digest": null}'
    )
    engine = create_engine(settings.database_url("prospecting"))
    async with engine.begin() as conn:
        for row_id, kind, target, status in [
            ("to-referrals", "erasure", "referrals", "done"),
            ("to-outreach", "erasure", "outreach", "done"),
            ("refused", "erasure", "referrals", "failed"),
            ("moved", "rep_move", "referrals", "done"),
        ]:
            done = AT if status == "done" else None
            values = {"id": row_id, "kind": kind, "target": target, "status": status}
            await conn.execute(sql(ORDER), {**values, "payload": payload, "t": AT, "done": done})
    await engine.dispose()
    await asyncio.to_thread(upgrade, settings, "prospecting")
    engine = create_engine(settings.database_url("prospecting"))
    async with engine.connect() as conn:
        rows = await conn.execute(
            sql("SELECT id, status, attempts, next_attempt_at IS NOT NULL, done_at FROM outbox")
        )
        found = {r[0]: (r[1], r[2], bool(r[3]), r[4] is None) for r in rows.all()}
    await engine.dispose()
    assert found == {
        "to-referrals": ("pending", 0, True, True),
        "to-outreach": ("done", 1, False, False),
        "refused": ("failed", 1, False, True),
        "moved": ("done", 1, False, False),
    }
