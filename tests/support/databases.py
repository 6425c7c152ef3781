"""Fresh databases for one test, made and dropped around it, already at every service's head.

Migrating four services costs about 0.7 s of CPU (Alembic loads and runs every revision); a
suite makes thousands of databases on two cores. So each test process migrates one template per
service and database kind once, and a fresh database is a copy of it: a file copy on SQLite,
`CREATE DATABASE ... TEMPLATE` on PostgreSQL, or there an earlier test's database emptied
(tests/support/pg_pool.py). Tests of the migrations themselves ask for empty
databases (`@pytest.mark.empty_databases`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.pg_pool import Template

POSTGRES_URL = os.environ.get("CLOSEFLOW_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CLOSEFLOW_REQUIRE_POSTGRES") == "1"
SERVICES = ("prospecting", "outreach", "deals", "referrals")


async def create_pg_database(base_url: str, template: str | None = None) -> str:
    name = f"cf_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        copy_of = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
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


# This process's migrated templates: SQLite files by service, PostgreSQL database names by service
# (and what their emptied copies must hold again: tests.support.pg_pool).
_sqlite_templates: dict[str, Path] = {}
_pg_templates: dict[str, str] = {}
_pg_copies: dict[str, Template] = {}
_template_lock = asyncio.Lock()


async def _migrate(service: str, url: str) -> None:
    # imported here: the settings module reads the environment, which some tests set first
    from shared.migrations import upgrade
    from shared.settings import Settings

    settings = Settings(
        environment="test",
        data_dir=Path(tempfile.gettempdir()),
        **{f"{service}_database_url": url},  # type: ignore[arg-type]
    )
    await asyncio.to_thread(upgrade, settings, service)


async def migrated_sqlite(directory: Path) -> dict[str, str]:
    """Each service's database in `directory`, copied from this process's migrated template."""
    async with _template_lock:
        if not _sqlite_templates:
            home = Path(tempfile.mkdtemp(prefix="closeflow-templates-"))
            for service in SERVICES:
                path = home / f"{service}.db"
                await _migrate(service, f"sqlite+aiosqlite:///{path}")
                # the engine is gone, so its write-ahead log is folded into the file: the file
                # alone is the whole database
                assert not path.with_name(path.name + "-wal").exists(), path
                _sqlite_templates[service] = path
    urls = {}
    for service, template in _sqlite_templates.items():
        shutil.copyfile(template, directory / f"{service}.db")
        urls[service] = f"sqlite+aiosqlite:///{directory / service}.db"
    return urls


async def migrated_pg() -> dict[str, str]:
    """A fresh PostgreSQL database per service: an emptied one of an earlier test
    (`release_pg_databases`), or a copy of this process's migrated template."""
    async with _template_lock:
        if not _pg_templates:
            for service in SERVICES:
                url = await create_pg_database(POSTGRES_URL)
                await _migrate(service, url)
                _pg_templates[service] = str(make_url(url).database)
                _pg_copies[service] = await Template.read(url)
    urls = {}
    for service in SERVICES:
        emptied = _pg_copies[service].take()
        urls[service] = (
            make_url(POSTGRES_URL).set(database=emptied).render_as_string(hide_password=False)
            if emptied
            else await create_pg_database(POSTGRES_URL, _pg_templates[service])
        )
    return urls


async def release_pg_databases(urls: dict[str, str]) -> None:
    """`migrated_pg`'s databases, done with: emptied for the next test, or dropped."""
    for service, url in urls.items():
        database = make_url(url).database
        if database:
            await _pg_copies[service].give_back(POSTGRES_URL, database)


async def drop_templates() -> None:
    """This process's templates, gone: every test run would otherwise leave its SQLite files in
    the temporary folder of a machine that runs the suite many times a day."""
    for name in [*_pg_templates.values(), *(n for t in _pg_copies.values() for n in t.emptied)]:
        await drop_pg_database(POSTGRES_URL, name)
    _pg_templates.clear()
    _pg_copies.clear()
    homes = {path.parent for path in _sqlite_templates.values()}
    _sqlite_templates.clear()
    for home in homes:
        shutil.rmtree(home, ignore_errors=True)
