"""Fresh PostgreSQL databases for one test, made and dropped around it."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_URL = os.environ.get("CLOSEFLOW_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CLOSEFLOW_REQUIRE_POSTGRES") == "1"
SERVICES = ("prospecting", "outreach", "deals", "referrals")


async def create_pg_database(base_url: str) -> str:
    name = f"cf_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(base_url: str, name: str) -> None:
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        # FORCE: a test's app may still hold pooled connections when the fixture ends
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def drop_pg_databases(urls: dict[str, str]) -> None:
    for url in urls.values():
        database = make_url(url).database
        if database:
            await drop_pg_database(POSTGRES_URL, database)
