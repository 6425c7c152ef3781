"""Deals' migration 0013: audit entries of a deal's rows made before they named a prospect get
the prospect of the row's deal, so that the prospect's erasure redacts them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text as sql

from shared.db import create_engine
from shared.migrations import upgrade
from tests.support.settings import make_settings

ROWS = [
    "INSERT INTO deals (id, prospect_id, journey_id, source, stage, qualification_reasons, "
    "created_at, updated_at) VALUES ('d1', 'p1', 'journey-p1', 'cold', 'presenting', '[]', :t, :t)",
    "INSERT INTO meetings (id, deal_id, starts_at, title, duration_minutes, status, revision, "
    "created_at) VALUES ('m1', 'd1', :t, 'Demo', 30, 'scheduled', 0, :t)",
    "INSERT INTO qualification_answers (id, deal_id, framework, criterion, position, passed, "
    "created_at) VALUES ('q1', 'd1', 'bant', 'need', 0, true, :t)",
    "INSERT INTO objections (id, deal_id, category, text, created_at) "
    "VALUES ('o1', 'd1', 'price', 'too dear', :t)",
    "INSERT INTO objection_outcomes (id, objection_id, response_key, response, resolved, "
    "created_at, updated_at) VALUES ('r1', 'o1', 'k', 'a response', true, :t, :t)",
    "INSERT INTO deal_history (id, deal_id, to_stage, cause, at, actor) "
    "VALUES ('h1', 'd1', 'presenting', 'qualified', :t, '')",
]
ENTRIES = {
    # resource id: resource (m-gone: a meeting deleted since; x1: another service's kind of row)
    "m1": "meetings",
    "q1": "qualification_answers",
    "o1": "objections",
    "r1": "objection_outcomes",
    "h1": "deal_history",
    "m-gone": "meetings",
    "d1": "deals",
}


@pytest.mark.empty_databases
async def test_entries_of_a_deals_rows_get_the_prospect_of_the_deal(
    tmp_path: Path, database_urls: dict[str, str]
) -> None:
    settings = make_settings(tmp_path, {"deals": database_urls["deals"]})
    await asyncio.to_thread(upgrade, settings, "deals", "0009")
    engine = create_engine(settings.database_url("deals"))
    now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    async with engine.begin() as conn:
        for row in ROWS:
            await conn.execute(sql(row), {"t": now})
        for rid, resource in ENTRIES.items():
            await conn.execute(
                sql(
                    "INSERT INTO audit_log (id, at, actor_key_id, actor_role, route, resource, "
                    "resource_id, action, changes, subject_id, request_id) VALUES "
                    "(:id, :t, 'k', 'admin', 'POST /x', :resource, :rid, 'create', '{}', :subject, '')"
                ),
                {
                    "id": f"e-{rid}",
                    "t": now,
                    "resource": resource,
                    "rid": rid,
                    "subject": "p1" if resource == "deals" else None,
                },
            )
    await engine.dispose()
    await asyncio.to_thread(upgrade, settings, "deals")
    engine = create_engine(settings.database_url("deals"))
    async with engine.connect() as conn:
        subjects = dict(
            (await conn.execute(sql("SELECT resource_id, subject_id FROM audit_log"))).all()
        )
    await engine.dispose()
    assert subjects == {rid: (None if rid == "m-gone" else "p1") for rid in ENTRIES}
