"""Free-text search: what it matches (SQLite and PostgreSQL), and on PostgreSQL that the query
the API runs is the one the trigram index serves (timings: bench/search.py, never here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from services.prospecting import schemas, service
from services.prospecting.models import Prospect
from shared.db import create_engine, session_factory
from shared.migrations import upgrade
from tests.support.databases import POSTGRES_URL, create_pg_database, drop_pg_database
from tests.support.settings import make_settings

PEPPER = "test-pepper"


@pytest.fixture
async def sessions(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[object]:
    settings = make_settings(tmp_path, database_urls)
    await asyncio.to_thread(upgrade, settings, "prospecting")
    engine = create_engine(settings.database_url("prospecting"))
    yield session_factory(engine)
    await engine.dispose()


async def test_free_text_matches_across_name_email_and_company(sessions: object) -> None:
    async with sessions() as session:  # type: ignore[operator]
        for first, last, email, company in (
            ("Ada", "Lovelace", "ada@engines.example", "Analytical Engines"),
            ("Grace", "Hopper", "grace@navy.example", "US Navy"),
            ("Alan", "Turing", "alan@bletchley.example", "100% Codebreakers_"),
        ):
            body = schemas.ProspectCreate(
                first_name=first, last_name=last, email=email, company=company
            )
            await service.create_prospect(session, body, PEPPER, [])
        await session.commit()

        async def names(q: str) -> list[str]:
            items, _ = await service.list_prospects(session, limit=50, cursor=None, stage=None, q=q)
            return sorted(p.first_name for p in items)

        assert await names("ADA LOVE") == ["Ada"]  # first and last name together
        assert await names("navy") == ["Grace"]  # the email and the company
        assert await names("ENGINES") == ["Ada"]
        assert await names("100%") == ["Alan"]  # % and _ are text, not wildcards
        assert await names("s_") == ["Alan"]
        assert await names("%") == ["Alan"]
        assert await names("nobody") == []


@pytest.fixture
async def pg_sessions(tmp_path: Path) -> AsyncIterator[object]:
    """PostgreSQL only: SQLite has no trigram index and reads every row (docs/guides/prospecting.md,
    Search)."""
    url = await create_pg_database(POSTGRES_URL)
    settings = make_settings(tmp_path, {"prospecting": url})
    await asyncio.to_thread(upgrade, settings, "prospecting")
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()
    await drop_pg_database(POSTGRES_URL, make_url(url).database or "")


@pytest.mark.postgres
async def test_postgres_serves_the_api_query_from_the_trigram_index(pg_sessions: object) -> None:
    async with pg_sessions() as session:  # type: ignore[operator]
        query = select(Prospect.id).where(
            service.search_text().contains("lovelace", autoescape=True)
        )
        # Compiled as the API sends it (the text a parameter). The expression must be exactly
        # the one migration 0003 indexed: changing either one without the other fails here.
        compiled = query.compile(dialect=session.get_bind().dialect)
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        await session.execute(text("SET enable_seqscan = off"))  # a tiny table: force the choice
        connection = await session.connection()
        result = await connection.exec_driver_sql(f"EXPLAIN {compiled}", params)
        plan = "\n".join(row[0] for row in result)
        assert "ix_prospects_search_trgm" in plan, plan
