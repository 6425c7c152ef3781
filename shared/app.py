"""The one shape of a service process: settings, engine, Temporal client, errors, health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.client import Client
from temporalio.service import RPCError

from shared import tracing
from shared.access import (
    OPS,
    RouteKey,
    Rule,
    ServiceAccess,
    check_coverage,
    enforce_access,
    install_access,
)
from shared.audit import AuditConfig, audit_router
from shared.audit import install as install_audit
from shared.body_limit import BodyLimit
from shared.db import create_engine, probe_engine, session_factory
from shared.errors import RETRY_AFTER, error_body, install_error_handlers
from shared.health import database_up, readiness_body, run_checks, temporal_up
from shared.idempotency import IdempotencyColumns, IdempotencyKeys
from shared.idempotency import install as install_idempotency
from shared.issued_keys import IntrospectedKeys
from shared.logging import RequestIds
from shared.metrics import DbGauge, HttpMetrics, RelayBacklog, ServiceMetrics
from shared.relay import Relay
from shared.settings import Settings
from shared.temporal import connect, keep_connecting, unreachable


def create_service_app(
    name: str,
    settings: Settings,
    routers: Sequence[APIRouter],
    *,
    access: ServiceAccess,
    description: str,
    temporal_client: Client | None = None,
    gauges: Sequence[DbGauge] = (),
    audit: AuditConfig | None = None,
    body_limits: Mapping[str, int] | None = None,
    idempotency: type[IdempotencyColumns] | None = None,
) -> FastAPI:
    """access: the service's route policies and resolvers (services/<name>/access.py).
    temporal_client: tests pass the client of their own test server; otherwise connect, lazily:
    the API starts while Temporal is down (readyz says so, routes needing it answer 503) and
    connects in the background.
    gauges: the service's business gauges, read from its database at each scrape of /metrics.
    body_limits: routes (exact paths) whose bodies may be larger, or smaller, than
    settings.max_body_bytes, each with its own cap.
    idempotency: the service's model of its idempotency records (shared/idempotency.py): its
    creating routes honour an Idempotency-Key."""
    tracing.configure_tracing(settings.otlp_endpoint, name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # every route is in place by now (app.py files include routers after this function)
        check_coverage(app, strict=settings.environment == "production")
        engine = create_engine(settings.database_url(name))
        tracing.instrument_engines([engine])
        app.state.engine = engine
        # readiness asks whether the database answers, on a connection of its own
        probe = app.state.probe_engine = probe_engine(settings.database_url(name))
        app.state.sessions = session_factory(engine)
        connecting: asyncio.Task[None] | None = None
        client = temporal_client
        if client is None:
            client = await connect(settings, lazy=True)
            connecting = asyncio.create_task(keep_connecting(client, settings.temporal_address))
        # with tracing on, starts and signals carry the request's trace into the workflow
        app.state.temporal = tracing.traced_client(client)
        try:
            yield
        finally:
            if connecting is not None:
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting
            for close in app.state.cleanup:
                await close()
            await engine.dispose()
            await probe.dispose()

    # API docs (issue 11): public outside production; in production off, or behind a key when
    # CLOSEFLOW_API_DOCS is set, as routes of our own that enforce_access guards (FastAPI's own
    # doc routes bypass the app's dependencies)
    docs_public = settings.environment != "production"
    docs_guarded = not docs_public and settings.api_docs
    # enforce_access runs before every route, including routers included after this returns
    app = FastAPI(
        title=f"closeflow {name}",
        description=description,
        lifespan=lifespan,
        dependencies=[Depends(enforce_access)],
        openapi_url="/openapi.json" if docs_public else None,
        docs_url="/docs" if docs_public else None,
        redoc_url="/redoc" if docs_public else None,
        # FastAPI's own OpenTelemetry spans start whenever a global tracer provider is set
        # (an agent such as opentelemetry-instrument sets one), with the raw path and query:
        # link tokens and addresses in clear. Spans come from shared/tracing.py, which redacts
        # them, and only when closeflow's tracing is configured
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.service_name = name
    app.state.cleanup = []  # async callables run at shutdown, e.g. HTTP clients to close
    metrics = ServiceMetrics(
        name, gauges=list(gauges), sessions=lambda: getattr(app.state, "sessions", None)
    )
    app.state.metrics = metrics
    policies = {**access.policies}
    if audit is not None:  # the audit log: changes recorded by the request sessions, admins read
        install_audit(app, audit)
        routers = [*routers, audit_router(name, audit)]
    if docs_guarded:
        policies.update(_guarded_docs(app))
    install_access(app, name, access.resolvers, policies)
    if access.key_lookup is not None:
        app.state.key_lookup = access.key_lookup(app)  # prospecting: issued keys are its own
    if access.rep_check is not None:
        app.state.rep_check = access.rep_check(app)  # prospecting: so are the reps
    if access.key_lookup is None and settings.internal_api_key:  # the service token
        issued = IntrospectedKeys(settings.prospecting_url, settings.internal_api_key)
        app.state.key_lookup = issued
        app.state.rep_check = issued.rep_deactivated
        app.state.cleanup.append(issued.close)
    install_error_handlers(app)
    _answer_temporal_away(app)
    if idempotency is not None:  # inside the body cap: it reads the body to fingerprint it
        install_idempotency(app, idempotency)
        app.add_middleware(IdempotencyKeys, fastapi=app)
    # the body is read (and parsed) before enforce_access runs: cap it while it is read
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, routes=body_limits)
    # outermost: every request is counted and carries its request id, refused ones included
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.add_middleware(RequestIds)
    tracing.instrument_app(app)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (nothing else is checked)."""
        return {"status": "ok", "service": name}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Readiness: the database answers SELECT 1 and Temporal answers; 503 names what is
        down."""
        ready, checks = await run_checks(
            {
                "database": lambda: database_up(app.state.probe_engine),
                "temporal": lambda: temporal_up(app.state.temporal),
            }
        )
        body = {**readiness_body(ready, checks), "service": name}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def prometheus_metrics() -> Response:
        """Prometheus metrics (docs/operations.md, "Metrics"); an ops or admin key."""
        await metrics.refresh()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _answer_temporal_away(app: FastAPI) -> None:
    """A route that needs Temporal while it is away answers 503 with Retry-After, whatever the
    call (the client's not-yet-connected error, an UNAVAILABLE answer); other errors of those
    types stay what they are (a 500, logged)."""

    async def away(_: Request, exc: Exception) -> JSONResponse:
        if not unreachable(exc):
            raise exc
        message = "Temporal is not reachable right now (see /readyz): retry shortly"
        return JSONResponse(
            error_body("temporal_unreachable", message, []),
            status_code=503,
            headers={"Retry-After": RETRY_AFTER},
        )

    app.add_exception_handler(RPCError, away)
    app.add_exception_handler(RuntimeError, away)


def _guarded_docs(app: FastAPI) -> dict[RouteKey, Rule]:
    """/openapi.json, /docs and /redoc for admin and ops keys (the map shows /internal/*)."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=app.title)

    return {("GET", path): OPS for path in ("/openapi.json", "/docs", "/redoc")}


class BackgroundLoop(Protocol):
    """A loop a service runs beside its requests (relays, sweeps): started and stopped with it."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


def run_during_lifespan(app: FastAPI, loop: BackgroundLoop) -> None:
    """Run `loop` while the app's lifespan does, inside what the lifespan set up before (the
    engine and the Temporal client exist when it starts and still exist when it stops)."""
    if isinstance(loop, Relay):  # its backlog is a gauge of /metrics
        table = loop.table
        app.state.metrics.relays.append(
            RelayBacklog(loop.name, table.model, table.pending, table.due_since)
        )
    loops: list[BackgroundLoop] | None = getattr(app.state, "background_loops", None)
    if loops is not None:
        loops.append(loop)
        return
    loops = app.state.background_loops = [loop]
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with inner(app_):
            for each in loops:
                each.start()
            try:
                yield
            finally:
                # all at once: each may wait out its items in flight (a relay up to its
                # stop_grace), and one after the other would outlast the pod's grace period
                await asyncio.gather(*(each.stop() for each in loops))

    app.router.lifespan_context = lifespan
