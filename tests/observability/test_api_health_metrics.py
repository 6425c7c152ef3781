"""Every API's /readyz (database and Temporal, 503 naming what is down), /metrics (an ops key;
HTTP requests by route template; webhooks by provider and result; relay backlogs) and the
request id on every answer."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from shared.db import create_engine, session_factory
from shared.metrics import DbGauge, Rows, ServiceMetrics
from shared.providers.postmark import basic_auth_header
from tests.observability.scrape import parse, total
from tests.support.apps import Api, ServiceApp
from tests.support.ports import DEAD_PORT
from tests.support.serve import HTTP_TIMEOUT
from tests.support.settings import (
    AUTH,
    POSTMARK_USER,
    POSTMARK_WEBHOOK,
    make_settings,
)
from tests.support.stack import build_app

SQLITE = pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)


@SQLITE
async def test_readyz_checks_the_database_and_temporal(api: Api) -> None:
    client = await api("outreach", key=False)
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "temporal": "ok"},
        "service": "outreach",
    }
    assert (await client.get("/healthz")).status_code == 200


async def test_a_busy_connection_pool_is_not_a_database_away(
    api: Api, service_app: ServiceApp
) -> None:
    """Under load every pooled connection is taken by requests; the readiness check waited for
    one of them, past its 3 s bound, and answered 503 "database: down" while the database
    answered: the kubelet took every busy replica out of the Service at once (and the load
    went to the others, as busy). A probe asks whether the database answers, not whether the
    pool has a connection free."""
    app = await service_app("deals")
    pool = app.state.engine.sync_engine.pool
    async with contextlib.AsyncExitStack() as held:
        for _ in range(pool.size() + max(pool._max_overflow, 0)):
            await held.enter_async_context(app.state.engine.connect())
        response = await (await api(app, key=False)).get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["database"] == "ok"


@asynccontextmanager
async def deals_without_dependencies(
    tmp_path: Path, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """deals' API on a database that does not answer, Temporal on a port nobody serves."""
    settings = make_settings(tmp_path, {"deals": database_url})
    temporal = await Client.connect(f"127.0.0.1:{DEAD_PORT}", lazy=True)
    app = build_app("deals", settings, temporal)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=httpx.ASGITransport(app), base_url="http://test"
        ) as client,
    ):
        yield client


async def test_readyz_answers_503_naming_what_is_down(tmp_path: Path) -> None:
    # a database file in a directory that does not exist
    missing = f"sqlite+aiosqlite:///{tmp_path}/no/such/dir.db"
    async with deals_without_dependencies(tmp_path, missing) as client:
        response = await client.get("/readyz")
        assert (await client.get("/healthz")).status_code == 200  # alive all the same
        scraped = await client.get("/metrics", headers=AUTH)
        assert scraped.status_code == 200
        assert total(parse(scraped.text), "closeflow_http_requests_total", route="/readyz") == 1
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    # the reason is the driver error's type, or a timeout: on SQLite's one pooled connection the
    # check may queue behind deals' event forwarder, and a failed connect wakes no waiter
    # (SQLAlchemy's QueuePool), so the check's 3 s bound answers first
    reason = body["checks"]["database"]
    assert reason.startswith(("down: OperationalError", "down: no answer within")), body
    assert body["checks"]["temporal"].startswith("down: "), body


async def test_readyz_names_what_is_down_without_the_errors_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # probes carry no key: the driver's message (host, port, database, user) stays in the log
    url = f"postgresql+asyncpg://crm_owner:pw@127.0.0.1:{DEAD_PORT}/crm_private"
    async with deals_without_dependencies(tmp_path, url) as client:
        with caplog.at_level(logging.WARNING, logger="shared.health"):
            response = await client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    for leaked in (str(DEAD_PORT), "127.0.0.1", "crm_", "Connect call failed"):
        assert leaked not in response.text, checks
    assert checks["database"] in ("down: ConnectionRefusedError", "down: OSError"), checks
    assert checks["temporal"] in ("down: RuntimeError", "down: RPCError"), checks
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "shared.health")
    assert "readiness: database is down" in logged and str(DEAD_PORT) in logged, logged
    assert "readiness: temporal is down" in logged, logged


