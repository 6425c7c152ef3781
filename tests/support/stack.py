"""The whole stack, ready to drive: the `stack` fixture and what it is made of.

In process (the default): the four services served over HTTP on their own ports, the real workers
and workflows on the given Temporal server, SMTP (aiosmtpd), the Twilio sandbox and the mailbox
page, on SQLite and on PostgreSQL. Every service reaches the others on this stack's ports, never
on the default ones.

Which database: a whole-stack scenario runs once, on PostgreSQL (production's database) when the
suite has one, as CI always does, else on SQLite. What each database does differently is the
layers' business, and their tests (`database_urls`, `ground`) run on both; the dev stack's process
tests run whole journeys on SQLite, `make run`'s default. `@ON_BOTH_DATABASES` runs a scenario on
each (the flagship journey does).

Options on the test: `@pytest.mark.stack(outbox=OutboxTiming(...))` for prospecting's outbox
timing, `@pytest.mark.stack(encrypted=True)` for payloads through the codec,
`@pytest.mark.stack(settings={...})` for settings of its own,
`@pytest.mark.stack(gated=["outreach"])` for services the others reach through a gate the test
can close (tests/support/gate.py: `stack.u.gates["outreach"].closed()`); `@ON_PROCESSES` for
the dev stack as real processes on their own ports (one per test module, see
tests/support/dev_stack.py) instead."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from closeflow.worker import build_workers
from devstack.sandbox.mailbox import create_app as mailbox_app
from devstack.supervisor import Stack
from services.prospecting.outbox import OutboxTiming
from shared.codec import new_master_key
from shared.settings import SERVICES, Settings
from shared.temporal import with_codec
from tests.support.databases import POSTGRES_URL
from tests.support.dev_stack import urls_of
from tests.support.fixtures import DATABASES, fresh_databases
from tests.support.gate import Gate
from tests.support.ports import free_port
from tests.support.sandboxes import sandboxes
from tests.support.scenarios import Driver, Urls
from tests.support.serve import serve
from tests.support.stage_truth import assert_one_stage_truth

# The prospecting outbox relays within a tenth of a second instead of its production second.
FAST_OUTBOX = OutboxTiming(poll_seconds=0.1, base_delay=0.2, max_delay=1.0)
PROCESSES = "processes"
# On a test: its `stack` is the module's dev stack, as real processes, instead of one in process
# per database.
ON_PROCESSES = pytest.mark.parametrize("stack", [PROCESSES], indirect=True)
ON_BOTH_DATABASES = pytest.mark.parametrize("stack", DATABASES, indirect=True)
ONE_DATABASE = "postgres" if POSTGRES_URL else "sqlite"


@dataclass
class RunningStack(Urls):
    """Where each part of a running stack answers, and the settings its services share."""

    settings: Settings
    # the gates in front of services (`gated`), by service
    gates: dict[str, Gate] = field(default_factory=dict)


class StackDriver(Driver):
    """A driver on a running stack: `u` has its URLs and settings, `env` its Temporal server."""

    u: RunningStack

    def __init__(self, urls: RunningStack, env: WorkflowEnvironment | None) -> None:
        super().__init__(urls)
        self._env = env

    @property
    def env(self) -> WorkflowEnvironment:
        if self._env is None:
            raise AssertionError("the dev stack runs its own Temporal server: drive it over HTTP")
        return self._env


def build_app(
    service: str,
    settings: Settings,
    client: Client,
    outbox: OutboxTiming | None = FAST_OUTBOX,
) -> FastAPI:
    """One service's app as the stack serves it (prospecting's outbox on test timing; None: on
    its production timing)."""
    module = importlib.import_module(f"services.{service}.app")
    if service == "prospecting" and outbox is not None:
        return module.create_app(settings, temporal_client=client, outbox_timing=outbox)  # type: ignore[no-any-return]
    return module.create_app(settings, temporal_client=client)  # type: ignore[no-any-return]


def service_urls(base: dict[str, str]) -> dict[str, str]:
    """Settings pointing each service at the others on the given base URLs."""
    return {f"{service}_url": url for service, url in base.items()}


@contextlib.asynccontextmanager
async def whole_stack(
    tmp_path: Path,
    database_urls: dict[str, str],
    env: WorkflowEnvironment,
    prefix: str,
    outbox_timing: OutboxTiming = FAST_OUTBOX,
    encrypted: bool = False,
    settings: dict[str, Any] | None = None,
    gated: Collection[str] = (),
) -> AsyncIterator[RunningStack]:
    """encrypted: payloads go through the codec (shared/codec.py) as in production, with a
    master key of this stack's own; settings: the stack's settings that differ from the
    tests' (`@pytest.mark.stack(settings={...})`); gated: the services the others reach
    through a Gate (the public URLs and the test's calls go to them directly)."""
    ports = {s: free_port() for s in SERVICES}
    own: dict[str, Any] = {"payload_master_keys": new_master_key("test")} if encrypted else {}
    own.update(settings or {})
    base = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
    gates = {s: Gate(ports[s]) for s in gated}
    async with contextlib.AsyncExitStack() as outer:
        for gate in gates.values():
            outer.push_async_callback(gate.close)
            await gate.open()
        peers = {**base, **{s: gate.url for s, gate in gates.items()}}
        sb = await outer.enter_async_context(
            sandboxes(
                tmp_path,
                database_urls,
                prefix,
                public_url=base["outreach"],
                referrals_public_url=base["referrals"],
                deals_public_url=base["deals"],
                **service_urls(peers),
                **own,
            )
        )
        client = with_codec(env.client, sb.settings) if encrypted else env.client
        async with contextlib.AsyncExitStack() as stack:
            for worker in await build_workers(client, sb.settings, ["all"], stack):
                await stack.enter_async_context(worker)
            for service in SERVICES:
                app = build_app(service, sb.settings, client, outbox_timing)
                await stack.enter_async_context(serve(app, ports[service]))
            mailbox = mailbox_app(
                sb.mailbox,
                outreach_url=base["outreach"],
                signing_key=sb.settings.mailgun_signing_key.get_secret_value(),
            )
            mailbox_url = await stack.enter_async_context(serve(mailbox, free_port()))
            yield RunningStack(
                base["prospecting"],
                base["outreach"],
                base["deals"],
                base["referrals"],
                mailbox_url,
                sb.twilio_url,
                sb.settings,
                gates,
            )


def stack_options(node: pytest.Item | pytest.Function) -> dict[str, Any]:
    marker = node.get_closest_marker("stack")
    return dict(marker.kwargs) if marker else {}


@contextlib.asynccontextmanager
async def _checked(driver: StackDriver, request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """The driver for one test, then the stage truth of what it left (journey = deal = prospect);
    a failed test has its own report: no second one about the stack it left."""
    failed_before = request.session.testsfailed
    try:
        yield
        if request.session.testsfailed == failed_before:
            await assert_one_stage_truth(driver)
    finally:
        await driver.close()


@pytest.fixture(params=[ONE_DATABASE])
async def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    temporal_local: WorkflowEnvironment,
    queue_prefix: str,
) -> AsyncIterator[StackDriver]:
    """A driver on a ready stack: in process on this test's ports, on one database (see the
    module's docstring) or both (@ON_BOTH_DATABASES), or (@ON_PROCESSES) on the module's dev
    stack. When the test passed, the stack's one stage
    truth is checked (tests/support/stage_truth.py): every prospect's journey, deal and record
    agree on the stage."""
    options = stack_options(request.node)
    if request.param == PROCESSES:
        running: Stack = request.getfixturevalue("running_dev_stack")
        urls = urls_of(running)
        driver = StackDriver(RunningStack(**vars(urls), settings=running.settings), None)
        async with _checked(driver, request):
            yield driver
        return
    async with (
        fresh_databases(request.param, tmp_path) as databases,
        whole_stack(
            tmp_path,
            databases,
            temporal_local,
            queue_prefix,
            options.get("outbox", FAST_OUTBOX),
            options.get("encrypted", False),
            options.get("settings"),
            options.get("gated", ()),
        ) as running_stack,
    ):
        driver = StackDriver(running_stack, temporal_local)
        async with _checked(driver, request):
            yield driver
