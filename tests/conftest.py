"""The suite's fixtures live in tests/support/; this file only registers them with pytest."""

from __future__ import annotations

import pytest
from _pytest.nodeid import coerce_node_id

from tests.support import ast_threads
from tests.support.apps import api, http, service_app  # noqa: F401  (fixtures)
from tests.support.browser import browser, page  # noqa: F401  (fixtures for the page tests)
from tests.support.databases import POSTGRES_URL, REQUIRE_POSTGRES
from tests.support.dev_stack import reply_mailbox, running_dev_stack  # noqa: F401  (fixtures)
from tests.support.fixtures import (  # noqa: F401  (fixtures)
    database_templates,
    database_urls,
    ground,
    queue_prefix,
    temporal_local,
    temporal_skipping,
)
from tests.support.heap import frozen_heap  # noqa: F401  (autouse fixture)
from tests.support.journey_harness import harness, harness_alone  # noqa: F401  (fixtures)
from tests.support.stack import stack  # noqa: F401  (fixture)

ast_threads.install()


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


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _group_for_xdist(config, items)
    # CI must never skip the PostgreSQL tests silently: there, a missing server is a failure.
    if POSTGRES_URL or REQUIRE_POSTGRES:
        return
    skip = pytest.mark.skip(reason="set CLOSEFLOW_TEST_POSTGRES_URL to run (.ci/run does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _group_for_xdist(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup` sends the tests of one xdist_group to one worker by the `@group` suffix
    of their node ids. pytest-xdist 3.8 writes it to `_nodeid`, which pytest 9.2 no longer reads
    (node ids are `_id`): every xdist_group mark was ignored and a module's costly fixture (the
    roles stack, the running dev stack) built once per worker. Until xdist sets it itself."""
    if not getattr(config.option, "loadgroup", False):
        return  # not an xdist worker running loadgroup
    for item in items:
        names = sorted(
            {
                str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                for mark in item.iter_markers("xdist_group")
            }
        )
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)
