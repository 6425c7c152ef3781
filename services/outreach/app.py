"""The outreach service: cadences, messages, provider webhooks, rep tasks."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from services.outreach import late_bookings, late_replies, metrics, webhooks
from services.outreach.access import ACCESS
from services.outreach.cadences import api, follow_ups, journeys_api, migration, simulation, stats
from services.outreach.cadences.auto_enroll import router as auto_enroll_router
from services.outreach.cadences.enrollment_contact import router as enrollment_contact_router
from services.outreach.cadences.enrollment_rep import router as enrollment_rep_router
from services.outreach.cadences.timeline import router as timeline_router
from services.outreach.consent.api import router as consent_router
from services.outreach.consent.erasure import router as erasure_router
from services.outreach.events import api as events_api
from services.outreach.events.delivery import install_deliveries
from services.outreach.inbox import install_relay
from services.outreach.mailbox import api as mailbox_api
from services.outreach.mailbox.watcher import install_watcher
from services.outreach.models import AuditEntry, IdempotencyKey
from services.outreach.notifications.notifier import install_notifier
from services.outreach.prospects import ProspectDirectory
from services.outreach.senders import api as senders_api
from services.outreach.tasks import inbox_page
from services.outreach.tasks.api import router as tasks_router
from services.outreach.tasks.reps import RepDirectory
from services.outreach.webhooks.twilio import StatusCallbackFastPath
from shared.app import create_service_app
from shared.audit import AuditConfig
from shared.pages import PageKeyMiddleware
from shared.settings import Settings
from shared.sign_in import sign_in_router

# rows a change causes, not the change (the inbox, the events and their deliveries, tokens)
OUTREACH_BOOKKEEPING = frozenset(
    {
        "inbox_events",
        "webhook_events",
        "event_deliveries",
        "task_notifications",
        "webhook_tokens",
        "send_quota_locks",
        "rejected_items",
    }
)


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
            tasks_router,
            inbox_page.router,
            sign_in_router,  # POST /ui/sign-in: the pages' key form
            erasure_router,  # POST /internal/erasures (prospecting's erasure orders)
            timeline_router,  # GET /internal/prospects/{id}/timeline
            auto_enroll_router,  # POST /internal/auto-enrollments (by fit tier)
            enrollment_rep_router,  # POST /internal/prospects/{id}/rep (reassignment)
            enrollment_contact_router,  # POST /internal/prospects/{id}/contact
            follow_ups.router,  # GET /follow-ups (re-engagement cadences)
            late_replies.router,  # GET /inbox-events (what became of each event)
            late_bookings.router,  # POST /internal/prospects/{id}/late-bookings (deals)
            mailbox_api.router,  # GET /mailbox (the IMAP reply mailbox's state)
            events_api.router,  # event subscriptions, POST /internal/events
        ],
        access=ACCESS,
        description="Cadences, messages, provider webhooks, rep tasks and consent.",
        gauges=metrics.GAUGES,
        temporal_client=temporal_client,
        idempotency=IdempotencyKey,
        audit=AuditConfig(AuditEntry, skip=OUTREACH_BOOKKEEPING),
        body_limits=dict.fromkeys(
            webhooks.INBOUND_EMAIL_PATHS, settings.inbound_email_max_body_bytes
        ),
    )
    app.state.prospects = ProspectDirectory.from_settings(settings, prospecting_transport)
    app.state.cleanup.append(app.state.prospects.close)
    inbox = install_relay(app)  # delivers stored provider events to the journeys, retrying
    # ... and what no running journey takes (a late booking through a link too: late_bookings)
    app.state.late = inbox.late = late_replies.LateEvents(app)
    migration.install(app)  # a moved journey's enrollment follows it once told
    install_watcher(app, settings)  # the reply mailbox over IMAP, when one is set (issue 14)
    app.state.reps = RepDirectory.from_settings(settings, prospecting_transport)
    app.state.cleanup.append(app.state.reps.close)
    follow_ups.install_relay(app, settings)  # enrolls due follow-up cadences, retrying
    install_notifier(app)  # urgent and overdue rep tasks: notifications, escalation
    install_deliveries(app)  # events to the subscribed URLs, signed, retrying
    # the pages' key: a cookie set by the posted sign-in form, never a query string
    app.add_middleware(PageKeyMiddleware, landing=inbox_page.landing)
    # the busiest webhook, answered before routing (webhooks/twilio.py says why)
    app.add_middleware(StatusCallbackFastPath)
    return app
