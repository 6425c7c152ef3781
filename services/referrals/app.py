"""The referrals API process: asks, intake, and the public referral page."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from services.referrals import analytics, api, erasure, public, rep_moves, timeline
from services.referrals.access import ACCESS
from services.referrals.forgotten_intakes import install_sweep
from services.referrals.intakes import IntakeTiming, install_relay
from services.referrals.models import AuditEntry, IdempotencyKey
from shared.app import create_service_app
from shared.audit import AuditConfig
from shared.rate_limit import FormLimits
from shared.settings import Settings
from shared.temporal import task_queues


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    intake_timing: IntakeTiming | None = None,
) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(
        "referrals",
        settings,
        [
            api.router,
            public.router,
            analytics.router,
            erasure.router,
            timeline.router,
            rep_moves.router,
        ],
        access=ACCESS,
        description="Referral asks to won clients, their referral page, referral intake and "
        "referral analytics.",
        temporal_client=temporal_client,
        idempotency=IdempotencyKey,
        audit=AuditConfig(AuditEntry),
    )
    app.state.form_limits = FormLimits()  # per process; tests may swap in tighter limits
    app.state.deals_source = None  # made on first use (analytics.deals_source)
    # starts the intakes that could not be started when their referral was stored
    install_relay(app, task_queues(settings), intake_timing)
    # deletes the intakes of referrals forgotten without them (0010_forget_erased_referrals)
    install_sweep(app, task_queues(settings))
    return app
