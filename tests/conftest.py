"""The suite's fixtures live in tests/support/; this file only registers them with pytest."""

from __future__ import annotations

import pytest

from tests.support.apps import api, http, service_app  # noqa: F401  (fixtures)
from tests.support.browser import browser, page  # noqa: F401  (fixtures for the page tests)
from tests.support.databases import POSTGRES_URL, REQUIRE_POSTGRES
from tests.support.dev_stack import running_dev_stack  # noqa: F401  (fixture)
from tests.support.fixtures import (  # noqa: F401  (fixtures)
    database_templates,
    database_urls,
    ground,
    queue_prefix,
    temporal_local,
    temporal_skipping,
)
from tests.support.journey_harness import harness  # noqa: F401  (fixture)
from tests.support.stack import stack  # noqa: F401  (fixture)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "stack(outbox=OutboxTiming): prospecting's outbox timing in the `stack` fixture "
        "(tests/support/stack.py)",
    )
    config.addinivalue_line(
        "markers",
        "empty_databases: `database_urls` are empty, not migrated (tests of the migrations)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # CI must never skip the PostgreSQL tests silently: there, a missing server is a failure.
    if POSTGRES_URL or REQUIRE_POSTGRES:
        return
    skip = pytest.mark.skip(reason="set CLOSEFLOW_TEST_POSTGRES_URL to run (.ci/run does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
