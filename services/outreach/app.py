"""The outreach service: cadences, messages, provider webhooks, rep tasks."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from services.outreach import api, journeys_api, senders_api, simulation, stats, webhooks
from services.outreach.consent_api import router as consent_router
from services.outreach.inbox import install_relay
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
        [
            # provider webhooks first: routes are tried in order, and these are the busiest
            webhooks.router,
            api.router,
            journeys_api.router,
            simulation.router,
            stats.router,
            webhooks.public_router,
            senders_api.router,
            consent_router,
        ],
        description="Cadences, messages, provider webhooks, rep tasks and consent.",
        temporal_client=temporal_client,
    )
    app.state.prospects = ProspectDirectory.from_settings(settings, prospecting_transport)
    app.state.cleanup.append(app.state.prospects.close)
    install_relay(app)  # delivers stored provider events to the journeys, retrying
    return app
