"""The outreach service: cadences, messages, provider webhooks, rep tasks."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from services.outreach import api, webhooks
from services.outreach.prospects import ProspectDirectory
from shared.app import create_service_app
from shared.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    prospecting_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        "outreach",
        settings,
        [api.router, webhooks.router, webhooks.public_router],
        description="Cadences, messages, provider webhooks, rep tasks and consent.",
        temporal_client=temporal_client,
    )
    app.state.prospects = ProspectDirectory.from_settings(settings, prospecting_transport)
    app.state.cleanup.append(app.state.prospects.close)
    return app