@SQLITE
async def test_metrics_count_requests_by_route_template_and_webhooks(api: Api) -> None:
    client = await api("outreach", **POSTMARK_WEBHOOK)
    assert (await client.get("/cadences/no-such-cadence")).status_code == 404
    assert (await client.get("/cadences/another-one")).status_code == 404
    forged = await client.post(
        "/webhooks/twilio/sms",
        data={"MessageSid": "SMforged", "From": "+14155550100", "Body": "hi"},
        headers={"X-Twilio-Signature": "forged"},
    )
    assert forged.status_code == 403
    # Postmark's webhooks carry a password, not a signature: a wrong one is the same failure
    wrong = basic_auth_header(POSTMARK_USER, "not-the-password")
    guessed = await client.post("/webhooks/postmark/events", json={}, headers=wrong)
    assert guessed.status_code == 401

    anonymous = await api("outreach", key=False)
    assert (await anonymous.get("/metrics")).status_code == 401  # the key rules of any route

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["x-request-id"]  # every answer carries one
    samples = parse(response.text)
    assert (
        total(
            samples,
            "closeflow_http_requests_total",
            service="outreach",
            route="/cadences/{cadence_id}",  # the template: ids never become labels
            method="GET",
            status="404",
        )
        == 2
    )
    assert not any("no-such-cadence" in str(labels) for _, labels in samples)
    for provider in ("twilio", "postmark"):  # what the signature-failures alert counts
        assert (
            total(
                samples, "closeflow_webhooks_total", provider=provider, result="invalid_signature"
            )
            == 1
        ), provider
    assert total(samples, "closeflow_http_request_duration_seconds_count", method="GET") >= 2
    # each of outreach's relays has its backlog read at scrape (nothing is pending here)
    relays = {
        dict(labels)["relay"] for name, labels in samples if name == "closeflow_relay_backlog"
    }
    assert relays and total(samples, "closeflow_relay_backlog") == 0, relays
    # the alert rules and the dashboard group the relay gauges by service, as every other gauge
    for gauge in ("closeflow_relay_backlog", "closeflow_relay_oldest_age_seconds"):
        services = {dict(labels).get("service") for name, labels in samples if name == gauge}
        assert services == {"outreach"}, (gauge, services)
    assert total(samples, "closeflow_tasks_open", service="outreach") == 0


@SQLITE
async def test_request_id_is_kept_when_plain_and_replaced_otherwise(api: Api) -> None:
    client = await api("deals", key=False)
    kept = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["x-request-id"] not in ("", "bad id\twith spaces")


async def test_a_scrape_without_its_database_still_serves_the_counters(tmp_path: Path) -> None:
    async def broken(session: AsyncSession) -> Rows:
        await session.execute(text("SELECT * FROM no_such_table"))
        return []

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    metrics = ServiceMetrics("outreach", gauges=[DbGauge("broken", "", broken)])
    metrics.sessions = lambda: session_factory(engine)
    metrics.requests.labels("outreach", "/healthz", "GET", "200").inc()
    try:
        await metrics.refresh()  # logged, not raised: the gauges go missing, nothing stale
    finally:
        await engine.dispose()
    samples = parse(generate_latest(metrics.registry).decode())
    assert total(samples, "closeflow_http_requests_total") == 1
    assert "closeflow_broken" not in {name for name, _ in samples}


async def test_a_follow_up_not_due_yet_is_no_relay_backlog(
    api: Api, service_app: ServiceApp
) -> None:
    """A nurtured prospect's follow-up waits, pending, for its due time (weeks later). The relay
    gauges counted it from its creation: 10 minutes after the first nurture the oldest row was
    "600 s behind" and every new nurture grew the backlog, so CloseflowRelayBacklogGrowing
    fired in normal operation. A row counts once it is due, and its age is from then."""
    from services.outreach.models import FollowUp

    app = await service_app("outreach")
    now = datetime.now(UTC)
    rows = {
        "later": (now - timedelta(hours=1), now + timedelta(days=30)),
        "due": (now - timedelta(days=30), now - timedelta(minutes=20)),
    }
    async with app.state.sessions() as session, session.begin():
        for run, (created, due) in enumerate(rows.values(), start=1):
            session.add(
                FollowUp(
                    prospect_id="p-follow-up",
                    after_run=run,
                    from_cadence_id="c1",
                    cadence_id="c2",
                    due_at=due,
                    next_attempt_at=due + timedelta(days=3650),  # never claimed in this test
                    created_at=created,
                )
            )
    client = await api(app)
    samples = parse((await client.get("/metrics")).text)
    relay = {"service": "outreach", "relay": "follow-up relay"}
    assert total(samples, "closeflow_relay_backlog", **relay) == 1
    age = total(samples, "closeflow_relay_oldest_age_seconds", **relay)
    assert 20 * 60 <= age < 30 * 60, age


@SQLITE
async def test_made_up_methods_do_not_become_metric_labels(api: Api) -> None:
    """The method label comes from the request line, which any stranger writes: each made-up
    method was a new series (memory in every process, and in Prometheus) for ever."""
    client = await api("outreach")
    for n in range(20):
        r = await client.request(f"MADEUP{n}", "/nowhere")
        assert r.status_code in (404, 405)
    assert (await client.request("BREW", "/cadences")).status_code == 405

    samples = parse((await client.get("/metrics")).text)
    methods = {dict(labels).get("method") for name, labels in samples if "http_" in name}
    assert not {m for m in methods if m and m.startswith(("MADEUP", "BREW"))}, methods
    assert total(samples, "closeflow_http_requests_total", method="other") == 21
