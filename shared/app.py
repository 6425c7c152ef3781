"""The one shape of a service process: settings, engine, Temporal client, errors, health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from temporalio.client import Client

from shared.db import create_engine, session_factory
from shared.errors import install_error_handlers
from shared.settings import Settings
from shared.temporal import connect


def create_service_app(
    name: str,
    settings: Settings,
    routers: Sequence[APIRouter],
    *,
    description: str,
    temporal_client: Client | None = None,
) -> FastAPI:
    """temporal_client: tests pass the client of their own test server; otherwise connect."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url(name))
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.temporal = temporal_client or await connect(settings)
        try:
            yield
        finally:
            for close in app.state.cleanup:
                await close()
            await engine.dispose()

    app = FastAPI(title=f"closeflow {name}", description=description, lifespan=lifespan)
    app.state.settings = settings
    app.state.service_name = name
    app.state.cleanup = []  # async callables run at shutdown, e.g. HTTP clients to close
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    return app
