"""The prospecting API process."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from services.prospecting import (
    api_keys,
    codec_server,
    dashboard,
    exports,
    funnel_api,
    funnel_queue,
    metrics,
)
from services.prospecting.access import ACCESS
from services.prospecting.api import router
from services.prospecting.models import AuditEntry, IdempotencyKey
from services.prospecting.outbox import OutboxTiming, service_key
from services.prospecting.outbox import install_relay as install_outbox_relay
from shared.app import create_service_app
from shared.audit import AuditConfig
from shared.pages import PageKeyMiddleware
from shared.peers import peer_client
from shared.settings import Settings
from shared.sign_in import sign_in_router


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    outbox_timing: OutboxTiming | None = None,
) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        "prospecting",
        settings,
        [
            router,
            funnel_api.router,
            dashboard.router,
            sign_in_router,
            api_keys.router,
            exports.router,  # CSV: prospects, funnel
        ],
        access=ACCESS,
        description="People, reps, round-robin assignment and stage history.",
        gauges=metrics.GAUGES,
        temporal_client=temporal_client,
        # bookkeeping rows (counters, the outbox, keyring cursors) are consequences, not changes
        idempotency=IdempotencyKey,
        audit=AuditConfig(
            AuditEntry,
            skip=frozenset(
                {
                    "funnel_counts",
                    "funnel_durations",
                    "funnel_pending",
                    "outbox",
                    "assignment_cursors",
                    # an import's refused lines are its report (the imports row says who ran it)
                    "import_refusals",
                }
            ),
        ),
    )
    # calls to the other services: timelines (read), and the outbox relay (rep moves, erasures)
    app.state.peer_http = peer_client(service_key(settings), timeout=5.0)
    app.state.cleanup.append(app.state.peer_http.aclose)
    install_outbox_relay(app, settings, outbox_timing)
    funnel_queue.install(app)  # stage changes into the funnel's counters
    # the dashboard's key: a cookie set by the posted sign-in form, never a query string
    app.add_middleware(PageKeyMiddleware)
    # the payload codec for Temporal's UI and CLI (issue 11): the keyring lives here
    codec_server.install(app, settings.codec_cors_origins)
    return app
