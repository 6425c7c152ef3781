"""Fixtures shared by the whole suite: real Temporal servers, real databases, free ports."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import WorkflowEnvironment

from devstack.env import free_ports
from shared.settings import Settings
from tests.browser import browser, page  # noqa: F401  (fixtures for the page tests)

BIN = Path(sys.executable).parent
POSTGRES_URL = os.environ.get("CLOSEFLOW_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CLOSEFLOW_REQUIRE_POSTGRES") == "1"


def binary(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} binary not found: install the dev extras (make test does)")
    return found


def free_port() -> int:
    """A port free now and below the kernel's ephemeral range: a port from bind(0) could be taken
    as the local port of any outgoing connection before the test's server binds it (seen in CI
    as uvicorn's "address already in use")."""
    return free_ports(1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # CI must never skip the PostgreSQL tests silently: there, a missing server is a failure.
    if POSTGRES_URL or REQUIRE_POSTGRES:
        return
    skip = pytest.mark.skip(reason="set CLOSEFLOW_TEST_POSTGRES_URL to run (.ci/run does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
async def temporal_local() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (in memory), shared by the session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        dev_server_extra_args=["--log-level", "error"],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def temporal_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: days of timers pass in milliseconds."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server")
    )
    yield env
    await env.shutdown()


@pytest.fixture
def queue_prefix() -> str:
    """A unique task-queue prefix per test: tests sharing a server never steal each other's work."""
    return f"t{uuid.uuid4().hex[:8]}-"


async def _create_pg_database(base_url: str) -> str:
    name = f"cf_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(base_url: str, name: str) -> None:
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        # FORCE: a test's app may still hold pooled connections when the fixture ends
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_urls(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    """One fresh database per service, on SQLite and on PostgreSQL (dropped afterwards: a
    full run creates thousands, which would otherwise fill the disk)."""
    services = ("prospecting", "outreach", "deals", "referrals")
    if request.param == "sqlite":
        yield {s: f"sqlite+aiosqlite:///{tmp_path / s}.db" for s in services}
        return
    if not POSTGRES_URL:
        pytest.fail("CLOSEFLOW_REQUIRE_POSTGRES=1 but CLOSEFLOW_TEST_POSTGRES_URL is not set")
    urls = {s: await _create_pg_database(POSTGRES_URL) for s in services}
    try:
        yield urls
    finally:
        for url in urls.values():
            database = make_url(url).database
            if database:
                await _drop_pg_database(POSTGRES_URL, database)


def make_settings(
    tmp_path: Path, urls: dict[str, str] | None = None, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": tmp_path,
        "api_keys": "test-key",
    }
    for service, url in (urls or {}).items():
        values[f"{service}_database_url"] = url
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


API_KEY = "test-key"
AUTH = {"X-API-Key": API_KEY}
